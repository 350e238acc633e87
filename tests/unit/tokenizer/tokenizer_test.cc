// Behaviour of the tokenizer beyond the corpus: special-token switches, streaming of characters
// split over tokens, invalid input, UTF-8 helpers, regex rewriting, and errors for bad files.
#include "tokenizer/tokenizer.h"

#include <gtest/gtest.h>

#include "fixtures.h"
#include "tokenizer/incremental_decoder.h"
#include "tokenizer/regex_splitter.h"
#include "tokenizer/utf8.h"

namespace fs {
namespace {

const Tokenizer& smollm2() {
  static const std::unique_ptr<Tokenizer> tok = testing::load_json_gz("smollm2.tokenizer.json.gz");
  return *tok;
}
const Tokenizer& llama_spm() {
  static const std::unique_ptr<Tokenizer> tok =
      testing::load_file(testing::fixture_path("ggml-vocab-llama-spm.gguf"));
  return *tok;
}

TEST(TokenizerTest, SpecialTokensAreMatchedWholeUnlessParseSpecialIsOff) {
  const Tokenizer& tok = smollm2();
  const int32_t im_start = tok.token_to_id("<|im_start|>");
  ASSERT_EQ(im_start, 1);
  const auto with = tok.encode("<|im_start|>user");
  ASSERT_FALSE(with.empty());
  EXPECT_EQ(with[0], im_start);
  EncodeOptions plain;
  plain.parse_special = false;
  const auto without = tok.encode("<|im_start|>user", plain);
  EXPECT_EQ(std::count(without.begin(), without.end(), im_start), 0);
  EXPECT_EQ(tok.decode(without), "<|im_start|>user");
}

TEST(TokenizerTest, AddsBosOnlyWhenAskedAndTheTokenizerSaysSo) {
  const Tokenizer& spm = llama_spm();
  EXPECT_EQ(spm.encode("Hello")[0], spm.bos_id());
  EncodeOptions no_special;
  no_special.add_special = false;
  EXPECT_NE(spm.encode("Hello", no_special)[0], spm.bos_id());
  EXPECT_EQ(smollm2().encode("Hello").size(), 1u);  // SmolLM2 adds no BOS
}

TEST(TokenizerTest, SkipSpecialTokensDropsThemFromDecode) {
  const Tokenizer& spm = llama_spm();
  const auto ids = spm.encode("Hello world");
  EXPECT_EQ(spm.decode(ids, /*skip_special_tokens=*/false), "<s> Hello world");
  EXPECT_EQ(spm.decode(ids, /*skip_special_tokens=*/true), "Hello world");
}

TEST(TokenizerTest, SentencePieceUsesByteFallbackForCharactersNotInTheVocabulary) {
  const Tokenizer& spm = llama_spm();
  const std::string text = "\xF0\x9F\xA6\x99";  // U+1F999, not a llama token
  const auto ids = spm.encode(text);
  int num_bytes = 0;
  for (int32_t id : ids) num_bytes += spm.is_byte_token(id) ? 1 : 0;
  EXPECT_EQ(num_bytes, 4);
  EXPECT_EQ(spm.decode(ids, true), text);
}

TEST(TokenizerTest, IncrementalDecoderHoldsSplitCharactersUntilComplete) {
  const Tokenizer& spm = llama_spm();
  const auto ids = spm.encode("a\xF0\x9F\xA6\x99", {.add_special = false});
  IncrementalDecoder inc(spm);
  std::vector<std::string> parts;
  for (int32_t id : ids) parts.push_back(inc.feed(id));
  parts.push_back(inc.finish());
  for (const std::string& p : parts) EXPECT_TRUE(utf8::is_valid(p));
  EXPECT_EQ(inc.text(), "a\xF0\x9F\xA6\x99");
  EXPECT_EQ(parts[0], "a");  // the dummy-prefix space is dropped
}

TEST(TokenizerTest, IncrementalDecoderNeverEmitsBrokenUtf8ForByteLevel) {
  const Tokenizer& tok = smollm2();
  const std::string text = "\xE6\x88\x91\xE8\x83\xBD\xF0\x9F\x91\xA8\xE2\x80\x8D\xF0\x9F\x91\xA9";
  IncrementalDecoder inc(tok);
  for (int32_t id : tok.encode(text)) EXPECT_TRUE(utf8::is_valid(inc.feed(id)));
  EXPECT_EQ(inc.finish(), "");
  EXPECT_EQ(inc.text(), text);
}

TEST(TokenizerTest, IncrementalDecoderTurnsATruncatedSequenceIntoReplacementCharacter) {
  const Tokenizer& tok = smollm2();
  IncrementalDecoder inc(tok);
  const int32_t e6 = tok.token_to_id("\xC3\xA6");  // byte 0xE6 in the GPT-2 alphabet ("æ")
  ASSERT_GE(e6, 0);
  EXPECT_EQ(inc.feed(e6), "");
  EXPECT_EQ(inc.finish(), utf8::kReplacementChar);
  EXPECT_EQ(tok.decode({e6}), utf8::kReplacementChar);
}

TEST(TokenizerTest, InvalidUtf8InputIsReplacedNotCrashed) {
  const Tokenizer& tok = smollm2();
  const auto ids = tok.encode(std::string("ab\xFF\xC3(cd", 7));
  EXPECT_EQ(tok.decode(ids), "ab\xEF\xBF\xBD\xEF\xBF\xBD(cd");
}

TEST(TokenizerTest, OutOfRangeIdsAreSkippedByDecode) {
  EXPECT_EQ(smollm2().decode({-1, 1 << 30}), "");
}

TEST(Utf8Test, LossyReplacesMaximalSubparts) {
  std::string out;
  utf8::append_lossy(
      "a\xE2\x82"
      "b\xF0\x9F\x98"
      "\xED\xA0\x80"
      "c",
      &out);
  EXPECT_EQ(out,
            "a\xEF\xBF\xBD"
            "b\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"
            "c");
  EXPECT_EQ(utf8::complete_prefix_length("ab\xE2\x82"), 2u);
  EXPECT_EQ(utf8::complete_prefix_length("ab\xFF"), 3u);
}

TEST(Utf8Test, ByteToUnicodeMapRoundTrips) {
  for (int b = 0; b < 256; ++b) {
    EXPECT_EQ(utf8::code_point_to_byte(utf8::byte_to_code_point()[b]), b);
  }
  EXPECT_EQ(utf8::byte_to_code_point()[' '], 0x120u);  // "Ġ"
}

TEST(RegexSplitterTest, WhitespaceClassesIncludeNextLine) {
  EXPECT_EQ(rewrite_whitespace_classes("a\\\\s"), "a\\\\s");  // an escaped backslash, not \s
  auto r = RegexSplitter::compile(R"(\s+|[^\s]+)", false);
  ASSERT_TRUE(r.is_ok());
  std::vector<std::string_view> pieces;
  (*r)->split(
      "a\xC2\x85"
      "b",
      false, &pieces);  // U+0085 is White_Space
  ASSERT_EQ(pieces.size(), 3u);
  EXPECT_EQ(pieces[1], "\xC2\x85");
}

TEST(RegexSplitterTest, BadPatternIsAnError) {
  auto r = RegexSplitter::compile("(unclosed", false);
  EXPECT_FALSE(r.is_ok());
}

TEST(TokenizerLoadTest, ErrorsNameTheFile) {
  auto missing = Tokenizer::load("/nonexistent/tokenizer.json");
  ASSERT_FALSE(missing.is_ok());
  EXPECT_NE(missing.status().message().find("/nonexistent/tokenizer.json"), std::string::npos);
  auto bad = Tokenizer::from_hf_json("{\"model\": {\"type\": \"WordPiece\"}}", "x.json");
  ASSERT_FALSE(bad.is_ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kUnimplemented);
  auto malformed = Tokenizer::from_hf_json("{\"model\": {\"vocab\": 3}}", "y.json");
  ASSERT_FALSE(malformed.is_ok());
  EXPECT_NE(malformed.status().message().find("y.json"), std::string::npos);
  auto garbage = Tokenizer::from_hf_json("not json", "z.json");
  EXPECT_FALSE(garbage.is_ok());
}

TEST(TokenizerLoadTest, DefaultModelGgufMatchesTheFixtureWhenInstalled) {
  const std::string path =
      std::string(FASTSERVE_SOURCE_DIR) + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
  auto tok = Tokenizer::load(path);
  if (!tok.is_ok()) GTEST_SKIP() << "default model not installed";
  const std::string text = "Hello, world! 12345 <|im_end|>\n\tdef f(x): return x**2";
  EXPECT_EQ((*tok)->encode(text), smollm2().encode(text));
}

}  // namespace
}  // namespace fs
