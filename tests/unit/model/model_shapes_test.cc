// Named model shapes and dummy (random) weights: the shapes parse as their checkpoints' configs,
// have their published parameter counts, and a dummy model runs a forward pass on the CPU.
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>

#include "backend/cpu/kv_cache.h"
#include "model/causal_lm.h"
#include "model/model_shapes.h"
#include "model/model_weights.h"

namespace fs {
namespace {

const std::string kModels = FASTSERVE_FIXTURES_DIR "/models/";

ModelConfig shape(const char* name) {
  Result<ModelConfig> c = named_shape_config(name);
  EXPECT_TRUE(c.is_ok()) << c.status().message();
  return c.is_ok() ? *c : ModelConfig{};
}

TEST(ModelShapes, EveryNamedShapeParsesAndValidates) {
  ASSERT_GE(named_shapes().size(), 6u);
  for (const NamedShape& s : named_shapes()) {
    Result<ModelConfig> c = named_shape_config(s.name);
    ASSERT_TRUE(c.is_ok()) << s.name << ": " << c.status().message();
    EXPECT_TRUE(c->validate().is_ok()) << s.name;
  }
}

TEST(ModelShapes, HaveTheCheckpointsDimensions) {
  const ModelConfig l3 = shape("llama-3-8b");
  EXPECT_EQ(l3.arch, ModelArch::kLlama);
  EXPECT_EQ(l3.num_layers, 32);
  EXPECT_EQ(l3.num_heads, 32);
  EXPECT_EQ(l3.num_kv_heads, 8);
  EXPECT_EQ(l3.head_dim, 128);
  EXPECT_EQ(l3.vocab_size, 128256);
  EXPECT_EQ(l3.rope_theta, 500000.0);
  EXPECT_EQ(l3.rope_style, RopeStyle::kNeox);
  EXPECT_FALSE(l3.tie_word_embeddings);

  const ModelConfig opt = shape("opt-13b");
  EXPECT_EQ(opt.arch, ModelArch::kOpt);
  EXPECT_EQ(opt.norm, NormKind::kLayerNorm);
  EXPECT_EQ(opt.activation, Activation::kRelu);
  EXPECT_EQ(opt.position, PositionKind::kLearned);
  EXPECT_EQ(opt.learned_pos_offset, 2);
  EXPECT_EQ(opt.num_kv_heads, 40);
  EXPECT_EQ(opt.head_dim, 128);
  EXPECT_EQ(opt.intermediate_size, 20480);
  EXPECT_TRUE(opt.qkv_bias && opt.attn_out_bias && opt.mlp_bias && opt.tie_word_embeddings);

  const ModelConfig qwen = shape("qwen2-7b");
  EXPECT_EQ(qwen.arch, ModelArch::kQwen2);
  EXPECT_TRUE(qwen.qkv_bias);
  EXPECT_EQ(qwen.num_kv_heads, 4);
  EXPECT_EQ(qwen.norm_eps, 1e-6);
  EXPECT_EQ(qwen.sliding_window, 0);  // use_sliding_window: false

  EXPECT_EQ(shape("llama-2-7b").num_kv_heads, 32);
  EXPECT_EQ(shape("llama-2-13b").hidden_size, 5120);
}

// Published counts (the checkpoints' safetensors totals).
TEST(ModelShapes, ParameterCountsMatchTheCheckpoints) {
  EXPECT_EQ(num_parameters(shape("llama-3-8b")), 8030261248);
  EXPECT_EQ(num_parameters(shape("llama-2-7b")), 6738415616);
  EXPECT_EQ(num_parameters(shape("llama-2-13b")), 13015864320);
  EXPECT_EQ(num_parameters(shape("qwen2-7b")), 7615616512);
  EXPECT_EQ(num_parameters(shape("smollm2-135m")), 134515008);
  EXPECT_NEAR(num_parameters(shape("opt-13b")) / 1e9, 12.85, 0.01);
}

// The named SmolLM2 shape is the real checkpoint's config (the one in models/, written by a newer
// transformers with rope_parameters instead of rope_theta).
TEST(ModelShapes, SmolLm2ShapeMatchesTheCheckpointFolder) {
  Result<ModelConfig> folder =
      dummy_model_config(FASTSERVE_SOURCE_DIR "/models/SmolLM2-135M-Instruct-hf-f32");
  if (!folder.is_ok()) GTEST_SKIP() << folder.status().message();
  const ModelConfig named = shape("smollm2-135m");
  EXPECT_EQ(named.to_string(), folder->to_string());
}

TEST(DummyModelConfig, TakesAFolderAFileOrAName) {
  Result<ModelConfig> folder = dummy_model_config(kModels + "tiny-opt");
  ASSERT_TRUE(folder.is_ok()) << folder.status().message();
  EXPECT_EQ(folder->hidden_size, 64);
  Result<ModelConfig> file = dummy_model_config(kModels + "tiny-qwen2/config.json");
  ASSERT_TRUE(file.is_ok()) << file.status().message();
  EXPECT_EQ(file->arch, ModelArch::kQwen2);
  EXPECT_TRUE(dummy_model_config("llama-3-8b").is_ok());
}

TEST(DummyModelConfig, UnknownNameListsTheShapes) {
  Result<ModelConfig> c = dummy_model_config("llama-9-1t");
  ASSERT_FALSE(c.is_ok());
  EXPECT_EQ(c.status().code(), StatusCode::kNotFound);
  EXPECT_NE(c.status().message().find("llama-3-8b"), std::string::npos) << c.status().message();
  EXPECT_NE(c.status().message().find("llama-9-1t"), std::string::npos);
}

TEST(DummyWeights, RefuseShapesTooLargeForTheCpu) {
  Result<LoadedModel> m = make_dummy_model(shape("llama-3-8b"), "llama-3-8b");
  ASSERT_FALSE(m.is_ok());
  EXPECT_EQ(m.status().code(), StatusCode::kResourceExhausted);
  EXPECT_NE(m.status().message().find("--device cuda"), std::string::npos) << m.status().message();
  EXPECT_EQ(make_dummy_model(shape("smollm2-135m"), "x", DType::kQ4_1).status().code(),
            StatusCode::kInvalidArgument);
}

// Runs the whole prompt once; returns the last row of logits.
std::vector<float> last_logits(LoadedModel model) {
  std::unique_ptr<CausalLm> lm = CausalLm::create(std::move(model));
  const std::vector<int32_t> tokens = {1, 17, 200, 4, 250};
  std::vector<int32_t> table = {0};
  cpu::KvCache cache(lm->kv_shape(1, 16));
  const ForwardSeq seq{tokens, 0, table, false};
  Result<std::span<const float>> out = lm->forward(std::span(&seq, 1), cache);
  EXPECT_TRUE(out.is_ok()) << out.status().message();
  return out.is_ok() ? std::vector<float>(out->begin(), out->end()) : std::vector<float>();
}

TEST(DummyWeights, EveryArchitectureRunsAForward) {
  for (const char* fixture : {"tiny-llama", "tiny-qwen2", "tiny-opt"}) {
    Result<ModelConfig> c = dummy_model_config(kModels + fixture);
    ASSERT_TRUE(c.is_ok()) << c.status().message();
    for (DType dtype : {DType::kBF16, DType::kF16, DType::kF32}) {
      Result<LoadedModel> m = make_dummy_model(*c, fixture, dtype, /*seed=*/3);
      ASSERT_TRUE(m.is_ok()) << fixture << ": " << m.status().message();
      EXPECT_EQ(m->format, ModelFormat::kDummy);
      EXPECT_EQ(m->weights.layers.size(), static_cast<size_t>(c->num_layers));
      EXPECT_EQ(m->weights.layers[0].wq.dtype, dtype);
      EXPECT_EQ(m->weights.layers[0].attn_norm.dtype, DType::kF32);
      const std::vector<float> logits = last_logits(std::move(*m));
      ASSERT_EQ(static_cast<int64_t>(logits.size()), c->vocab_size) << fixture;
      for (float x : logits) ASSERT_TRUE(std::isfinite(x)) << fixture;
      EXPECT_NE(*std::max_element(logits.begin(), logits.end()),
                *std::min_element(logits.begin(), logits.end()));
    }
  }
}

TEST(DummyWeights, AreDeterministicInTheSeed) {
  Result<ModelConfig> c = dummy_model_config(kModels + "tiny-llama");
  ASSERT_TRUE(c.is_ok());
  const auto logits = [&](uint64_t seed) {
    Result<LoadedModel> m = make_dummy_model(*c, "tiny", DType::kBF16, seed);
    EXPECT_TRUE(m.is_ok());
    return last_logits(std::move(*m));
  };
  EXPECT_EQ(logits(5), logits(5));
  EXPECT_NE(logits(5), logits(6));
}

TEST(DummyWeights, SmolLm2ShapeLoadsOnTheCpu) {
  Result<LoadedModel> m = make_dummy_model(shape("smollm2-135m"), "smollm2-135m");
  ASSERT_TRUE(m.is_ok()) << m.status().message();
  // bf16 matrices and embeddings (tied: counted once), f32 norms.
  EXPECT_NEAR(static_cast<double>(m->weight_bytes), 2.0 * num_parameters(m->config),
              0.01 * m->weight_bytes);
  EXPECT_EQ(m->weights.output.data, m->weights.tok_embd.data);
}

}  // namespace
}  // namespace fs
