// Runtimes for dummy (random-weight) models: the tokenizer comes from another file, and ids the
// model can produce beyond that tokenizer's vocabulary detokenize to nothing instead of crashing.
#include <gtest/gtest.h>

#include <filesystem>

#include "engine/generate.h"
#include "engine/model_runtime.h"
#include "model/model_shapes.h"
#include "model/model_weights.h"
#include "tokenizer/incremental_decoder.h"

namespace fs {
namespace {

const std::string kRoot = FASTSERVE_SOURCE_DIR;
const std::string kGguf = kRoot + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
const std::string kHfFolder = kRoot + "/models/SmolLM2-135M-Instruct-hf-f32";

std::unique_ptr<CausalLm> dummy_lm(const ModelConfig& c) {
  Result<LoadedModel> m = make_dummy_model(c, "dummy", DType::kBF16, 1);
  EXPECT_TRUE(m.is_ok()) << m.status().message();
  return CausalLm::create(std::move(*m));
}

TEST(DummyRuntime, TakesTheTokenizerAndTemplateOfAGgufOrAFolder) {
  Result<ModelConfig> c = named_shape_config("smollm2-135m");
  ASSERT_TRUE(c.is_ok());
  for (const std::string& tok : {kGguf, kHfFolder}) {
    if (!std::filesystem::exists(tok)) GTEST_SKIP() << tok << " not installed";
    Result<ModelRuntime> rt = make_dummy_runtime("smollm2-135m", nullptr, *c, tok);
    ASSERT_TRUE(rt.is_ok()) << rt.status().message();
    EXPECT_EQ(rt->model_path, "smollm2-135m");
    ASSERT_TRUE(rt->tokenizer);
    EXPECT_TRUE(rt->chat_template.has_value());
    EXPECT_FALSE(rt->stop_token_ids.empty());
    Result<std::vector<int32_t>> ids = rt->encode_text("Hello world");
    ASSERT_TRUE(ids.is_ok());
    EXPECT_EQ(rt->tokenizer->decode(*ids, /*skip_special_tokens=*/true), "Hello world");
  }
}

TEST(DummyRuntime, ErrorsNameTheTokenizerPath) {
  Result<ModelConfig> c = named_shape_config("smollm2-135m");
  ASSERT_TRUE(c.is_ok());
  Result<ModelRuntime> missing = make_dummy_runtime("x", nullptr, *c, "/nonexistent/tok.gguf");
  ASSERT_FALSE(missing.is_ok());
  EXPECT_NE(missing.status().message().find("/nonexistent/tok.gguf"), std::string::npos);
  const std::string no_json = kRoot + "/tests/fixtures/models/tiny-qwen2";
  Result<ModelRuntime> folder = make_dummy_runtime("x", nullptr, *c, no_json);
  ASSERT_FALSE(folder.is_ok());
  EXPECT_NE(folder.status().message().find("tokenizer.json"), std::string::npos);
  // No tokenizer at all: token ids only.
  Result<ModelRuntime> none = make_dummy_runtime("x", nullptr, *c, "");
  ASSERT_TRUE(none.is_ok());
  EXPECT_FALSE(none->tokenizer);
  EXPECT_FALSE(none->encode_text("hi").is_ok());
}

// A model whose vocabulary is larger than its tokenizer's (opt-13b's 50272 ids over SmolLM2's
// 49152-token tokenizer): generated ids past the tokenizer decode to empty text.
TEST(DummyRuntime, IdsBeyondTheTokenizerVocabDecodeToNothing) {
  if (!std::filesystem::exists(kGguf)) GTEST_SKIP() << kGguf << " not installed";
  Result<ModelConfig> c = named_shape_config("smollm2-135m");
  ASSERT_TRUE(c.is_ok());
  Result<ModelRuntime> rt = make_dummy_runtime("x", nullptr, *c, kGguf);
  ASSERT_TRUE(rt.is_ok());
  const Tokenizer& tok = *rt->tokenizer;
  const int32_t past = static_cast<int32_t>(tok.vocab_size()) + 100;
  EXPECT_EQ(tok.decode({past, -1}), "");
  IncrementalDecoder decoder(tok, /*skip_special_tokens=*/true);
  EXPECT_EQ(decoder.feed(past), "");
  EXPECT_EQ(decoder.feed(-5), "");
  EXPECT_EQ(decoder.finish(), "");
}

// The CPU model of a dummy runtime generates (random tokens, but within the model's vocab).
TEST(DummyRuntime, GeneratesOnTheCpu) {
  Result<ModelConfig> c = dummy_model_config(kRoot + "/tests/fixtures/models/tiny-llama");
  ASSERT_TRUE(c.is_ok());
  Result<ModelRuntime> rt = make_dummy_runtime("tiny", dummy_lm(*c), *c, "");
  ASSERT_TRUE(rt.is_ok());
  GenerateOptions options;
  options.max_tokens = 6;
  const std::vector<int32_t> prompt = {1, 5, 9};
  Result<GenerateResult> r = generate(*rt->lm, prompt, options);
  ASSERT_TRUE(r.is_ok()) << r.status().message();
  ASSERT_EQ(r->tokens.size(), 6u);
  for (int32_t t : r->tokens) EXPECT_TRUE(t >= 0 && t < c->vocab_size);
}

}  // namespace
}  // namespace fs
