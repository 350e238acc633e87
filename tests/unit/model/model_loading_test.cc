// Loading real and tiny models: config from GGUF metadata / config.json, every tensor bound and
// shape-checked, clear errors for missing or mis-shaped tensors and unsupported options.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "model/model_config.h"
#include "model/model_path.h"
#include "model/model_weights.h"
#include "unit/format/test_files.h"

namespace fs {
namespace {

const std::string kModels = FASTSERVE_FIXTURES_DIR "/models/";
const std::string kDefaultModel = FASTSERVE_SOURCE_DIR "/models/SmolLM2-135M-Instruct.Q4_1.gguf";

std::string temp_dir() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string dir =
      ::testing::TempDir() + "fs_model_" + std::to_string(::getpid()) + "_" + info->name();
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

// Copies an HF fixture folder to a temp dir and applies `edit` to its config.json.
std::string copy_with_config(const std::string& fixture,
                             const std::function<void(nlohmann::json&)>& edit) {
  const std::string dir = temp_dir() + "/" + fixture;
  std::filesystem::copy(kModels + fixture, dir, std::filesystem::copy_options::recursive);
  nlohmann::json j;
  std::ifstream(dir + "/config.json") >> j;
  edit(j);
  std::ofstream(dir + "/config.json") << j.dump(2);
  return dir;
}

TEST(ModelLoading, DefaultSmolLm2Gguf) {
  auto r = load_model(kDefaultModel);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  const ModelConfig& c = r->config;
  EXPECT_EQ(r->format, ModelFormat::kGguf);
  EXPECT_EQ(c.arch, ModelArch::kLlama);
  EXPECT_EQ(c.num_layers, 30);
  EXPECT_EQ(c.hidden_size, 576);
  EXPECT_EQ(c.intermediate_size, 1536);
  EXPECT_EQ(c.num_heads, 9);
  EXPECT_EQ(c.num_kv_heads, 3);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.vocab_size, 49152);
  EXPECT_DOUBLE_EQ(c.rope_theta, 100000.0);
  EXPECT_EQ(c.rope_style, RopeStyle::kInterleaved);
  EXPECT_EQ(c.norm, NormKind::kRms);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_GE(c.bos_token_id, 0);
  EXPECT_GE(c.eos_token_id, 0);
  const ModelWeights& w = r->weights;
  ASSERT_EQ(w.layers.size(), 30u);
  EXPECT_EQ(w.tok_embd.shape, (std::vector<int64_t>{49152, 576}));
  EXPECT_EQ(w.output.data, w.tok_embd.data);  // tied
  EXPECT_FALSE(w.pos_embd.has_value());
  EXPECT_FALSE(w.layers[0].bq.has_value());
  ASSERT_TRUE(w.layers[0].w_gate.has_value());
  EXPECT_EQ(w.layers[29].wk.shape, (std::vector<int64_t>{192, 576}));
  EXPECT_EQ(w.layers[29].w_down.shape, (std::vector<int64_t>{576, 1536}));
  EXPECT_EQ(w.output_norm.dtype, DType::kF32);
  // The file mixes Q4_1 (most matrices) and Q8_0 (e.g. the embedding).
  int num_q4_1 = 0, num_q8_0 = 0;
  for (const auto& t : r->gguf->tensors()) {
    num_q4_1 += t.dtype == DType::kQ4_1;
    num_q8_0 += t.dtype == DType::kQ8_0;
  }
  EXPECT_GT(num_q4_1, 0);
  EXPECT_GT(num_q8_0, 0);
  EXPECT_EQ(w.layers[3].wq.nbytes,
            static_cast<uint64_t>(576 * dtype_row_bytes(w.layers[3].wq.dtype, 576)));
  EXPECT_FALSE(c.to_string().empty());
}

TEST(ModelLoading, TinyLlamaSafetensors) {
  auto r = load_model(kModels + "tiny-llama");
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  const ModelConfig& c = r->config;
  EXPECT_EQ(r->format, ModelFormat::kSafetensors);
  EXPECT_EQ(c.arch, ModelArch::kLlama);
  EXPECT_EQ(c.vocab_size, 320);
  EXPECT_EQ(c.hidden_size, 64);
  EXPECT_EQ(c.intermediate_size, 128);
  EXPECT_EQ(c.num_layers, 2);
  EXPECT_EQ(c.num_heads, 4);
  EXPECT_EQ(c.num_kv_heads, 2);
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_DOUBLE_EQ(c.rope_theta, 10000.0);
  EXPECT_DOUBLE_EQ(c.norm_eps, 1e-5);
  EXPECT_EQ(c.rope_style, RopeStyle::kNeox);
  EXPECT_EQ(c.rope_scaling.type, RopeScalingType::kNone);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_EQ(c.bos_token_id, 1);
  EXPECT_EQ(c.eos_token_id, 2);
  const ModelWeights& w = r->weights;
  EXPECT_EQ(w.output.name, "lm_head.weight");
  EXPECT_NE(w.output.data, w.tok_embd.data);
  EXPECT_EQ(w.layers[1].wk.shape, (std::vector<int64_t>{32, 64}));
  EXPECT_EQ(w.layers[1].wk.dtype, DType::kF32);
  EXPECT_EQ(r->weight_bytes, 115008u * 4u);
}

// The GGUF fixture holds the same weights, Q/K rows permuted as convert_hf_to_gguf.py does.
TEST(ModelLoading, TinyLlamaGgufMatchesSafetensorsUpToQkPermutation) {
  auto g = load_model(kModels + "tiny-llama.gguf");
  auto h = load_model(kModels + "tiny-llama");
  ASSERT_TRUE(g.is_ok()) << g.status().to_string();
  ASSERT_TRUE(h.is_ok()) << h.status().to_string();
  const ModelConfig& gc = g->config;
  EXPECT_EQ(gc.rope_style, RopeStyle::kInterleaved);
  EXPECT_EQ(gc.vocab_size, 320);
  EXPECT_EQ(gc.num_kv_heads, 2);
  EXPECT_EQ(gc.max_position_embeddings, h->config.max_position_embeddings);
  EXPECT_FALSE(gc.tie_word_embeddings);
  EXPECT_EQ(g->weight_bytes, h->weight_bytes);
  const int64_t hd = gc.head_dim, hidden = gc.hidden_size;
  const auto rows_match = [&](const WeightTensor& gw, const WeightTensor& hw, bool permuted) {
    for (int64_t r = 0; r < gw.shape[0]; ++r) {
      // GGUF row (head, j, k) <- HF row (head, k, j) with j < hd/2, k < 2.
      const int64_t head = r / hd, j = (r % hd) / 2, k = r % 2;
      const int64_t src = permuted ? head * hd + k * (hd / 2) + j : r;
      if (std::memcmp(gw.data + r * hidden * 4, hw.data + src * hidden * 4, hidden * 4) != 0) {
        return false;
      }
    }
    return true;
  };
  for (size_t l = 0; l < 2; ++l) {
    EXPECT_TRUE(rows_match(g->weights.layers[l].wq, h->weights.layers[l].wq, true));
    EXPECT_TRUE(rows_match(g->weights.layers[l].wk, h->weights.layers[l].wk, true));
    EXPECT_TRUE(rows_match(g->weights.layers[l].wv, h->weights.layers[l].wv, false));
    EXPECT_EQ(std::memcmp(g->weights.layers[l].w_down.data, h->weights.layers[l].w_down.data,
                          h->weights.layers[l].w_down.nbytes),
              0);
  }
}

// Models at least FASTSERVE_READ_IN_MIN_MB are read into memory at load with a progress line
// (default 1 GiB; 0 here so the tiny fixtures qualify): a GGUF file and a sharded HF folder.
TEST(ModelLoading, LargeModelsAreReadInWithAProgressLine) {
  ::setenv("FASTSERVE_READ_IN_MIN_MB", "0", 1);
  for (const std::string name : {"tiny-llama.gguf", "tiny-llama3-bf16-sharded"}) {
    ::testing::internal::CaptureStderr();
    auto r = load_model(kModels + name);
    const std::string err = ::testing::internal::GetCapturedStderr();
    ASSERT_TRUE(r.is_ok()) << r.status().to_string();
    EXPECT_NE(err.find("reading '" + kModels + name + "' into memory: 100% ("), std::string::npos)
        << err;
  }
  ::unsetenv("FASTSERVE_READ_IN_MIN_MB");
  ::testing::internal::CaptureStderr();
  ASSERT_TRUE(load_model(kModels + "tiny-llama.gguf").is_ok());
  EXPECT_EQ(::testing::internal::GetCapturedStderr().find("into memory"), std::string::npos);
}

TEST(ModelLoading, TinyLlama3Bf16Sharded) {
  auto r = load_model(kModels + "tiny-llama3-bf16-sharded");
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  const ModelConfig& c = r->config;
  EXPECT_EQ(c.rope_scaling.type, RopeScalingType::kLlama3);
  EXPECT_DOUBLE_EQ(c.rope_scaling.factor, 8.0);
  EXPECT_DOUBLE_EQ(c.rope_scaling.low_freq_factor, 1.0);
  EXPECT_DOUBLE_EQ(c.rope_scaling.high_freq_factor, 4.0);
  EXPECT_EQ(c.rope_scaling.original_max_position_embeddings, 32);
  EXPECT_DOUBLE_EQ(c.rope_theta, 500000.0);
  EXPECT_EQ(r->weights.tok_embd.dtype, DType::kBF16);
  EXPECT_EQ(r->weights.layers[1].w_gate->dtype, DType::kBF16);
  EXPECT_GE(r->hf->shards().size(), 2u);
}

TEST(ModelLoading, TinyQwen2HasQkvBiasAndUntiedHead) {
  auto r = load_model(kModels + "tiny-qwen2");
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  const ModelConfig& c = r->config;
  EXPECT_EQ(c.arch, ModelArch::kQwen2);
  EXPECT_TRUE(c.qkv_bias);
  EXPECT_FALSE(c.attn_out_bias);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_EQ(c.rope_style, RopeStyle::kNeox);
  EXPECT_DOUBLE_EQ(c.rope_theta, 1000000.0);
  const LayerWeights& l = r->weights.layers[0];
  ASSERT_TRUE(l.bq && l.bk && l.bv);
  EXPECT_FALSE(l.bo.has_value());
  EXPECT_EQ(l.bq->shape, (std::vector<int64_t>{32}));
  EXPECT_EQ(l.bk->shape, (std::vector<int64_t>{16}));
  EXPECT_EQ(r->weights.output.name, "lm_head.weight");
}

TEST(ModelLoading, TinyOpt) {
  auto r = load_model(kModels + "tiny-opt");
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  const ModelConfig& c = r->config;
  EXPECT_EQ(c.arch, ModelArch::kOpt);
  EXPECT_EQ(c.norm, NormKind::kLayerNorm);
  EXPECT_EQ(c.activation, Activation::kRelu);
  EXPECT_EQ(c.position, PositionKind::kLearned);
  EXPECT_EQ(c.learned_pos_offset, 2);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(c.num_kv_heads, 4);
  const ModelWeights& w = r->weights;
  ASSERT_TRUE(w.pos_embd.has_value());
  EXPECT_EQ(w.pos_embd->shape, (std::vector<int64_t>{66, 64}));
  EXPECT_EQ(w.tok_embd.dtype, DType::kF16);
  EXPECT_EQ(w.output.data, w.tok_embd.data);
  ASSERT_TRUE(w.output_norm_b.has_value());
  const LayerWeights& l = w.layers[1];
  EXPECT_FALSE(l.w_gate.has_value());
  ASSERT_TRUE(l.bq && l.bk && l.bv && l.bo && l.b_up && l.b_down && l.attn_norm_b && l.ffn_norm_b);
  EXPECT_EQ(l.w_up.shape, (std::vector<int64_t>{128, 64}));
  EXPECT_EQ(l.w_down.shape, (std::vector<int64_t>{64, 128}));
  EXPECT_EQ(l.b_up->name, "model.decoder.layers.1.fc1.bias");
}

TEST(ModelLoading, MissingTensorNamesFileTensorAndShape) {
  const std::string dir =
      copy_with_config("tiny-qwen2", [](nlohmann::json& j) { j["num_hidden_layers"] = 3; });
  auto r = load_model(dir);
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
  const std::string& m = r.status().message();
  EXPECT_NE(m.find(dir), std::string::npos) << m;
  EXPECT_NE(m.find("model.layers.2.input_layernorm.weight"), std::string::npos) << m;
  EXPECT_NE(m.find("[32]"), std::string::npos) << m;
  std::filesystem::remove_all(std::filesystem::path(dir).parent_path());
}

TEST(ModelLoading, WrongShapeNamesExpectedAndActual) {
  const std::string dir =
      copy_with_config("tiny-qwen2", [](nlohmann::json& j) { j["intermediate_size"] = 100; });
  auto r = load_model(dir);
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), StatusCode::kDataLoss);
  const std::string& m = r.status().message();
  EXPECT_NE(m.find("model.safetensors"), std::string::npos) << m;
  EXPECT_NE(m.find("model.layers.0.mlp.gate_proj.weight"), std::string::npos) << m;
  EXPECT_NE(m.find("[64, 32]"), std::string::npos) << m;
  EXPECT_NE(m.find("[100, 32]"), std::string::npos) << m;
  std::filesystem::remove_all(std::filesystem::path(dir).parent_path());
}

TEST(ModelLoading, UnsupportedOptionsAreUnimplemented) {
  const std::vector<std::pair<std::string, std::function<void(nlohmann::json&)>>> cases = {
      {"tiny-opt", [](nlohmann::json& j) { j["do_layer_norm_before"] = false; }},
      {"tiny-opt", [](nlohmann::json& j) { j["word_embed_proj_dim"] = 32; }},
      {"tiny-llama", [](nlohmann::json& j) { j["model_type"] = "gpt_neox"; }},
      {"tiny-llama", [](nlohmann::json& j) { j["hidden_act"] = "gelu"; }},
      {"tiny-llama",
       [](nlohmann::json& j) {
         j["rope_parameters"] = {{"rope_type", "yarn"}, {"factor", 4.0}};
       }},
  };
  for (const auto& [fixture, edit] : cases) {
    const std::string dir = copy_with_config(fixture, edit);
    auto r = load_model(dir);
    ASSERT_FALSE(r.is_ok()) << fixture;
    EXPECT_EQ(r.status().code(), StatusCode::kUnimplemented) << r.status().to_string();
    EXPECT_NE(r.status().message().find("config.json"), std::string::npos)
        << r.status().to_string();
    std::filesystem::remove_all(std::filesystem::path(dir).parent_path());
  }
}

TEST(ModelConfig, ReadsLegacyRopeKeysAndValidates) {
  nlohmann::json j = {{"model_type", "llama"},
                      {"vocab_size", 100},
                      {"hidden_size", 32},
                      {"intermediate_size", 64},
                      {"num_hidden_layers", 1},
                      {"num_attention_heads", 4},
                      {"rope_theta", 1234.0},
                      {"eos_token_id", {7, 8, 9}},
                      {"rope_scaling", {{"type", "linear"}, {"factor", 2.0}}}};
  auto c = ModelConfig::from_hf_config(j, "cfg.json");
  ASSERT_TRUE(c.is_ok()) << c.status().to_string();
  EXPECT_DOUBLE_EQ(c->rope_theta, 1234.0);
  EXPECT_EQ(c->rope_scaling.type, RopeScalingType::kLinear);
  EXPECT_DOUBLE_EQ(c->rope_scaling.factor, 2.0);
  EXPECT_EQ(c->num_kv_heads, 4);
  EXPECT_EQ(c->head_dim, 8);
  EXPECT_EQ(c->eos_token_id, 7);
  EXPECT_EQ(c->extra_eos_token_ids, (std::vector<int64_t>{8, 9}));
  EXPECT_TRUE(c->validate().is_ok());
  ModelConfig bad = *c;
  bad.num_kv_heads = 3;
  EXPECT_EQ(bad.validate().code(), StatusCode::kInvalidArgument);
  bad = *c;
  bad.head_dim = 7;
  EXPECT_FALSE(bad.validate().is_ok());
  j.erase("hidden_size");
  auto missing = ModelConfig::from_hf_config(j, "cfg.json");
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("hidden_size"), std::string::npos);
}

TEST(ModelConfig, FromGgufMetadata) {
  const std::string dir = temp_dir();
  const auto open = [&](const testing_util::GgufBuilder& g) {
    testing_util::write_file(dir + "/m.gguf", g.build());
    auto f = GgufFile::open(dir + "/m.gguf");
    EXPECT_TRUE(f.is_ok()) << f.status().to_string();
    return ModelConfig::from_gguf(**f);
  };
  testing_util::GgufBuilder gpt2;
  gpt2.kv_str("general.architecture", "gpt2");
  EXPECT_EQ(open(gpt2).status().code(), StatusCode::kUnimplemented);

  testing_util::GgufBuilder qwen;
  qwen.kv_str("general.architecture", "qwen2")
      .kv_u32("qwen2.embedding_length", 32)
      .kv_u32("qwen2.feed_forward_length", 64)
      .kv_u32("qwen2.attention.head_count", 4)
      .kv_u32("qwen2.attention.head_count_kv", 2)
      .kv_f32("qwen2.rope.freq_base", 1e6f)
      .kv_str_array("tokenizer.ggml.tokens", {"a", "b", "c"});
  auto missing = open(qwen);
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("qwen2.block_count"), std::string::npos);
  EXPECT_NE(missing.status().message().find("m.gguf"), std::string::npos);

  qwen.kv_u32("qwen2.block_count", 2);
  auto c = open(qwen);
  ASSERT_TRUE(c.is_ok()) << c.status().to_string();
  EXPECT_EQ(c->arch, ModelArch::kQwen2);
  EXPECT_EQ(c->rope_style, RopeStyle::kNeox);
  EXPECT_TRUE(c->qkv_bias);
  EXPECT_EQ(c->vocab_size, 3);  // from the tokenizer's token list
  EXPECT_EQ(c->head_dim, 8);
  EXPECT_TRUE(c->tie_word_embeddings);  // no output.weight
  EXPECT_TRUE(c->validate().is_ok()) << c->validate().to_string();
  std::filesystem::remove_all(dir);
}

TEST(ModelPath, ResolvesDefaultAndExplicitPaths) {
  ::unsetenv("FASTSERVE_MODEL");
  auto def = resolve_model_path("default");
  ASSERT_TRUE(def.is_ok()) << def.status().to_string();  // beside the build dir's parent
  EXPECT_NE(def->find(kDefaultModelFile), std::string::npos);
  ::setenv("FASTSERVE_MODEL", (kModels + "tiny-llama.gguf").c_str(), 1);
  EXPECT_EQ(resolve_model_path("").value(), kModels + "tiny-llama.gguf");
  ::setenv("FASTSERVE_MODEL", "/nonexistent/model.gguf", 1);
  EXPECT_EQ(resolve_model_path("default").status().code(), StatusCode::kNotFound);
  ::unsetenv("FASTSERVE_MODEL");
  EXPECT_EQ(resolve_model_path(kModels + "tiny-opt").value(), kModels + "tiny-opt");
  auto missing = resolve_model_path("/nonexistent/x.gguf");
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("/nonexistent/x.gguf"), std::string::npos);
}

TEST(ModelLoading, NonexistentPathIsNotFound) {
  auto r = load_model("/nonexistent/model.gguf");
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
  EXPECT_NE(r.status().message().find("/nonexistent/model.gguf"), std::string::npos);
}

}  // namespace
}  // namespace fs
