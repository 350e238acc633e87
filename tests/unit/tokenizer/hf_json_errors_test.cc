// Malformed tokenizer.json fields give kDataLoss, never undefined behaviour (cases found by
// tests/fuzz/tokenizer_json_fuzz.cc).
#include <gtest/gtest.h>

#include "tokenizer/tokenizer.h"

namespace fs {
namespace {

TEST(HfJsonErrorsTest, NonIntegerOrOutOfRangeIdsAreDataLoss) {
  for (const char* vocab_id : {"2.56667e+110", "-3", "1.5", "\"7\"", "4294967296"}) {
    const std::string json = std::string(R"({"model": {"type": "BPE", "vocab": {"a": )") +
                             vocab_id + R"(}, "merges": []}})";
    Result<std::unique_ptr<Tokenizer>> t = Tokenizer::from_hf_json(json, "t.json");
    ASSERT_FALSE(t.is_ok()) << vocab_id;
    EXPECT_EQ(t.status().code(), StatusCode::kDataLoss) << t.status().to_string();
  }
  const std::string added =
      R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "added_tokens": [{"content": "<s>", "id": 1e300}]})";
  Result<std::unique_ptr<Tokenizer>> t = Tokenizer::from_hf_json(added, "t.json");
  ASSERT_FALSE(t.is_ok());
  EXPECT_EQ(t.status().code(), StatusCode::kDataLoss);
}

}  // namespace
}  // namespace fs
