#include "model/model_shapes.h"

#include <filesystem>
#include <fstream>

namespace fs {
namespace {

// The config.json files of the public checkpoints (fields the loader does not read trimmed).
constexpr NamedShape kShapes[] = {
    {"llama-3-8b", "meta-llama/Meta-Llama-3-8B",
     R"({"model_type": "llama", "architectures": ["LlamaForCausalLM"], "attention_bias": false,
         "bos_token_id": 128000, "eos_token_id": 128001, "hidden_act": "silu", "hidden_size": 4096,
         "intermediate_size": 14336, "max_position_embeddings": 8192, "num_attention_heads": 32,
         "num_hidden_layers": 32, "num_key_value_heads": 8, "rms_norm_eps": 1e-05,
         "rope_scaling": null, "rope_theta": 500000.0, "tie_word_embeddings": false,
         "torch_dtype": "bfloat16", "vocab_size": 128256})"},
    {"llama-3-70b", "meta-llama/Meta-Llama-3-70B",
     R"({"model_type": "llama", "architectures": ["LlamaForCausalLM"], "attention_bias": false,
         "bos_token_id": 128000, "eos_token_id": 128001, "hidden_act": "silu", "hidden_size": 8192,
         "intermediate_size": 28672, "max_position_embeddings": 8192, "num_attention_heads": 64,
         "num_hidden_layers": 80, "num_key_value_heads": 8, "rms_norm_eps": 1e-05,
         "rope_scaling": null, "rope_theta": 500000.0, "tie_word_embeddings": false,
         "torch_dtype": "bfloat16", "vocab_size": 128256})"},
    {"llama-2-7b", "meta-llama/Llama-2-7b-hf",
     R"({"model_type": "llama", "architectures": ["LlamaForCausalLM"], "bos_token_id": 1,
         "eos_token_id": 2, "hidden_act": "silu", "hidden_size": 4096, "intermediate_size": 11008,
         "max_position_embeddings": 4096, "num_attention_heads": 32, "num_hidden_layers": 32,
         "num_key_value_heads": 32, "rms_norm_eps": 1e-05, "rope_scaling": null,
         "tie_word_embeddings": false, "torch_dtype": "float16", "vocab_size": 32000})"},
    {"llama-2-13b", "meta-llama/Llama-2-13b-hf",
     R"({"model_type": "llama", "architectures": ["LlamaForCausalLM"], "bos_token_id": 1,
         "eos_token_id": 2, "hidden_act": "silu", "hidden_size": 5120, "intermediate_size": 13824,
         "max_position_embeddings": 4096, "num_attention_heads": 40, "num_hidden_layers": 40,
         "num_key_value_heads": 40, "rms_norm_eps": 1e-05, "rope_scaling": null,
         "tie_word_embeddings": false, "torch_dtype": "float16", "vocab_size": 32000})"},
    {"opt-13b", "facebook/opt-13b",
     R"({"model_type": "opt", "architectures": ["OPTForCausalLM"], "activation_function": "relu",
         "bos_token_id": 2, "do_layer_norm_before": true, "eos_token_id": 2, "ffn_dim": 20480,
         "hidden_size": 5120, "max_position_embeddings": 2048, "num_attention_heads": 40,
         "num_hidden_layers": 40, "pad_token_id": 1, "torch_dtype": "float16",
         "vocab_size": 50272, "word_embed_proj_dim": 5120})"},
    {"qwen2-7b", "Qwen/Qwen2-7B",
     R"({"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"], "bos_token_id": 151643,
         "eos_token_id": 151643, "hidden_act": "silu", "hidden_size": 3584,
         "intermediate_size": 18944, "max_position_embeddings": 131072, "max_window_layers": 28,
         "num_attention_heads": 28, "num_hidden_layers": 28, "num_key_value_heads": 4,
         "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "sliding_window": 131072,
         "tie_word_embeddings": false, "torch_dtype": "bfloat16", "use_sliding_window": false,
         "vocab_size": 152064})"},
    {"smollm2-135m", "HuggingFaceTB/SmolLM2-135M-Instruct",
     R"({"model_type": "llama", "architectures": ["LlamaForCausalLM"], "attention_bias": false,
         "bos_token_id": 1, "eos_token_id": 2, "head_dim": 64, "hidden_act": "silu",
         "hidden_size": 576, "intermediate_size": 1536, "max_position_embeddings": 8192,
         "num_attention_heads": 9, "num_hidden_layers": 30, "num_key_value_heads": 3,
         "pad_token_id": 2, "rms_norm_eps": 1e-05, "rope_scaling": null, "rope_theta": 100000,
         "tie_word_embeddings": true, "torch_dtype": "bfloat16", "vocab_size": 49152})"},
};

Result<ModelConfig> parse_checked(const nlohmann::json& j, const std::string& where) {
  FS_ASSIGN_OR_RETURN(ModelConfig c, ModelConfig::from_hf_config(j, where));
  if (Status s = c.validate(); !s.is_ok())
    return Status(s.code(), fmt::format("{}: {}", where, s.message()));
  return c;
}

}  // namespace

std::span<const NamedShape> named_shapes() { return kShapes; }

Result<ModelConfig> named_shape_config(std::string_view name) {
  std::string names;
  for (const NamedShape& s : kShapes) {
    if (name == s.name) {
      const nlohmann::json j =
          nlohmann::json::parse(s.hf_config_json, nullptr, /*allow_exceptions=*/false);
      return parse_checked(j, fmt::format("shape '{}' ({})", s.name, s.hf_id));
    }
    names += names.empty() ? s.name : fmt::format(", {}", s.name);
  }
  return not_found("no model shape named '{}' (known: {})", name, names);
}

Result<ModelConfig> dummy_model_config(const std::string& spec) {
  namespace stdfs = std::filesystem;
  std::error_code ec;
  stdfs::path path = spec;
  if (stdfs::is_directory(path, ec)) path /= "config.json";
  if (!stdfs::is_regular_file(path, ec)) {
    Result<ModelConfig> named = named_shape_config(spec);
    if (named.is_ok()) return named;
    return not_found("dummy model '{}': not a config.json file or folder, and {}", spec,
                     named.status().message());
  }
  std::ifstream in(path);
  const nlohmann::json j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return data_loss("'{}': not valid JSON", path.string());
  return parse_checked(j, path.string());
}

int64_t num_parameters(const ModelConfig& c) {
  const int64_t h = c.hidden_size, f = c.intermediate_size;
  const int64_t q = c.num_heads * c.head_dim, kv = c.num_kv_heads * c.head_dim;
  const bool layer_norm = c.norm == NormKind::kLayerNorm;
  int64_t layer = h * q + 2 * h * kv + q * h;  // Wq, Wk, Wv, Wo
  layer += (c.activation == Activation::kSiluGated ? 3 : 2) * h * f;
  layer += 2 * h * (layer_norm ? 2 : 1);  // two norms (+ biases)
  if (c.qkv_bias) layer += q + 2 * kv;
  if (c.attn_out_bias) layer += h;
  if (c.mlp_bias) layer += f + h;
  int64_t n = c.num_layers * layer + c.vocab_size * h + h * (layer_norm ? 2 : 1);
  if (!c.tie_word_embeddings) n += c.vocab_size * h;
  if (c.position == PositionKind::kLearned)
    n += (c.max_position_embeddings + c.learned_pos_offset) * h;
  return n;
}

}  // namespace fs
