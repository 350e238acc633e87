// Every corpus string (>= 10,000: prose in many scripts, code, emoji, whitespace runs, digits,
// special tokens in text, odd code points) against HF `tokenizers`: ids equal, decode equal to HF's
// decode (which is the text itself where HF round-trips), incremental decode equal to the full
// decode. Each tokenizer is checked as loaded from tokenizer.json and from GGUF metadata.
#include <string>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "fixtures.h"
#include "tokenizer/incremental_decoder.h"

namespace fs {
namespace {

using testing::corpus;
using testing::CorpusEntry;

std::string show_ids(const std::vector<int32_t>& ids) {
  return fmt::format("[{}]", fmt::join(ids, ","));
}

// Checks one tokenizer over the corpus; which = 'a' (SmolLM2) or 'b' (llama-spm).
void check_corpus(const Tokenizer& tok, char which) {
  ASSERT_GE(corpus().size(), 100u);
  size_t num_id_failures = 0, num_decode_failures = 0, num_stream_failures = 0;
  for (const CorpusEntry& e : corpus()) {
    const auto& want = which == 'a' ? e.ids_a : e.ids_b;
    const auto& want_text = which == 'a' ? e.decoded_a : e.decoded_b;
    const std::vector<int32_t> got = tok.encode(e.text);
    if (got != want && ++num_id_failures <= 5) {
      ADD_FAILURE() << "ids differ for " << nlohmann::json(e.text).dump() << "\n  got  "
                    << show_ids(got) << "\n  want " << show_ids(want);
    }
    const std::string decoded = tok.decode(want);
    if (decoded != want_text && ++num_decode_failures <= 5) {
      ADD_FAILURE() << "decode differs for " << nlohmann::json(e.text).dump() << "\n  got  "
                    << nlohmann::json(decoded).dump(-1, ' ', false,
                                                    nlohmann::json::error_handler_t::replace);
    }
    for (bool skip : {false, true}) {
      IncrementalDecoder inc(tok, skip);
      std::string streamed;
      for (int32_t id : want) {
        std::string part = inc.feed(id);
        streamed += part;
      }
      streamed += inc.finish();
      if (streamed != tok.decode(want, skip) && ++num_stream_failures <= 5) {
        ADD_FAILURE() << "incremental decode differs (skip_special " << skip << ") for "
                      << nlohmann::json(e.text).dump();
      }
    }
  }
  EXPECT_EQ(num_id_failures, 0u) << "of " << corpus().size();
  EXPECT_EQ(num_decode_failures, 0u);
  EXPECT_EQ(num_stream_failures, 0u);
}

TEST(CorpusTest, CorpusHasAtLeastTenThousandStrings) {
  if (std::getenv("FASTSERVE_TOKENIZER_CORPUS_LIMIT") != nullptr) GTEST_SKIP() << "subset run";
  EXPECT_GE(corpus().size(), 10000u);
}

TEST(CorpusTest, SmolLM2FromTokenizerJsonMatchesHf) {
  auto tok = testing::load_json_gz("smollm2.tokenizer.json.gz");
  ASSERT_NE(tok, nullptr);
  check_corpus(*tok, 'a');
}

TEST(CorpusTest, SmolLM2FromGgufMatchesHf) {
  auto tok = testing::load_file(testing::fixture_path("smollm2-vocab.gguf"));
  ASSERT_NE(tok, nullptr);
  check_corpus(*tok, 'a');
}

TEST(CorpusTest, LlamaSpmFromTokenizerJsonMatchesHf) {
  auto tok = testing::load_json_gz("llama-spm.tokenizer.json.gz");
  ASSERT_NE(tok, nullptr);
  check_corpus(*tok, 'b');
}

TEST(CorpusTest, LlamaSpmFromGgufMatchesHf) {
  auto tok = testing::load_file(testing::fixture_path("ggml-vocab-llama-spm.gguf"));
  ASSERT_NE(tok, nullptr);
  check_corpus(*tok, 'b');
}

}  // namespace
}  // namespace fs
