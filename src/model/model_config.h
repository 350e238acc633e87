// Model hyperparameters, immutable after loading: built from GGUF metadata or an HF config.json,
// validated once, printable for logs and benchmark reports (STYLE.md habit 12).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/status.h"
#include "model/format/gguf_file.h"

namespace fs {

enum class ModelArch { kLlama, kQwen2, kOpt };  // kLlama covers llama / mistral / smollm
enum class NormKind { kRms, kLayerNorm };
enum class Activation { kSiluGated, kRelu };  // SiLU(gate) * up (llama) / ReLU(fc1) (OPT)
enum class PositionKind { kRope, kLearned };  // kLearned: OPT embed_positions, index = pos + offset
// kInterleaved: rotate adjacent pairs (x[2i], x[2i+1]) — llama.cpp's "normal" rope; GGUF llama
// files have Q/K rows permuted by convert_hf_to_gguf.py for it. kNeox: rotate halves (x[i], x[i +
// d/2]) — HF llama/qwen2/mistral safetensors, and llama.cpp for qwen2 GGUF.
enum class RopeStyle { kInterleaved, kNeox };
enum class RopeScalingType { kNone, kLinear, kLlama3 };

struct RopeScaling {
  RopeScalingType type = RopeScalingType::kNone;
  double factor = 1.0;  // linear: positions divided by factor; llama3: low-frequency divisor
  double low_freq_factor = 1.0;                  // llama3 only
  double high_freq_factor = 4.0;                 // llama3 only
  int64_t original_max_position_embeddings = 0;  // llama3 only
};

struct ModelConfig {
  ModelArch arch = ModelArch::kLlama;
  std::string arch_name;  // as in the file: "llama", "mistral", "qwen2", "opt", ...
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t max_position_embeddings = 0;  // context length
  double norm_eps = 1e-5;
  NormKind norm = NormKind::kRms;
  Activation activation = Activation::kSiluGated;
  PositionKind position = PositionKind::kRope;
  int64_t learned_pos_offset = 0;  // OPT: 2 (rows 0..1 of embed_positions are unused)
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  RopeStyle rope_style = RopeStyle::kNeox;
  bool qkv_bias = false;       // q/k/v projections have biases (qwen2, OPT, llama attention_bias)
  bool attn_out_bias = false;  // the output projection has a bias (OPT, llama attention_bias)
  bool mlp_bias = false;       // fc1/fc2 biases (OPT)
  bool tie_word_embeddings = false;  // the LM head is the token embedding
  int64_t bos_token_id = -1;         // -1: none
  int64_t eos_token_id = -1;
  std::vector<int64_t> extra_eos_token_ids;  // llama3-style lists of stop ids beyond the first
  int64_t sliding_window =
      0;  // 0: none. Recorded only; the forward pass attends to the whole context.

  // From GGUF metadata (general.architecture = llama | qwen2, keys `<arch>.*`, tokenizer.ggml.*).
  // The vocab size falls back to tokenizer.ggml.tokens' length; tie_word_embeddings is set when the
  // file has no output.weight. Errors name the file and key; kUnimplemented for other
  // architectures.
  static Result<ModelConfig> from_gguf(const GgufFile& file);
  // From a parsed HF config.json (model_type llama | mistral | smollm | qwen2 | opt); `path` is
  // used in errors. Accepts both rope_theta/rope_scaling (transformers < 5) and rope_parameters (>=
  // 5).
  static Result<ModelConfig> from_hf_config(const nlohmann::json& config, const std::string& path);

  // Checks consistency (positive sizes, heads divisible, even head_dim for rope, scaling
  // parameters).
  Status validate() const;
  // Multi-line, "key: value" per line, for logs and `fastserve inspect`.
  std::string to_string() const;
};

const char* model_arch_name(ModelArch arch);

// Inverse rotary frequencies [head_dim / 2] as transformers computes them (rope_init_fn of
// modeling_rope_utils), with the config's rope scaling (linear, llama3). Shared by every backend.
std::vector<float> rope_inv_freq(const ModelConfig& c);

}  // namespace fs
