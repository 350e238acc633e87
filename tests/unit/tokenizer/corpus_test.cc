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

// A Qwen2-style tokenizer (NFC normalizer, Qwen2's split regex, added tokens with every flag:
// special, single_word, lstrip, rstrip), trained by scripts/make_tokenizer_nfc_fixture.py, over the
// corpus, its NFD forms and added tokens in every context.
TEST(CorpusTest, NfcAndAddedTokenFlagsMatchHf) {
  auto tok = testing::load_json_gz("nfc-bpe.tokenizer.json.gz");
  ASSERT_NE(tok, nullptr);
  const std::string text = testing::read_gz(testing::fixture_path("nfc-bpe.corpus.jsonl.gz"));
  ASSERT_FALSE(text.empty());
  const char* limit_env = std::getenv("FASTSERVE_TOKENIZER_CORPUS_LIMIT");
  const size_t step = limit_env != nullptr ? 16 : 1;  // sanitizer runs: every 16th line
  size_t pos = 0, line = 0, checked = 0, id_failures = 0, decode_failures = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    const std::string_view row(text.data() + pos, end - pos);
    pos = end + 1;
    if (line++ % step != 0) continue;
    auto j = nlohmann::json::parse(row, nullptr, false);
    ASSERT_TRUE(j.is_object());
    const std::string t = j["t"].get<std::string>();
    const auto want = j["c"].get<std::vector<int32_t>>();
    const std::string want_text = j.contains("cd") ? j["cd"].get<std::string>() : t;
    ++checked;
    const std::vector<int32_t> got = tok->encode(t);
    if (got != want && ++id_failures <= 5) {
      ADD_FAILURE() << "ids differ for " << nlohmann::json(t).dump() << "\n  got  " << show_ids(got)
                    << "\n  want " << show_ids(want);
    }
    if (tok->decode(want) != want_text && ++decode_failures <= 5) {
      ADD_FAILURE() << "decode differs for " << nlohmann::json(t).dump();
    }
  }
  EXPECT_GT(checked, 1000u);
  EXPECT_EQ(id_failures, 0u) << "of " << checked;
  EXPECT_EQ(decode_failures, 0u);
}

}  // namespace
}  // namespace fs
