#include "model/model_config.h"

#include <cmath>
#include <numbers>

namespace fs {

const char* model_arch_name(ModelArch arch) {
  switch (arch) {
    case ModelArch::kLlama:
      return "llama";
    case ModelArch::kQwen2:
      return "qwen2";
    case ModelArch::kOpt:
      return "opt";
  }
  return "?";
}

namespace {

// ---- GGUF
// -----------------------------------------------------------------------------------------

Result<int64_t> gguf_int_or(const GgufFile& f, const std::string& key, int64_t fallback) {
  if (f.find(key) == nullptr) return fallback;
  return f.get_int(key);
}

Result<double> gguf_float_or(const GgufFile& f, const std::string& key, double fallback) {
  if (f.find(key) == nullptr) return fallback;
  return f.get_float(key);
}

// ---- HF config.json
// -------------------------------------------------------------------------------

// Integer field; absent or null gives `fallback`; `required` turns absence into kNotFound.
Result<int64_t> json_int(const nlohmann::json& j, const char* key, const std::string& path,
                         std::optional<int64_t> fallback) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    if (fallback) return *fallback;
    return not_found("'{}': \"{}\" is missing", path, key);
  }
  if (!it->is_number_integer())
    return invalid_argument("'{}': \"{}\" is not an integer", path, key);
  return it->get<int64_t>();
}

Result<double> json_float(const nlohmann::json& j, const char* key, const std::string& path,
                          double fallback) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  if (!it->is_number()) return invalid_argument("'{}': \"{}\" is not a number", path, key);
  return it->get<double>();
}

Result<bool> json_bool(const nlohmann::json& j, const char* key, const std::string& path,
                       bool fallback) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) return invalid_argument("'{}': \"{}\" is not a boolean", path, key);
  return it->get<bool>();
}

std::string json_string(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// bos/eos: an integer, a list of integers (llama3 eos), or null.
Status read_token_ids(const nlohmann::json& j, const char* key, const std::string& path,
                      int64_t* first, std::vector<int64_t>* rest) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return Status::ok();
  if (it->is_number_integer()) {
    *first = it->get<int64_t>();
    return Status::ok();
  }
  if (it->is_array()) {
    for (const auto& e : *it) {
      if (!e.is_number_integer()) break;
      if (*first < 0) {
        *first = e.get<int64_t>();
      } else if (rest != nullptr) {
        rest->push_back(e.get<int64_t>());
      }
    }
    return Status::ok();
  }
  return invalid_argument("'{}': \"{}\" is not an integer or a list of integers", path, key);
}

// Rope base and scaling from rope_theta + rope_scaling (transformers < 5) or rope_parameters (>=
// 5).
Status read_rope(const nlohmann::json& j, const std::string& path, ModelConfig* c) {
  FS_ASSIGN_OR_RETURN(c->rope_theta, json_float(j, "rope_theta", path, 10000.0));
  const nlohmann::json* scaling = nullptr;
  for (const char* key : {"rope_parameters", "rope_scaling"}) {
    auto it = j.find(key);
    if (it != j.end() && it->is_object()) {
      scaling = &*it;
      break;
    }
  }
  if (scaling == nullptr) return Status::ok();
  FS_ASSIGN_OR_RETURN(c->rope_theta, json_float(*scaling, "rope_theta", path, c->rope_theta));
  std::string type = json_string(*scaling, "rope_type");
  if (type.empty()) type = json_string(*scaling, "type");
  if (type.empty() || type == "default") return Status::ok();
  RopeScaling& s = c->rope_scaling;
  FS_ASSIGN_OR_RETURN(s.factor, json_float(*scaling, "factor", path, 1.0));
  if (type == "linear") {
    s.type = RopeScalingType::kLinear;
  } else if (type == "llama3") {
    s.type = RopeScalingType::kLlama3;
    FS_ASSIGN_OR_RETURN(s.low_freq_factor, json_float(*scaling, "low_freq_factor", path, 1.0));
    FS_ASSIGN_OR_RETURN(s.high_freq_factor, json_float(*scaling, "high_freq_factor", path, 4.0));
    FS_ASSIGN_OR_RETURN(s.original_max_position_embeddings,
                        json_int(*scaling, "original_max_position_embeddings", path, std::nullopt));
  } else {
    return unimplemented("'{}': rope scaling type '{}' is not supported (none, linear, llama3)",
                         path, type);
  }
  return Status::ok();
}

Result<ModelConfig> llama_from_hf(const nlohmann::json& j, const std::string& path,
                                  const std::string& model_type) {
  ModelConfig c;
  c.arch = model_type == "qwen2" ? ModelArch::kQwen2 : ModelArch::kLlama;
  c.arch_name = model_type;
  c.rope_style = RopeStyle::kNeox;  // HF checkpoints keep the unpermuted "rotate halves" layout
  FS_ASSIGN_OR_RETURN(c.vocab_size, json_int(j, "vocab_size", path, std::nullopt));
  FS_ASSIGN_OR_RETURN(c.hidden_size, json_int(j, "hidden_size", path, std::nullopt));
  FS_ASSIGN_OR_RETURN(c.intermediate_size, json_int(j, "intermediate_size", path, std::nullopt));
  FS_ASSIGN_OR_RETURN(c.num_layers, json_int(j, "num_hidden_layers", path, std::nullopt));
  FS_ASSIGN_OR_RETURN(c.num_heads, json_int(j, "num_attention_heads", path, std::nullopt));
  FS_ASSIGN_OR_RETURN(c.num_kv_heads, json_int(j, "num_key_value_heads", path, c.num_heads));
  if (c.num_heads <= 0) return invalid_argument("'{}': num_attention_heads must be > 0", path);
  FS_ASSIGN_OR_RETURN(c.head_dim, json_int(j, "head_dim", path, c.hidden_size / c.num_heads));
  FS_ASSIGN_OR_RETURN(c.max_position_embeddings,
                      json_int(j, "max_position_embeddings", path, int64_t{2048}));
  FS_ASSIGN_OR_RETURN(c.norm_eps, json_float(j, "rms_norm_eps", path, 1e-6));
  FS_ASSIGN_OR_RETURN(c.tie_word_embeddings, json_bool(j, "tie_word_embeddings", path, false));
  FS_RETURN_IF_ERROR(read_rope(j, path, &c));
  const std::string act = json_string(j, "hidden_act");
  if (!act.empty() && act != "silu") {
    return unimplemented("'{}': hidden_act '{}' is not supported (silu)", path, act);
  }
  if (c.arch == ModelArch::kQwen2) {
    c.qkv_bias = true;
    FS_ASSIGN_OR_RETURN(bool use_sliding, json_bool(j, "use_sliding_window", path, false));
    if (use_sliding) {
      FS_ASSIGN_OR_RETURN(c.sliding_window, json_int(j, "sliding_window", path, 0));
    }
  } else {
    FS_ASSIGN_OR_RETURN(bool attention_bias, json_bool(j, "attention_bias", path, false));
    c.qkv_bias = c.attn_out_bias = attention_bias;
    FS_ASSIGN_OR_RETURN(bool mlp_bias, json_bool(j, "mlp_bias", path, false));
    if (mlp_bias) return unimplemented("'{}': llama mlp_bias=true is not supported", path);
    FS_ASSIGN_OR_RETURN(c.sliding_window, json_int(j, "sliding_window", path, 0));
  }
  return c;
}

Result<ModelConfig> opt_from_hf(const nlohmann::json& j, const std::string& path) {
  ModelConfig c;
  c.arch = ModelArch::kOpt;
  c.arch_name = "opt";
  c.norm = NormKind::kLayerNorm;
  c.norm_eps = 1e-5;  // HF OPT uses nn.LayerNorm's default
  c.activation = Activation::kRelu;
  c.position = PositionKind::kLearned;
  c.learned_pos_offset = 2;  // OPTLearnedPositionalEmbedding.offset
  c.qkv_bias = c.attn_out_bias = c.mlp_bias = true;
  FS_ASSIGN_OR_RETURN(c.tie_word_embeddings, json_bool(j, "tie_word_embeddings", path, true));
  FS_ASSIGN_OR_RETURN(c.vocab_size, json_int(j, "vocab_size", path, std::nullopt));
  FS_ASSIGN_OR_RETURN(c.hidden_size, json_int(j, "hidden_size", path, std::nullopt));
  FS_ASSIGN_OR_RETURN(c.intermediate_size, json_int(j, "ffn_dim", path, std::nullopt));
  FS_ASSIGN_OR_RETURN(c.num_layers, json_int(j, "num_hidden_layers", path, std::nullopt));
  FS_ASSIGN_OR_RETURN(c.num_heads, json_int(j, "num_attention_heads", path, std::nullopt));
  if (c.num_heads <= 0) return invalid_argument("'{}': num_attention_heads must be > 0", path);
  c.num_kv_heads = c.num_heads;
  c.head_dim = c.hidden_size / c.num_heads;
  FS_ASSIGN_OR_RETURN(c.max_position_embeddings,
                      json_int(j, "max_position_embeddings", path, int64_t{2048}));
  FS_ASSIGN_OR_RETURN(bool before, json_bool(j, "do_layer_norm_before", path, true));
  if (!before) {
    return unimplemented("'{}': OPT with do_layer_norm_before=false (opt-350m) is not supported",
                         path);
  }
  FS_ASSIGN_OR_RETURN(int64_t proj_dim, json_int(j, "word_embed_proj_dim", path, c.hidden_size));
  if (proj_dim != c.hidden_size) {
    return unimplemented("'{}': OPT word_embed_proj_dim {} != hidden_size {} is not supported",
                         path, proj_dim, c.hidden_size);
  }
  FS_ASSIGN_OR_RETURN(bool enable_bias, json_bool(j, "enable_bias", path, true));
  FS_ASSIGN_OR_RETURN(bool affine, json_bool(j, "layer_norm_elementwise_affine", path, true));
  FS_ASSIGN_OR_RETURN(bool remove_final, json_bool(j, "_remove_final_layer_norm", path, false));
  if (!enable_bias || !affine || remove_final) {
    return unimplemented(
        "'{}': OPT without biases, affine layer norms or the final layer norm is "
        "not supported",
        path);
  }
  const std::string act = json_string(j, "activation_function");
  if (!act.empty() && act != "relu") {
    return unimplemented("'{}': OPT activation_function '{}' is not supported (relu)", path, act);
  }
  return c;
}

}  // namespace

Result<ModelConfig> ModelConfig::from_gguf(const GgufFile& f) {
  const std::string& path = f.path();
  FS_ASSIGN_OR_RETURN(std::string arch, f.get_string("general.architecture"));
  ModelConfig c;
  c.arch_name = arch;
  if (arch == "llama") {
    c.arch = ModelArch::kLlama;
    c.rope_style = RopeStyle::kInterleaved;  // convert_hf_to_gguf permuted Q/K for it
  } else if (arch == "qwen2") {
    c.arch = ModelArch::kQwen2;
    c.rope_style = RopeStyle::kNeox;  // llama.cpp LLAMA_ROPE_TYPE_NEOX for qwen2
    c.qkv_bias = true;
  } else {
    return unimplemented("'{}': architecture '{}' is not supported (llama, qwen2)", path, arch);
  }
  const std::string p = arch + ".";
  FS_ASSIGN_OR_RETURN(c.hidden_size, f.get_int(p + "embedding_length"));
  FS_ASSIGN_OR_RETURN(c.intermediate_size, f.get_int(p + "feed_forward_length"));
  FS_ASSIGN_OR_RETURN(c.num_layers, f.get_int(p + "block_count"));
  FS_ASSIGN_OR_RETURN(c.num_heads, f.get_int(p + "attention.head_count"));
  if (c.num_heads <= 0)
    return invalid_argument("'{}': {}attention.head_count must be > 0", path, p);
  FS_ASSIGN_OR_RETURN(c.num_kv_heads, gguf_int_or(f, p + "attention.head_count_kv", c.num_heads));
  FS_ASSIGN_OR_RETURN(c.head_dim,
                      gguf_int_or(f, p + "attention.key_length", c.hidden_size / c.num_heads));
  FS_ASSIGN_OR_RETURN(c.max_position_embeddings, gguf_int_or(f, p + "context_length", 2048));
  FS_ASSIGN_OR_RETURN(c.norm_eps, gguf_float_or(f, p + "attention.layer_norm_rms_epsilon", 1e-5));
  FS_ASSIGN_OR_RETURN(c.rope_theta, gguf_float_or(f, p + "rope.freq_base", 10000.0));
  FS_ASSIGN_OR_RETURN(int64_t rope_dim, gguf_int_or(f, p + "rope.dimension_count", c.head_dim));
  if (rope_dim != c.head_dim) {
    return unimplemented("'{}': partial rope ({}rope.dimension_count {} != head_dim {})", path, p,
                         rope_dim, c.head_dim);
  }
  // Vocab: the explicit key, else the tokenizer's token list, else token_embd's rows.
  int64_t vocab = -1;
  if (f.find(p + "vocab_size") != nullptr) {
    FS_ASSIGN_OR_RETURN(vocab, f.get_int(p + "vocab_size"));
  } else if (const GgufValue* tokens = f.find("tokenizer.ggml.tokens");
             tokens != nullptr && tokens->as_array() != nullptr) {
    vocab = static_cast<int64_t>(tokens->as_array()->size());
  } else if (const GgufTensorInfo* emb = f.find_tensor("token_embd.weight"); emb != nullptr) {
    vocab = emb->shape[0];
  }
  c.vocab_size = vocab;
  // Rope scaling: llama3-style scaling is baked into a rope_freqs.weight tensor by llama.cpp's
  // converter (see ModelWeights::rope_freqs), not described here.
  std::string scaling_type = "none";
  if (const GgufValue* v = f.find(p + "rope.scaling.type"); v != nullptr && v->as_string()) {
    scaling_type = *v->as_string();
  }
  FS_ASSIGN_OR_RETURN(double factor, gguf_float_or(f, p + "rope.scaling.factor", 0.0));
  if (scaling_type == "linear" || (scaling_type == "none" && f.find(p + "rope.scale_linear"))) {
    if (scaling_type == "none") {
      FS_ASSIGN_OR_RETURN(factor, f.get_float(p + "rope.scale_linear"));
    }
    if (factor != 0.0 && factor != 1.0) {
      c.rope_scaling.type = RopeScalingType::kLinear;
      c.rope_scaling.factor = factor;
    }
  } else if (scaling_type != "none") {
    return unimplemented("'{}': rope scaling type '{}' is not supported (none, linear)", path,
                         scaling_type);
  }
  c.tie_word_embeddings = f.find_tensor("output.weight") == nullptr;
  FS_ASSIGN_OR_RETURN(c.bos_token_id, gguf_int_or(f, "tokenizer.ggml.bos_token_id", -1));
  FS_ASSIGN_OR_RETURN(c.eos_token_id, gguf_int_or(f, "tokenizer.ggml.eos_token_id", -1));
  return c;
}

Result<ModelConfig> ModelConfig::from_hf_config(const nlohmann::json& j, const std::string& path) {
  if (!j.is_object()) return data_loss("'{}': not a JSON object", path);
  const std::string model_type = json_string(j, "model_type");
  const bool llama_like = model_type == "llama" || model_type == "mistral" ||
                          model_type == "smollm" || model_type == "qwen2";
  if (!llama_like && model_type != "opt") {
    return unimplemented("'{}': model_type '{}' is not supported (llama, mistral, qwen2, opt)",
                         path, model_type);
  }
  Result<ModelConfig> c = llama_like ? llama_from_hf(j, path, model_type) : opt_from_hf(j, path);
  if (!c.is_ok()) return c;
  FS_RETURN_IF_ERROR(read_token_ids(j, "bos_token_id", path, &c->bos_token_id, nullptr));
  FS_RETURN_IF_ERROR(
      read_token_ids(j, "eos_token_id", path, &c->eos_token_id, &c->extra_eos_token_ids));
  return c;
}

Status ModelConfig::validate() const {
  const auto bad = [&](std::string_view what) {
    return invalid_argument("model config ({}): {}", arch_name, what);
  };
  if (vocab_size <= 0) return bad(fmt::format("vocab_size {} must be > 0", vocab_size));
  if (hidden_size <= 0) return bad(fmt::format("hidden_size {} must be > 0", hidden_size));
  if (intermediate_size <= 0) {
    return bad(fmt::format("intermediate_size {} must be > 0", intermediate_size));
  }
  if (num_layers <= 0) return bad(fmt::format("num_layers {} must be > 0", num_layers));
  if (num_heads <= 0 || num_kv_heads <= 0 || num_heads % num_kv_heads != 0) {
    return bad(fmt::format("num_heads {} must be a positive multiple of num_kv_heads {}", num_heads,
                           num_kv_heads));
  }
  if (head_dim <= 0) return bad(fmt::format("head_dim {} must be > 0", head_dim));
  if (position == PositionKind::kRope && head_dim % 2 != 0) {
    return bad(fmt::format("head_dim {} must be even for rope", head_dim));
  }
  if (max_position_embeddings <= 0) {
    return bad(fmt::format("max_position_embeddings {} must be > 0", max_position_embeddings));
  }
  if (!(norm_eps > 0.0) || !std::isfinite(norm_eps)) {
    return bad(fmt::format("norm eps {} must be > 0", norm_eps));
  }
  if (position == PositionKind::kRope && !(rope_theta > 0.0 && std::isfinite(rope_theta))) {
    return bad(fmt::format("rope_theta {} must be > 0", rope_theta));
  }
  // A tensor-parallel shard's config keeps the full hidden size with its part of the heads.
  if (arch == ModelArch::kOpt && hidden_size % (num_heads * head_dim) != 0) {
    return bad("OPT hidden_size must be num_heads * head_dim (or a multiple, in a TP shard)");
  }
  const RopeScaling& s = rope_scaling;
  if (s.type != RopeScalingType::kNone && !(s.factor > 0.0)) {
    return bad(fmt::format("rope scaling factor {} must be > 0", s.factor));
  }
  if (s.type == RopeScalingType::kLlama3 &&
      (!(s.low_freq_factor > 0.0) || !(s.high_freq_factor > s.low_freq_factor) ||
       s.original_max_position_embeddings <= 0)) {
    return bad(
        "llama3 rope scaling needs 0 < low_freq_factor < high_freq_factor and "
        "original_max_position_embeddings > 0");
  }
  if (bos_token_id >= vocab_size || eos_token_id >= vocab_size) {
    return bad(fmt::format("bos {} / eos {} token id outside the vocab ({})", bos_token_id,
                           eos_token_id, vocab_size));
  }
  return Status::ok();
}

std::string ModelConfig::to_string() const {
  std::string s;
  const auto line = [&s](std::string_view key, const auto& value) {
    s += fmt::format("{:<26}{}\n", key, value);
  };
  line("arch", fmt::format("{} ({})", model_arch_name(arch), arch_name));
  line("vocab_size", vocab_size);
  line("hidden_size", hidden_size);
  line("intermediate_size", intermediate_size);
  line("num_layers", num_layers);
  line("num_heads / kv / head_dim", fmt::format("{} / {} / {}", num_heads, num_kv_heads, head_dim));
  line("max_position_embeddings", max_position_embeddings);
  line("norm", fmt::format("{} eps={:g}", norm == NormKind::kRms ? "rms" : "layernorm", norm_eps));
  line("activation", activation == Activation::kSiluGated ? "silu-gated" : "relu");
  if (position == PositionKind::kLearned) {
    line("positions", fmt::format("learned (offset {})", learned_pos_offset));
  } else {
    line("rope", fmt::format("theta={:g} style={}", rope_theta,
                             rope_style == RopeStyle::kNeox ? "neox" : "interleaved"));
    switch (rope_scaling.type) {
      case RopeScalingType::kNone:
        break;
      case RopeScalingType::kLinear:
        line("rope_scaling", fmt::format("linear factor={}", rope_scaling.factor));
        break;
      case RopeScalingType::kLlama3:
        line("rope_scaling",
             fmt::format("llama3 factor={} low={} high={} original_max={}", rope_scaling.factor,
                         rope_scaling.low_freq_factor, rope_scaling.high_freq_factor,
                         rope_scaling.original_max_position_embeddings));
        break;
    }
  }
  line("biases", fmt::format("qkv={} out={} mlp={}", qkv_bias, attn_out_bias, mlp_bias));
  line("tie_word_embeddings", tie_word_embeddings);
  line("bos / eos", fmt::format("{} / {}", bos_token_id, eos_token_id));
  if (sliding_window > 0) line("sliding_window", fmt::format("{} (ignored)", sliding_window));
  return s;
}

std::vector<float> rope_inv_freq(const ModelConfig& c) {
  const int64_t d = c.head_dim;
  std::vector<float> inv(d / 2);
  for (int64_t i = 0; i < d / 2; ++i) {
    inv[i] = static_cast<float>(1.0 / std::pow(c.rope_theta, static_cast<double>(2 * i) / d));
  }
  const RopeScaling& s = c.rope_scaling;
  switch (s.type) {
    case RopeScalingType::kNone:
      break;
    case RopeScalingType::kLinear:
      for (float& f : inv) f = static_cast<float>(f / s.factor);
      break;
    case RopeScalingType::kLlama3: {
      const double old_ctx = static_cast<double>(s.original_max_position_embeddings);
      const double low_wavelen = old_ctx / s.low_freq_factor;
      const double high_wavelen = old_ctx / s.high_freq_factor;
      for (float& f : inv) {
        const double wavelen = 2.0 * std::numbers::pi / f;
        if (wavelen > low_wavelen) {
          f = static_cast<float>(f / s.factor);
        } else if (wavelen >= high_wavelen) {
          const double smooth =
              (old_ctx / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
          f = static_cast<float>((1.0 - smooth) * f / s.factor + smooth * f);
        }
      }
      break;
    }
  }
  return inv;
}

}  // namespace fs
