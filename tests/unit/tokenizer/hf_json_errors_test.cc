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

// Ids size the id -> text tables, so an id far beyond the tokens the file declares would make a tiny
// file allocate gigabytes (tokenizer_json_fuzz: a 3 KB file with the id 15,555,592).
TEST(HfJsonErrorsTest, IdsFarBeyondTheDeclaredTokensAreDataLoss) {
  const std::string vocab =
      R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 15555592}, "merges": []}})";
  Result<std::unique_ptr<Tokenizer>> t = Tokenizer::from_hf_json(vocab, "t.json");
  ASSERT_FALSE(t.is_ok());
  EXPECT_EQ(t.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(t.status().message().find("t.json: id 15555592 in model.vocab is out of range"),
            std::string::npos)
      << t.status().to_string();
  const std::string added =
      R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "added_tokens": [{"content": "<s>", "id": 2147483647}]})";
  t = Tokenizer::from_hf_json(added, "t.json");
  ASSERT_FALSE(t.is_ok());
  EXPECT_EQ(t.status().code(), StatusCode::kDataLoss);
  // Holes within the slack stay accepted (an added token just past a dense vocabulary).
  const std::string ok =
      R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": []}, "added_tokens": [{"content": "<s>", "id": 100}]})";
  EXPECT_TRUE(Tokenizer::from_hf_json(ok, "t.json").is_ok());
}

}  // namespace
}  // namespace fs
