#include "model/model_weights.h"

#include <cmath>
#include <filesystem>
#include <memory>

#include "core/env.h"
#include "core/log.h"
#include "core/progress.h"
#include "core/timer.h"
#include "model/model_shapes.h"

namespace fs {

std::string shape_to_string(const std::vector<int64_t>& shape) {
  return fmt::format("[{}]", fmt::join(shape, ", "));
}

namespace {

// Where tensors come from: a name lookup that reports the file holding the tensor.
class TensorSource {
 public:
  virtual ~TensorSource() = default;
  // nullopt when absent; an error when present but unusable (dtype we do not compute with).
  // `expected` is the shape the model needs (the dummy source makes tensors of it).
  virtual Result<std::optional<WeightTensor>> find(const std::string& name,
                                                   const std::vector<int64_t>& expected,
                                                   std::string* file) const = 0;
  virtual const std::string& where() const = 0;  // the file or folder named in "missing" errors
};

class GgufSource : public TensorSource {
 public:
  explicit GgufSource(const GgufFile& f) : f_(f) {}
  Result<std::optional<WeightTensor>> find(const std::string& name, const std::vector<int64_t>&,
                                           std::string* file) const override {
    *file = f_.path();
    const GgufTensorInfo* t = f_.find_tensor(name);
    if (t == nullptr) return std::optional<WeightTensor>();
    return std::optional<WeightTensor>(
        WeightTensor{t->name, t->dtype, t->shape, t->data, t->nbytes});
  }
  const std::string& where() const override { return f_.path(); }

 private:
  const GgufFile& f_;
};

class HfSource : public TensorSource {
 public:
  explicit HfSource(const HfCheckpoint& c) : c_(c) {}
  Result<std::optional<WeightTensor>> find(const std::string& name, const std::vector<int64_t>&,
                                           std::string* file) const override {
    *file = c_.dir();
    const SafetensorsTensor* t = c_.find_tensor(name, file);
    // Some checkpoints were saved from the base model class, without the "model." prefix.
    if (t == nullptr && name.rfind("model.", 0) == 0) t = c_.find_tensor(name.substr(6), file);
    if (t == nullptr) return std::optional<WeightTensor>();
    if (!t->dtype) {
      return unimplemented("'{}': tensor '{}' has dtype {}; supported: F32, F16, BF16", *file, name,
                           t->dtype_name);
    }
    return std::optional<WeightTensor>(
        WeightTensor{t->name, *t->dtype, t->shape, t->data, t->nbytes});
  }
  const std::string& where() const override { return c_.dir(); }

 private:
  const HfCheckpoint& c_;
};

// Makes every tensor asked for, of the expected shape, with random contents it keeps alive.
class DummySource : public TensorSource {
 public:
  struct Storage {
    std::vector<std::unique_ptr<uint8_t[]>> buffers;
  };
  DummySource(std::string name, DType dtype, uint64_t seed)
      : name_(std::move(name)), dtype_(dtype), seed_(seed), storage_(std::make_shared<Storage>()) {}
  Result<std::optional<WeightTensor>> find(const std::string& name,
                                           const std::vector<int64_t>& expected,
                                           std::string* file) const override {
    *file = name_;
    if (expected.empty()) return std::optional<WeightTensor>();  // optional extras (rope_freqs)
    int64_t n = 1;
    for (int64_t d : expected) n *= d;
    const bool one_d = expected.size() == 1;
    const DType dtype = one_d ? DType::kF32 : dtype_;
    const size_t nbytes = static_cast<size_t>(dtype_row_bytes(dtype, n));
    std::unique_ptr<uint8_t[]> buf = std::make_unique_for_overwrite<uint8_t[]>(nbytes);
    if (one_d) {
      // Norm weights 1, biases (and norm biases) 0.
      const float value = name.ends_with(".bias") ? 0.0f : 1.0f;
      std::fill_n(reinterpret_cast<float*>(buf.get()), n, value);
    } else {
      fill_uniform(buf.get(), dtype, n,
                   static_cast<float>(1.0 / std::sqrt(static_cast<double>(expected.back()))),
                   seed_ ^ std::hash<std::string>()(name));
    }
    WeightTensor t{name, dtype, expected, buf.get(), nbytes};
    storage_->buffers.push_back(std::move(buf));
    return std::optional<WeightTensor>(std::move(t));
  }
  const std::string& where() const override { return name_; }
  std::shared_ptr<const void> storage() const { return storage_; }

 private:
  // Uniform in [-scale, scale) from splitmix64.
  static void fill_uniform(uint8_t* out, DType dtype, int64_t n, float scale, uint64_t state) {
    const auto next = [&state] {
      uint64_t z = (state += 0x9E3779B97F4A7C15ull);
      z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
      z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
      return z ^ (z >> 31);
    };
    const auto value = [&] {
      const float u = static_cast<float>(next() >> 40) * (1.0f / 16777216.0f);  // [0, 1)
      return (2.0f * u - 1.0f) * scale;
    };
    if (dtype == DType::kF32) {
      for (int64_t i = 0; i < n; ++i) reinterpret_cast<float*>(out)[i] = value();
    } else if (dtype == DType::kF16) {
      for (int64_t i = 0; i < n; ++i) reinterpret_cast<uint16_t*>(out)[i] = fp32_to_fp16(value());
    } else {
      for (int64_t i = 0; i < n; ++i) reinterpret_cast<uint16_t*>(out)[i] = fp32_to_bf16(value());
    }
  }

  std::string name_;
  DType dtype_;
  uint64_t seed_;
  std::shared_ptr<Storage> storage_;
};

enum class Scheme { kGguf = 0, kHfLlama = 1, kHfOpt = 2 };

enum LayerKey {
  kAttnNorm,
  kAttnNormB,
  kWq,
  kWk,
  kWv,
  kWo,
  kBq,
  kBk,
  kBv,
  kBo,
  kFfnNorm,
  kFfnNormB,
  kGate,
  kUp,
  kDown,
  kBUp,
  kBDown,
  kNumLayerKeys
};

// Per-layer tensor names (after the layer prefix) for each scheme; "" where the scheme has none.
constexpr const char* kLayerNames[kNumLayerKeys][3] = {
    {"attn_norm.weight", "input_layernorm.weight", "self_attn_layer_norm.weight"},
    {"attn_norm.bias", "input_layernorm.bias", "self_attn_layer_norm.bias"},
    {"attn_q.weight", "self_attn.q_proj.weight", "self_attn.q_proj.weight"},
    {"attn_k.weight", "self_attn.k_proj.weight", "self_attn.k_proj.weight"},
    {"attn_v.weight", "self_attn.v_proj.weight", "self_attn.v_proj.weight"},
    {"attn_output.weight", "self_attn.o_proj.weight", "self_attn.out_proj.weight"},
    {"attn_q.bias", "self_attn.q_proj.bias", "self_attn.q_proj.bias"},
    {"attn_k.bias", "self_attn.k_proj.bias", "self_attn.k_proj.bias"},
    {"attn_v.bias", "self_attn.v_proj.bias", "self_attn.v_proj.bias"},
    {"attn_output.bias", "self_attn.o_proj.bias", "self_attn.out_proj.bias"},
    {"ffn_norm.weight", "post_attention_layernorm.weight", "final_layer_norm.weight"},
    {"ffn_norm.bias", "post_attention_layernorm.bias", "final_layer_norm.bias"},
    {"ffn_gate.weight", "mlp.gate_proj.weight", ""},
    {"ffn_up.weight", "mlp.up_proj.weight", "fc1.weight"},
    {"ffn_down.weight", "mlp.down_proj.weight", "fc2.weight"},
    {"ffn_up.bias", "mlp.up_proj.bias", "fc1.bias"},
    {"ffn_down.bias", "mlp.down_proj.bias", "fc2.bias"},
};

struct GlobalNames {
  const char* tok_embd;
  const char* pos_embd;
  const char* output_norm;
  const char* output_norm_b;
  const char* output;
  const char* layer_prefix;  // followed by the layer index and "."
};
constexpr GlobalNames kGlobalNames[3] = {
    {"token_embd.weight", "", "output_norm.weight", "output_norm.bias", "output.weight", "blk."},
    {"model.embed_tokens.weight", "", "model.norm.weight", "model.norm.bias", "lm_head.weight",
     "model.layers."},
    {"model.decoder.embed_tokens.weight", "model.decoder.embed_positions.weight",
     "model.decoder.final_layer_norm.weight", "model.decoder.final_layer_norm.bias",
     "lm_head.weight", "model.decoder.layers."},
};

class Binder {
 public:
  explicit Binder(const TensorSource& src) : src_(src) {}
  uint64_t bytes() const { return bytes_; }

  Status require(const std::string& name, const std::vector<int64_t>& expected, WeightTensor* out) {
    std::string file;
    FS_ASSIGN_OR_RETURN(std::optional<WeightTensor> t, src_.find(name, expected, &file));
    if (!t) {
      return not_found("'{}': tensor '{}' is missing (expected shape {})", src_.where(), name,
                       shape_to_string(expected));
    }
    if (t->shape != expected) {
      return data_loss("'{}': tensor '{}' has shape {}, expected {}", file, name,
                       shape_to_string(t->shape), shape_to_string(expected));
    }
    if (expected.size() == 1 && dtype_is_quantized(t->dtype)) {
      return unimplemented("'{}': tensor '{}' is {}; 1-D tensors must be F32, F16 or BF16", file,
                           name, dtype_name(t->dtype));
    }
    // Kernels read floats and ggml blocks (fp16 scales) in place: the data must be element-aligned.
    const uintptr_t align = t->dtype == DType::kF32 ? 4 : 2;
    if (reinterpret_cast<uintptr_t>(t->data) % align != 0) {
      return unimplemented("'{}': tensor '{}' data is not {}-byte aligned in the file", file, name,
                           align);
    }
    bytes_ += t->nbytes;
    *out = std::move(*t);
    return Status::ok();
  }

  // Binds the tensor when `wanted`; leaves `out` empty otherwise.
  Status maybe(bool wanted, const std::string& name, const std::vector<int64_t>& expected,
               std::optional<WeightTensor>* out) {
    if (!wanted || name.empty()) return Status::ok();
    out->emplace();
    return require(name, expected, &**out);
  }

  bool has(const std::string& name) const {
    std::string file;
    auto t = src_.find(name, {}, &file);
    return !t.is_ok() || t->has_value();
  }

 private:
  const TensorSource& src_;
  uint64_t bytes_ = 0;
};

Status bind_weights(const ModelConfig& c, Scheme scheme, const TensorSource& src, ModelWeights* w,
                    uint64_t* bytes) {
  Binder b(src);
  const int s = static_cast<int>(scheme);
  const GlobalNames& g = kGlobalNames[s];
  const int64_t h = c.hidden_size;
  const int64_t q_dim = c.num_heads * c.head_dim;
  const int64_t kv_dim = c.num_kv_heads * c.head_dim;
  const int64_t f = c.intermediate_size;
  const bool layer_norm = c.norm == NormKind::kLayerNorm;

  FS_RETURN_IF_ERROR(b.require(g.tok_embd, {c.vocab_size, h}, &w->tok_embd));
  FS_RETURN_IF_ERROR(b.maybe(c.position == PositionKind::kLearned, g.pos_embd,
                             {c.max_position_embeddings + c.learned_pos_offset, h}, &w->pos_embd));
  FS_RETURN_IF_ERROR(b.require(g.output_norm, {h}, &w->output_norm));
  FS_RETURN_IF_ERROR(b.maybe(layer_norm, g.output_norm_b, {h}, &w->output_norm_b));
  if (c.tie_word_embeddings) {
    w->output = w->tok_embd;
  } else {
    FS_RETURN_IF_ERROR(b.require(g.output, {c.vocab_size, h}, &w->output));
  }
  if (scheme == Scheme::kGguf) {
    FS_RETURN_IF_ERROR(
        b.maybe(b.has("rope_freqs.weight"), "rope_freqs.weight", {c.head_dim / 2}, &w->rope_freqs));
    if (w->rope_freqs && w->rope_freqs->dtype != DType::kF32) {
      return unimplemented("'{}': rope_freqs.weight must be F32", src.where());
    }
  }

  w->layers.resize(static_cast<size_t>(c.num_layers));
  for (int64_t i = 0; i < c.num_layers; ++i) {
    LayerWeights& l = w->layers[static_cast<size_t>(i)];
    const std::string prefix = fmt::format("{}{}.", g.layer_prefix, i);
    const auto name = [&](LayerKey k) {
      const char* n = kLayerNames[k][s];
      return n[0] == '\0' ? std::string() : prefix + n;
    };
    FS_RETURN_IF_ERROR(b.require(name(kAttnNorm), {h}, &l.attn_norm));
    FS_RETURN_IF_ERROR(b.maybe(layer_norm, name(kAttnNormB), {h}, &l.attn_norm_b));
    FS_RETURN_IF_ERROR(b.require(name(kWq), {q_dim, h}, &l.wq));
    FS_RETURN_IF_ERROR(b.require(name(kWk), {kv_dim, h}, &l.wk));
    FS_RETURN_IF_ERROR(b.require(name(kWv), {kv_dim, h}, &l.wv));
    FS_RETURN_IF_ERROR(b.require(name(kWo), {h, q_dim}, &l.wo));
    FS_RETURN_IF_ERROR(b.maybe(c.qkv_bias, name(kBq), {q_dim}, &l.bq));
    FS_RETURN_IF_ERROR(b.maybe(c.qkv_bias, name(kBk), {kv_dim}, &l.bk));
    FS_RETURN_IF_ERROR(b.maybe(c.qkv_bias, name(kBv), {kv_dim}, &l.bv));
    FS_RETURN_IF_ERROR(b.maybe(c.attn_out_bias, name(kBo), {h}, &l.bo));
    FS_RETURN_IF_ERROR(b.require(name(kFfnNorm), {h}, &l.ffn_norm));
    FS_RETURN_IF_ERROR(b.maybe(layer_norm, name(kFfnNormB), {h}, &l.ffn_norm_b));
    FS_RETURN_IF_ERROR(
        b.maybe(c.activation == Activation::kSiluGated, name(kGate), {f, h}, &l.w_gate));
    FS_RETURN_IF_ERROR(b.require(name(kUp), {f, h}, &l.w_up));
    FS_RETURN_IF_ERROR(b.require(name(kDown), {h, f}, &l.w_down));
    FS_RETURN_IF_ERROR(b.maybe(c.mlp_bias, name(kBUp), {f}, &l.b_up));
    FS_RETURN_IF_ERROR(b.maybe(c.mlp_bias, name(kBDown), {h}, &l.b_down));
  }
  *bytes = b.bytes();
  return Status::ok();
}

Status annotate(const Status& s, const std::string& path) {
  return Status(s.code(), fmt::format("{} (while loading '{}')", s.message(), path));
}

}  // namespace

const char* model_format_name(ModelFormat format) {
  switch (format) {
    case ModelFormat::kGguf:
      return "gguf";
    case ModelFormat::kSafetensors:
      return "safetensors";
    case ModelFormat::kDummy:
      return "dummy";
  }
  return "?";
}

Result<LoadedModel> make_dummy_model(const ModelConfig& config, const std::string& name,
                                     DType dtype, uint64_t seed, int64_t max_bytes) {
  if (dtype != DType::kF32 && dtype != DType::kF16 && dtype != DType::kBF16) {
    return invalid_argument("dummy weights: dtype {} is not supported (F32, F16, BF16)",
                            dtype_name(dtype));
  }
  if (Status s = config.validate(); !s.is_ok()) return annotate(s, name);
  const Stopwatch timer;
  // An upper bound (1-D tensors counted at the matrix dtype's size or more).
  const double bytes = static_cast<double>(num_parameters(config)) * (dtype == DType::kF32 ? 4 : 2);
  if (bytes > static_cast<double>(max_bytes)) {
    return make_error(
        StatusCode::kResourceExhausted,
        "dummy model '{}': {:.1f} GiB of {} weights is more than the CPU limit of {:.1f} GiB; "
        "run shapes this large with --device cuda",
        name, bytes / 1073741824.0, dtype_name(dtype), max_bytes / 1073741824.0);
  }
  LoadedModel m;
  m.path = name;
  m.format = ModelFormat::kDummy;
  m.config = config;
  const DummySource source(name, dtype, seed);
  const Scheme scheme = config.arch == ModelArch::kOpt ? Scheme::kHfOpt : Scheme::kHfLlama;
  FS_RETURN_IF_ERROR(bind_weights(m.config, scheme, source, &m.weights, &m.weight_bytes));
  m.dummy_data = source.storage();
  log_info("dummy model '{}': {} {} layers, {:.1f} MiB of random {} weights in {:.3f} s", name,
           model_arch_name(config.arch), config.num_layers, m.weight_bytes / 1048576.0,
           dtype_name(dtype), timer.elapsed_s());
  return m;
}

Result<LoadedModel> load_model(const std::string& path) {
  const Stopwatch timer;
  // Model files at least this large are read into memory now, with a progress line
  // (FASTSERVE_READ_IN_MIN_MB, default 1 GiB; 0: every model).
  const uint64_t read_in_min =
      static_cast<uint64_t>(int_from_env_or("FASTSERVE_READ_IN_MIN_MB", 0, int64_t{1} << 30,
                                            Progress::kDefaultMinTotal >> 20))
      << 20;
  std::error_code ec;
  if (!std::filesystem::exists(path, ec))
    return not_found("model '{}': no such file or folder", path);
  LoadedModel m;
  m.path = path;
  uint64_t file_bytes = 0;
  if (std::filesystem::is_directory(path, ec)) {
    m.format = ModelFormat::kSafetensors;
    FS_ASSIGN_OR_RETURN(m.hf, HfCheckpoint::open(path));
    FS_ASSIGN_OR_RETURN(m.config, ModelConfig::from_hf_config(m.hf->config(), m.hf->config_path()));
    if (Status s = m.config.validate(); !s.is_ok()) return annotate(s, m.hf->config_path());
    const Scheme scheme = m.config.arch == ModelArch::kOpt ? Scheme::kHfOpt : Scheme::kHfLlama;
    FS_RETURN_IF_ERROR(
        bind_weights(m.config, scheme, HfSource(*m.hf), &m.weights, &m.weight_bytes));
    file_bytes = m.hf->total_bytes();
    m.hf->advise_willneed();
    if (file_bytes >= read_in_min) {
      Progress progress(fmt::format("reading '{}' into memory", path), file_bytes,
                        read_in_min);
      m.hf->read_in([&](uint64_t done) { progress.update(done); });
      progress.update(file_bytes);
    }
  } else {
    if (path.size() > 12 && path.ends_with(".safetensors")) {
      return invalid_argument(
          "model '{}': pass the Hugging Face folder holding it (with config.json)", path);
    }
    m.format = ModelFormat::kGguf;
    FS_ASSIGN_OR_RETURN(m.gguf, GgufFile::open(path));
    FS_ASSIGN_OR_RETURN(m.config, ModelConfig::from_gguf(*m.gguf));
    if (Status s = m.config.validate(); !s.is_ok()) return annotate(s, path);
    FS_RETURN_IF_ERROR(
        bind_weights(m.config, Scheme::kGguf, GgufSource(*m.gguf), &m.weights, &m.weight_bytes));
    file_bytes = m.gguf->file_bytes();
    m.gguf->advise_willneed();
    if (file_bytes >= read_in_min) {
      Progress progress(fmt::format("reading '{}' into memory", path), file_bytes,
                        read_in_min);
      m.gguf->read_in([&](uint64_t done) { progress.update(done); });
      progress.update(file_bytes);
    }
  }
  log_info("loaded model '{}': {} {}, {} layers, {:.1f} MiB in {:.3f} s", path,
           model_arch_name(m.config.arch), model_format_name(m.format), m.config.num_layers,
           static_cast<double>(file_bytes) / (1 << 20), timer.elapsed_s());
  return m;
}

}  // namespace fs
