#include "backend/cuda/cuda_model.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <optional>
#include <string>

#include "backend/cpu/matmul.h"
#include "backend/cuda/cuda_status.h"
#include "core/check.h"
#include "core/dtype.h"
#include "core/env.h"
#include "core/log.h"
#include "core/progress.h"
#include "core/timer.h"

namespace fs::cuda {
namespace {

// Sequences with at most this many new tokens run their tokens through the decode (split-K) kernel;
// longer ones through the prefill tiles.
constexpr int64_t kMaxDecodeNew = 4;
constexpr size_t kCublasWorkspaceBytes = 32u << 20;

const WeightTensor* get(const std::optional<WeightTensor>& w) { return w ? &*w : nullptr; }

cpu::WeightView view_of(const WeightTensor& w) {
  return cpu::WeightView{w.dtype, w.rows(), w.cols(), w.data};
}

Status check_launch(const char* what) {
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return cuda_status(err, what);
  return Status::ok();
}

size_t round_up(size_t n, size_t m) { return (n + m - 1) / m * m; }

// The context bucket of a decode batch whose longest context is max_ctx: a power of two >= 256.
// The split-K layout is computed from it (not from max_ctx), so it changes only when a context
// crosses a power of two and a decode graph keyed by it stays valid in between.
int64_t context_bucket(int64_t max_ctx) {
  int64_t b = 256;
  while (b < max_ctx) b *= 2;
  return b;
}

}  // namespace

// ---- DeviceBuffer ----

DeviceBuffer::~DeviceBuffer() {
  if (ptr_) cudaFree(ptr_);
}

Status DeviceBuffer::ensure(size_t bytes, const char* what, bool doubling) {
  if (bytes <= bytes_) return Status::ok();
  const size_t grown = doubling && bytes_ > 0 ? std::max(bytes, 2 * bytes_) : bytes;
  if (ptr_) cudaFree(ptr_);  // synchronizes the device: only when a batch is larger than before
  ptr_ = nullptr;
  bytes_ = 0;
  const size_t want = round_up(std::max<size_t>(grown, 256), 256);
  if (const cudaError_t err = cudaMalloc(&ptr_, want); err != cudaSuccess) {
    ptr_ = nullptr;
    return make_error(StatusCode::kResourceExhausted, "cuda: cannot allocate {} bytes for {}: {}",
                      want, what, cudaGetErrorString(err));
  }
  bytes_ = want;
  return Status::ok();
}

// ---- construction ----

CudaModel::CudaModel(const ModelConfig& config) : config_(config) {}

CudaModel::~CudaModel() {
  if (stream_) cudaStreamSynchronize(stream_);
  for (DecodeGraph& g : graphs_) cudaGraphExecDestroy(g.exec);
  for (void* p : allocations_) cudaFree(p);
  if (meta_pinned_) cudaFreeHost(meta_pinned_);
  if (logits_pinned_) cudaFreeHost(logits_pinned_);
  if (tokens_pinned_) cudaFreeHost(tokens_pinned_);
  if (picks_pinned_) cudaFreeHost(picks_pinned_);
  if (meta_copied_) cudaEventDestroy(meta_copied_);
  for (cudaEvent_t e : event_pool_) cudaEventDestroy(e);
  if (cublas_) cublasDestroy(cublas_);
  if (stream_) cudaStreamDestroy(stream_);
}

Status CudaModel::init() {
  FS_RETURN_IF_ERROR(config_.validate());
  int device = 0;
  FS_CUDA_OK(cudaGetDevice(&device));
  FS_CUDA_OK(cudaDeviceGetAttribute(&num_sms_, cudaDevAttrMultiProcessorCount, device));
  FS_CUDA_OK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  FS_CUDA_OK(cudaEventCreateWithFlags(&meta_copied_, cudaEventDisableTiming));
  FS_CUBLAS_OK(cublasCreate(&cublas_));
  FS_CUBLAS_OK(cublasSetStream(cublas_, stream_));
  FS_RETURN_IF_ERROR(cublas_workspace_.ensure(kCublasWorkspaceBytes, "the cuBLAS workspace"));
  FS_CUBLAS_OK(cublasSetWorkspace(cublas_, cublas_workspace_.as<void>(), kCublasWorkspaceBytes));
  FS_ASSIGN_OR_RETURN(const std::optional<int64_t> graphs,
                      int_from_env("FASTSERVE_MAX_DECODE_GRAPHS", 1, 100000));
  if (graphs) max_decode_graphs_ = *graphs;
  return Status::ok();
}

Result<void*> CudaModel::alloc(size_t bytes, const char* what) {
  void* p = nullptr;
  if (const cudaError_t err = cudaMalloc(&p, std::max<size_t>(bytes, 16)); err != cudaSuccess) {
    return make_error(StatusCode::kResourceExhausted, "cuda: cannot allocate {} bytes for {}: {}",
                      bytes, what, cudaGetErrorString(err));
  }
  allocations_.push_back(p);
  return p;
}

Status CudaModel::alloc_layers() {
  const ModelConfig& c = config_;
  const int64_t hidden = c.hidden_size, ffn = c.intermediate_size;
  const int64_t qkv_rows = (c.num_heads + 2 * c.num_kv_heads) * c.head_dim;
  const int64_t qd = c.num_heads * c.head_dim;
  const int64_t up_rows = c.activation == Activation::kSiluGated ? 2 * ffn : ffn;
  auto mat = [&](int64_t rows, int64_t cols, const char* what) -> Result<bf16*> {
    FS_ASSIGN_OR_RETURN(void* p, alloc(sizeof(bf16) * rows * cols, what));
    weight_bytes_ += static_cast<int64_t>(sizeof(bf16)) * rows * cols;
    return static_cast<bf16*>(p);
  };
  layers_.resize(c.num_layers);
  for (Layer& l : layers_) {
    FS_ASSIGN_OR_RETURN(l.w_qkv, mat(qkv_rows, hidden, "Wqkv"));
    FS_ASSIGN_OR_RETURN(l.wo, mat(hidden, qd, "Wo"));
    FS_ASSIGN_OR_RETURN(l.w_up, mat(up_rows, hidden, "W_gate_up"));
    FS_ASSIGN_OR_RETURN(l.w_down, mat(hidden, ffn, "W_down"));
  }
  const int64_t embd_rows = c.vocab_size;
  FS_ASSIGN_OR_RETURN(tok_embd_, mat(embd_rows, hidden, "token embedding"));
  if (c.position == PositionKind::kLearned) {
    FS_ASSIGN_OR_RETURN(pos_embd_,
                        mat(c.max_position_embeddings + c.learned_pos_offset, hidden, "positions"));
  }
  head_rows_ = c.vocab_size;
  if (c.tie_word_embeddings) {
    output_ = tok_embd_;
  } else {
    FS_ASSIGN_OR_RETURN(output_, mat(c.vocab_size, hidden, "LM head"));
  }
  return Status::ok();
}

Status CudaModel::upload_matrix(const WeightTensor& w, bf16* dst) {
  const cpu::WeightView v = view_of(w);
  const int64_t n = v.rows * v.cols;
  if (w.dtype == DType::kBF16) {
    FS_CUDA_OK(cudaMemcpy(dst, w.data, sizeof(bf16) * n, cudaMemcpyHostToDevice));
    return Status::ok();
  }
  // Dequantize (or widen) on the host in row chunks of ~4M values, round to bf16, copy.
  const int64_t chunk_rows = std::max<int64_t>(1, (int64_t{4} << 20) / v.cols);
  std::vector<float> f32(std::min(v.rows, chunk_rows) * v.cols);
  std::vector<uint16_t> b16(f32.size());
  for (int64_t r = 0; r < v.rows; r += chunk_rows) {
    const int64_t nr = std::min(chunk_rows, v.rows - r);
    cpu::dequantize_rows(v, r, nr, f32.data());
    for (int64_t i = 0; i < nr * v.cols; ++i) b16[i] = fp32_to_bf16(f32[i]);
    FS_CUDA_OK(cudaMemcpy(dst + r * v.cols, b16.data(), sizeof(uint16_t) * nr * v.cols,
                          cudaMemcpyHostToDevice));
  }
  return Status::ok();
}

Result<float*> CudaModel::upload_small(const WeightTensor* w, const char* what) {
  if (w == nullptr) return static_cast<float*>(nullptr);
  const cpu::WeightView v = view_of(*w);
  std::vector<float> f32(v.rows * v.cols);
  cpu::dequantize_rows(v, 0, v.rows, f32.data());
  FS_ASSIGN_OR_RETURN(void* p, alloc(sizeof(float) * f32.size(), what));
  FS_CUDA_OK(cudaMemcpy(p, f32.data(), sizeof(float) * f32.size(), cudaMemcpyHostToDevice));
  return static_cast<float*>(p);
}

Result<float*> CudaModel::small_constant(int64_t n, float value, const char* what) {
  FS_ASSIGN_OR_RETURN(void* p, alloc(sizeof(float) * n, what));
  launch_fill_f32(static_cast<float*>(p), n, value, stream_);
  FS_RETURN_IF_ERROR(check_launch("fill"));
  return static_cast<float*>(p);
}

Status CudaModel::set_rope(const std::vector<float>& inv_freq) {
  FS_ASSIGN_OR_RETURN(void* p, alloc(sizeof(float) * inv_freq.size(), "rope frequencies"));
  FS_CUDA_OK(
      cudaMemcpy(p, inv_freq.data(), sizeof(float) * inv_freq.size(), cudaMemcpyHostToDevice));
  inv_freq_ = static_cast<float*>(p);
  return Status::ok();
}

Result<std::unique_ptr<CudaModel>> CudaModel::upload(const LoadedModel& model) {
  std::unique_ptr<CudaModel> m(new CudaModel(model.config));
  FS_RETURN_IF_ERROR(m->init());
  FS_RETURN_IF_ERROR(m->alloc_layers());
  const ModelConfig& c = m->config_;
  const ModelWeights& w = model.weights;
  const int64_t hidden = c.hidden_size, hd = c.head_dim;
  int device = 0;
  cudaGetDevice(&device);
  // A line per tenth of the bf16 bytes for large models (the layers dominate).
  Progress progress(fmt::format("uploading the weights to cuda:{}", device), m->weight_bytes_);
  for (int64_t i = 0; i < c.num_layers; ++i) {
    progress.update(static_cast<uint64_t>(m->weight_bytes_ * i / std::max<int64_t>(1, c.num_layers)));
    const LayerWeights& lw = w.layers[i];
    Layer& l = m->layers_[i];
    FS_RETURN_IF_ERROR(m->upload_matrix(lw.wq, l.w_qkv));
    FS_RETURN_IF_ERROR(m->upload_matrix(lw.wk, l.w_qkv + c.num_heads * hd * hidden));
    FS_RETURN_IF_ERROR(
        m->upload_matrix(lw.wv, l.w_qkv + (c.num_heads + c.num_kv_heads) * hd * hidden));
    FS_RETURN_IF_ERROR(m->upload_matrix(lw.wo, l.wo));
    if (c.activation == Activation::kSiluGated) {
      FS_RETURN_IF_ERROR(m->upload_matrix(*lw.w_gate, l.w_up));
      FS_RETURN_IF_ERROR(m->upload_matrix(lw.w_up, l.w_up + c.intermediate_size * hidden));
    } else {
      FS_RETURN_IF_ERROR(m->upload_matrix(lw.w_up, l.w_up));
    }
    FS_RETURN_IF_ERROR(m->upload_matrix(lw.w_down, l.w_down));
    FS_ASSIGN_OR_RETURN(l.attn_norm, m->upload_small(&lw.attn_norm, "attn_norm"));
    FS_ASSIGN_OR_RETURN(l.attn_norm_b, m->upload_small(get(lw.attn_norm_b), "attn_norm bias"));
    FS_ASSIGN_OR_RETURN(l.ffn_norm, m->upload_small(&lw.ffn_norm, "ffn_norm"));
    FS_ASSIGN_OR_RETURN(l.ffn_norm_b, m->upload_small(get(lw.ffn_norm_b), "ffn_norm bias"));
    FS_ASSIGN_OR_RETURN(l.bq, m->upload_small(get(lw.bq), "q bias"));
    FS_ASSIGN_OR_RETURN(l.bk, m->upload_small(get(lw.bk), "k bias"));
    FS_ASSIGN_OR_RETURN(l.bv, m->upload_small(get(lw.bv), "v bias"));
    FS_ASSIGN_OR_RETURN(l.bo, m->upload_small(get(lw.bo), "o bias"));
    FS_ASSIGN_OR_RETURN(l.b_up, m->upload_small(get(lw.b_up), "up bias"));
    FS_ASSIGN_OR_RETURN(l.b_down, m->upload_small(get(lw.b_down), "down bias"));
  }
  FS_RETURN_IF_ERROR(m->upload_matrix(w.tok_embd, m->tok_embd_));
  if (m->pos_embd_) FS_RETURN_IF_ERROR(m->upload_matrix(*w.pos_embd, m->pos_embd_));
  if (m->output_ != m->tok_embd_) FS_RETURN_IF_ERROR(m->upload_matrix(w.output, m->output_));
  FS_ASSIGN_OR_RETURN(m->output_norm_, m->upload_small(&w.output_norm, "output_norm"));
  FS_ASSIGN_OR_RETURN(m->output_norm_b_, m->upload_small(get(w.output_norm_b), "output_norm bias"));
  progress.update(static_cast<uint64_t>(m->weight_bytes_));
  if (c.position == PositionKind::kRope) {
    std::vector<float> inv;
    if (const WeightTensor* freqs = get(w.rope_freqs)) {
      // GGUF llama3: the converter baked the scaling into per-pair divisors (llama.cpp rope_freqs).
      ModelConfig unscaled = c;
      unscaled.rope_scaling = RopeScaling{};
      inv = rope_inv_freq(unscaled);
      std::vector<float> divisors(inv.size());
      FS_CHECK(freqs->rows() * freqs->cols() == static_cast<int64_t>(inv.size()),
               "rope_freqs has the wrong length");
      cpu::dequantize_rows(view_of(*freqs), 0, freqs->rows(), divisors.data());
      for (size_t i = 0; i < inv.size(); ++i) inv[i] /= divisors[i];
    } else {
      inv = rope_inv_freq(c);
    }
    FS_RETURN_IF_ERROR(m->set_rope(inv));
  }
  FS_CUDA_OK(cudaDeviceSynchronize());
  FS_RETURN_IF_ERROR(m->calibrate_gemv());
  return m;
}

Result<std::unique_ptr<CudaModel>> CudaModel::dummy(const ModelConfig& config, uint64_t seed,
                                                    const DummyPlace& place) {
  std::unique_ptr<CudaModel> m(new CudaModel(config));
  FS_RETURN_IF_ERROR(m->init());
  FS_RETURN_IF_ERROR(m->alloc_layers());
  const ModelConfig& c = m->config_;
  // Local counts (this shard's) and the whole model's.
  const int64_t hidden = c.hidden_size, ffn = c.intermediate_size;
  const int64_t qd = c.num_heads * c.head_dim, kvd = c.num_kv_heads * c.head_dim;
  const int64_t tp = place.tp, r = place.tp_rank;
  const int64_t total_layers = place.total_layers > 0 ? place.total_layers : c.num_layers;
  // Tensor seeds: 4 per layer of the whole model, then the embeddings and the LM head.
  const uint64_t base = seed * 1000003u;
  auto layer_seed = [&](int64_t layer, int k) {
    return base + static_cast<uint64_t>(4 * (place.first_layer + layer) + k);
  };
  const uint64_t embd_seed = base + static_cast<uint64_t>(4 * total_layers + 1);
  // rows [0, rows) of `w` are rows [row0, row0 + rows) of a whole tensor with full_cols columns,
  // of which the shard keeps columns [col0, col0 + cols).
  auto fill = [&](bf16* w, int64_t rows, int64_t cols, uint64_t s, float scale, int64_t row0 = 0,
                  int64_t col0 = 0, int64_t full_cols = 0) {
    launch_fill_uniform_part(w, rows, cols, s, scale, row0, col0, full_cols ? full_cols : cols,
                             m->stream_);
  };
  auto fan_in = [](int64_t in) { return 1.0f / std::sqrt(static_cast<float>(in)); };
  const bool ln = c.norm == NormKind::kLayerNorm;
  for (size_t i = 0; i < m->layers_.size(); ++i) {
    Layer& l = m->layers_[i];
    const int64_t li = static_cast<int64_t>(i);
    // Column-parallel: this rank's Q, K and V heads (gate and up rows) of the whole [Q; K; V]
    // ([gate; up]); row-parallel: its input columns of O and down.
    fill(l.w_qkv, qd, hidden, layer_seed(li, 1), fan_in(hidden), r * qd);
    fill(l.w_qkv + qd * hidden, kvd, hidden, layer_seed(li, 1), fan_in(hidden),
         tp * qd + r * kvd);
    fill(l.w_qkv + (qd + kvd) * hidden, kvd, hidden, layer_seed(li, 1), fan_in(hidden),
         tp * (qd + kvd) + r * kvd);
    fill(l.wo, hidden, qd, layer_seed(li, 2), fan_in(tp * qd), 0, r * qd, tp * qd);
    fill(l.w_up, ffn, hidden, layer_seed(li, 3), fan_in(hidden), r * ffn);
    if (c.activation == Activation::kSiluGated) {
      fill(l.w_up + ffn * hidden, ffn, hidden, layer_seed(li, 3), fan_in(hidden),
           tp * ffn + r * ffn);
    }
    fill(l.w_down, hidden, ffn, layer_seed(li, 4), fan_in(tp * ffn), 0, r * ffn, tp * ffn);
    FS_ASSIGN_OR_RETURN(l.attn_norm, m->small_constant(hidden, 1.0f, "attn_norm"));
    FS_ASSIGN_OR_RETURN(l.ffn_norm, m->small_constant(hidden, 1.0f, "ffn_norm"));
    if (ln) {
      FS_ASSIGN_OR_RETURN(l.attn_norm_b, m->small_constant(hidden, 0.0f, "attn_norm bias"));
      FS_ASSIGN_OR_RETURN(l.ffn_norm_b, m->small_constant(hidden, 0.0f, "ffn_norm bias"));
    }
    if (c.qkv_bias) {
      FS_ASSIGN_OR_RETURN(l.bq, m->small_constant(qd, 0.0f, "q bias"));
      FS_ASSIGN_OR_RETURN(l.bk, m->small_constant(c.num_kv_heads * c.head_dim, 0.0f, "k bias"));
      FS_ASSIGN_OR_RETURN(l.bv, m->small_constant(c.num_kv_heads * c.head_dim, 0.0f, "v bias"));
    }
    if (c.attn_out_bias) {
      FS_ASSIGN_OR_RETURN(l.bo, m->small_constant(hidden, 0.0f, "o bias"));
    }
    if (c.mlp_bias) {
      FS_ASSIGN_OR_RETURN(l.b_up, m->small_constant(ffn, 0.0f, "up bias"));
      FS_ASSIGN_OR_RETURN(l.b_down, m->small_constant(hidden, 0.0f, "down bias"));
    }
  }
  fill(m->tok_embd_, c.vocab_size, hidden, embd_seed, 1.0f);
  if (m->pos_embd_) {
    fill(m->pos_embd_, c.max_position_embeddings + c.learned_pos_offset, hidden, embd_seed + 1,
         0.1f);
  }
  if (m->output_ != m->tok_embd_) {
    fill(m->output_, c.vocab_size, hidden, embd_seed + 2, fan_in(hidden));
  }
  FS_ASSIGN_OR_RETURN(m->output_norm_, m->small_constant(hidden, 1.0f, "output_norm"));
  if (ln) {
    FS_ASSIGN_OR_RETURN(m->output_norm_b_, m->small_constant(hidden, 0.0f, "output_norm bias"));
  }
  if (c.position == PositionKind::kRope) FS_RETURN_IF_ERROR(m->set_rope(rope_inv_freq(c)));
  FS_RETURN_IF_ERROR(check_launch("dummy weight init"));
  FS_CUDA_OK(cudaStreamSynchronize(m->stream_));
  FS_RETURN_IF_ERROR(m->calibrate_gemv());
  return m;
}

KvLayout CudaModel::kv_layout(int64_t block_size) const {
  return KvLayout{.num_layers = static_cast<int32_t>(config_.num_layers),
                  .block_size = static_cast<int32_t>(block_size),
                  .num_kv_heads = static_cast<int32_t>(config_.num_kv_heads),
                  .head_dim = static_cast<int32_t>(config_.head_dim)};
}

int64_t CudaModel::workspace_bytes(int64_t num_tokens) const {
  const ModelConfig& c = config_;
  const int64_t t = num_tokens;
  const int64_t qd = c.num_heads * c.head_dim, kvd = c.num_kv_heads * c.head_dim;
  const int64_t up =
      c.activation == Activation::kSiluGated ? 2 * c.intermediate_size : c.intermediate_size;
  return t * (4 * c.hidden_size + 2 * c.hidden_size + 4 * (qd + 2 * kvd) + 2 * qd + 2 * qd +
              2 * up + 2 * c.intermediate_size + 4 * c.vocab_size) +
         static_cast<int64_t>(kCublasWorkspaceBytes);
}

Status CudaModel::reserve(int64_t num_tokens) {
  const ModelConfig& c = config_;
  const int64_t t = std::max<int64_t>(num_tokens, 1);
  const int64_t qd = c.num_heads * c.head_dim, kvd = c.num_kv_heads * c.head_dim;
  const int64_t up =
      c.activation == Activation::kSiluGated ? 2 * c.intermediate_size : c.intermediate_size;
  FS_RETURN_IF_ERROR(x_.ensure(sizeof(float) * t * c.hidden_size, "the residual stream"));
  FS_RETURN_IF_ERROR(h_.ensure(sizeof(bf16) * t * c.hidden_size, "normed activations"));
  FS_RETURN_IF_ERROR(qkv_.ensure(sizeof(float) * t * (qd + 2 * kvd), "q/k/v"));
  FS_RETURN_IF_ERROR(q_.ensure(sizeof(bf16) * t * qd, "rotated q"));
  FS_RETURN_IF_ERROR(attn_.ensure(sizeof(bf16) * t * qd, "attention output"));
  FS_RETURN_IF_ERROR(up_.ensure(sizeof(bf16) * t * up, "MLP up projection"));
  FS_RETURN_IF_ERROR(act_.ensure(sizeof(bf16) * t * c.intermediate_size, "MLP activation"));
  return Status::ok();
}

// ---- forward ----

Status CudaModel::check_batch(std::span<const ForwardSeq> seqs, const KvPoolView& kv) const {
  const ModelConfig& c = config_;
  if (seqs.empty()) return invalid_argument("the batch is empty");
  if (kv.layout.num_layers != c.num_layers || kv.layout.num_kv_heads != c.num_kv_heads ||
      kv.layout.head_dim != c.head_dim || kv.layout.block_size <= 0) {
    return invalid_argument("the KV pool's layout does not fit the model");
  }
  for (size_t i = 0; i < seqs.size(); ++i) {
    FS_RETURN_IF_ERROR(validate_forward_seq(seqs[i], i, c, kv.layout.block_size, kv.num_blocks));
  }
  return Status::ok();
}

Status CudaModel::build_metadata(std::span<const ForwardSeq> seqs, const KvPoolView& kv) {
  const int64_t bs = kv.layout.block_size;
  const bool prefill_ok = prefill_head_dim_supported(static_cast<int32_t>(config_.head_dim));
  int64_t t_count = 0, rows = 0, table_len = 0, tiles = 0, decode = 0, max_ctx = 0;
  for (const ForwardSeq& s : seqs) {
    const int64_t n = static_cast<int64_t>(s.tokens.size());
    t_count += n;
    rows += s.all_logits ? n : 1;
    table_len += (s.num_past + n + bs - 1) / bs;
    if (prefill_ok && n > kMaxDecodeNew) {
      tiles += (n + kPrefillTileRows - 1) / kPrefillTileRows;
    } else {
      decode += n;
      max_ctx = std::max(max_ctx, s.num_past + n);
    }
  }
  num_tokens_ = t_count;
  num_rows_ = rows;
  num_tiles_ = tiles;
  num_decode_ = decode;
  // Split-K layout from the context bucket (attention.cu, plan_decode_splits).
  if (decode > 0) {
    const DecodeSplits splits = plan_decode_splits(
        decode, static_cast<int32_t>(config_.num_kv_heads), static_cast<int32_t>(config_.head_dim),
        static_cast<int32_t>(config_.num_heads / config_.num_kv_heads), context_bucket(max_ctx),
        num_sms_);
    split_len_ = splits.split_len;
    max_splits_ = splits.max_splits;
  } else {
    split_len_ = 128;
    max_splits_ = 1;
  }

  // The pinned buffer is reused: wait until the previous forward's copy of it has run.
  FS_CUDA_OK(cudaEventSynchronize(meta_copied_));
  off_tokens_ = 0;
  off_positions_ = off_tokens_ + t_count;
  off_slots_ = off_positions_ + t_count;
  off_rows_ = off_slots_ + t_count;
  off_seqs_ = off_rows_ + rows;
  off_tiles_ = off_seqs_ + 4 * seqs.size();
  off_decode_ = off_tiles_ + 2 * tiles;
  off_tables_ = off_decode_ + 4 * decode;
  const size_t total = off_tables_ + table_len;
  if (total > meta_pinned_capacity_) {
    if (meta_pinned_) cudaFreeHost(meta_pinned_);
    meta_pinned_ = nullptr;
    const size_t cap = std::max<size_t>(total * 2, 4096);
    FS_CUDA_OK(cudaMallocHost(&meta_pinned_, sizeof(int32_t) * cap));
    meta_pinned_capacity_ = cap;
    FS_RETURN_IF_ERROR(meta_dev_.ensure(sizeof(int32_t) * cap, "batch metadata"));
  }
  int32_t* m = meta_pinned_;
  int64_t t = 0, row = 0, table_pos = 0, tile = 0, dec = 0;
  for (size_t i = 0; i < seqs.size(); ++i) {
    const ForwardSeq& s = seqs[i];
    const int64_t n = static_cast<int64_t>(s.tokens.size());
    const int64_t nblocks = (s.num_past + n + bs - 1) / bs;
    const int32_t table_offset = static_cast<int32_t>(table_pos);
    for (int64_t b = 0; b < nblocks; ++b) m[off_tables_ + table_pos++] = s.block_table[b];
    int32_t* desc = m + off_seqs_ + 4 * i;
    desc[0] = static_cast<int32_t>(t);
    desc[1] = static_cast<int32_t>(n);
    desc[2] = static_cast<int32_t>(s.num_past);
    desc[3] = table_offset;
    const bool as_decode = !(prefill_ok && n > kMaxDecodeNew);
    if (!as_decode) {
      for (int64_t q0 = 0; q0 < n; q0 += kPrefillTileRows, ++tile) {
        m[off_tiles_ + 2 * tile] = static_cast<int32_t>(i);
        m[off_tiles_ + 2 * tile + 1] = static_cast<int32_t>(q0);
      }
    }
    for (int64_t j = 0; j < n; ++j, ++t) {
      const int64_t pos = s.num_past + j;
      m[off_tokens_ + t] = s.tokens[j];
      m[off_positions_ + t] = static_cast<int32_t>(pos);
      m[off_slots_ + t] = static_cast<int32_t>(s.block_table[pos / bs] * bs + pos % bs);
      if (as_decode) {
        int32_t* d = m + off_decode_ + 4 * dec++;
        d[0] = static_cast<int32_t>(t);
        d[1] = static_cast<int32_t>(pos);
        d[2] = table_offset;
        d[3] = static_cast<int32_t>((pos + split_len_) / split_len_);  // ceil((pos + 1) / len)
      }
    }
    const int64_t first = s.all_logits ? t - n : t - 1;
    for (int64_t r = first; r < t; ++r) m[off_rows_ + row++] = static_cast<int32_t>(r);
  }
  FS_CUDA_OK(cudaMemcpyAsync(meta_dev_.as<int32_t>(), meta_pinned_, sizeof(int32_t) * total,
                             cudaMemcpyHostToDevice, stream_));
  FS_CUDA_OK(cudaEventRecord(meta_copied_, stream_));
  return Status::ok();
}

Status CudaModel::gemm(const bf16* w, int64_t out, int64_t in, const bf16* x, int64_t num_tokens,
                       void* y, cudaDataType_t y_type, float beta) {
  if (num_tokens <= gemv_max_tokens_ && gemv_supported(num_tokens, in)) {  // small decode batches
    launch_gemv(w, out, in, x, num_tokens, y, y_type == CUDA_R_32F, beta, stream_);
    return Status::ok();
  }
  return cublas_gemm(w, out, in, x, num_tokens, y, y_type, beta);
}

Status CudaModel::cublas_gemm(const bf16* w, int64_t out, int64_t in, const bf16* x,
                              int64_t num_tokens, void* y, cudaDataType_t y_type, float beta) {
  // Row-major y[T, out] = x[T, in] W[out, in]^T is column-major y^T = W^T(op T) x^T.
  const float alpha = 1.0f;
  FS_CUBLAS_OK(cublasGemmEx(cublas_, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(out),
                            static_cast<int>(num_tokens), static_cast<int>(in), &alpha, w,
                            CUDA_R_16BF, static_cast<int>(in), x, CUDA_R_16BF, static_cast<int>(in),
                            &beta, y, y_type, static_cast<int>(out), CUBLAS_COMPUTE_32F,
                            CUBLAS_GEMM_DEFAULT));
  return Status::ok();
}

Status CudaModel::calibrate_gemv() {
  gemv_max_tokens_ = kMaxGemvTokens;
  FS_ASSIGN_OR_RETURN(const std::optional<int64_t> forced,
                      int_from_env("FASTSERVE_GEMV_MAX_TOKENS", 0, kMaxGemvTokens));
  if (forced) {
    gemv_max_tokens_ = *forced;
    log_info("decode GEMV for batches of up to {} tokens (FASTSERVE_GEMV_MAX_TOKENS)", *forced);
    return Status::ok();
  }
  if (layers_.empty()) return Status::ok();
  const ModelConfig& c = config_;
  const Layer& l = layers_[0];
  const int64_t hidden = c.hidden_size, ffn = c.intermediate_size;
  const int64_t qd = c.num_heads * c.head_dim, kvd = c.num_kv_heads * c.head_dim;
  const int64_t up_rows = c.activation == Activation::kSiluGated ? 2 * ffn : ffn;
  struct Mat {
    const bf16* w;
    int64_t out, in;
  };
  const Mat mats[] = {{l.w_qkv, qd + 2 * kvd, hidden}, {l.wo, hidden, qd},
                      {l.w_up, up_rows, hidden}, {l.w_down, hidden, ffn}};
  int64_t bytes = 0, max_in = 0, max_out = 0;
  for (const Mat& m : mats) {
    bytes += m.out * m.in * static_cast<int64_t>(sizeof(bf16));
    max_in = std::max(max_in, m.in);
    max_out = std::max(max_out, m.out);
  }
  // Below this a layer's matrices take microseconds: launch overheads and timer noise decide, and
  // the GEMV (one launch, no workspace) stays.
  constexpr int64_t kMinCalibrationBytes = int64_t{32} << 20;
  if (bytes < kMinCalibrationBytes) return Status::ok();
  DeviceBuffer x, y;
  FS_RETURN_IF_ERROR(x.ensure(kMaxGemvTokens * max_in * sizeof(bf16), "GEMV calibration input"));
  FS_RETURN_IF_ERROR(y.ensure(kMaxGemvTokens * max_out * sizeof(float), "GEMV calibration output"));
  FS_CUDA_OK(cudaMemsetAsync(x.as<void>(), 0, kMaxGemvTokens * max_in * sizeof(bf16), stream_));
  cudaEvent_t start = nullptr, stop = nullptr;
  FS_CUDA_OK(cudaEventCreate(&start));
  FS_CUDA_OK(cudaEventCreate(&stop));
  // Best of 3 (after a warm-up) of the four products of one layer, by one path.
  auto time_ms = [&](int64_t t, bool use_gemv) -> Result<float> {
    float best = 1e30f;
    for (int rep = 0; rep < 4; ++rep) {
      FS_CUDA_OK(cudaEventRecord(start, stream_));
      for (const Mat& m : mats) {
        if (use_gemv) {
          launch_gemv(m.w, m.out, m.in, x.as<bf16>(), t, y.as<void>(), true, 0.0f, stream_);
        } else {
          FS_RETURN_IF_ERROR(
              cublas_gemm(m.w, m.out, m.in, x.as<bf16>(), t, y.as<void>(), CUDA_R_32F, 0.0f));
        }
      }
      FS_CUDA_OK(cudaEventRecord(stop, stream_));
      FS_CUDA_OK(cudaEventSynchronize(stop));
      float ms = 0;
      FS_CUDA_OK(cudaEventElapsedTime(&ms, start, stop));
      if (rep > 0) best = std::min(best, ms);
    }
    return best;
  };
  std::string report;
  Status st = Status::ok();
  for (int64_t t = 1; t <= kMaxGemvTokens && st.is_ok(); ++t) {
    Result<float> g = time_ms(t, true);
    Result<float> b = g.is_ok() ? time_ms(t, false) : Result<float>(g.status());
    if (!b.is_ok()) {
      st = b.status();
      break;
    }
    report += fmt::format("{}{}: {:.3f}/{:.3f}", t > 1 ? ", " : "", t, *g, *b);
    // GEMV while it is at most 5% slower than cuBLAS on these products (the fused norm and SwiGLU
    // of the GEMV path save a few kernels a layer). Llama-3-8B on an H200 (model_bench, whole
    // decode step): at 2 tokens the GEMV took 1.13x cuBLAS's time per layer and the GEMV step
    // 5.22 ms against cuBLAS's 4.95; a 15% margin had kept the GEMV there.
    if (t > 1 && *g > 1.05f * *b) {
      gemv_max_tokens_ = t - 1;
      break;
    }
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  FS_RETURN_IF_ERROR(st);
  log_info("decode GEMV for batches of up to {} tokens, cuBLAS above (one layer, GEMV/cuBLAS ms: {})",
           gemv_max_tokens_, report);
  return Status::ok();
}

Status CudaModel::run_layers(const KvPoolView& kv) {
  const ModelConfig& c = config_;
  const int64_t T = num_tokens_, hidden = c.hidden_size, ffn = c.intermediate_size;
  const int64_t qd = c.num_heads * c.head_dim, kvd = c.num_kv_heads * c.head_dim;
  const int32_t* meta = meta_dev_.as<int32_t>();
  const int32_t* tokens = meta + off_tokens_;
  const int32_t* positions = meta + off_positions_;
  const int32_t* slots = meta + off_slots_;
  const auto* seq_descs = reinterpret_cast<const AttnSeqDesc*>(meta + off_seqs_);
  const int32_t* tables = meta + off_tables_;
  const auto* tiles = reinterpret_cast<const PrefillTile*>(meta + off_tiles_);
  const auto* decode = reinterpret_cast<const DecodeDesc*>(meta + off_decode_);
  const NormType norm = c.norm == NormKind::kRms ? NormType::kRms : NormType::kLayerNorm;
  const float eps = static_cast<float>(c.norm_eps);
  const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  const int32_t heads = static_cast<int32_t>(c.num_heads);
  float* x = x_.as<float>();
  bf16* h = h_.as<bf16>();

  // Tensor parallelism: x is summed over the TP group after each row-parallel projection, which
  // adds its bias before the sum (DistHooks); only the residual owner carries x into the sum.
  const bool tp = static_cast<bool>(dist_.all_reduce);
  const float residual = dist_.residual_owner ? 1.0f : 0.0f;
  const auto reduce = [&](const float* bias) -> Status {
    if (bias) launch_add_bias(x, bias, T, hidden, stream_);
    FS_RETURN_IF_ERROR(dist_.all_reduce(x, T * hidden));
    mark("all-reduce");
    return Status::ok();
  };
  // Decode batches under TP with peer memory (DistHooks::exchange): a row-parallel projection
  // without a bias runs as a GEMV that sends its outputs to the peers as it makes them; the
  // all-reduce kernel after it only waits and sums.
  const bool gemv_send = tp && dist_.exchange.size > 0 && T <= gemv_max_tokens_ &&
                         T * hidden <= dist_.exchange.max_floats;
  P2pExchange sent = dist_.exchange;
  sent.sent = true;
  // x = W a (+ x on the residual owner), then under TP the bias and the all-reduce (one rank
  // leaves the bias to the next norm).
  const auto row_parallel = [&](const bf16* w, int64_t in, const bf16* a, const float* bias,
                                const char* what) -> Status {
    if (gemv_send && !bias && gemv_supported(T, in)) {
      launch_gemv(w, hidden, in, a, T, x, true, residual, stream_, dist_.exchange);
      mark(what);
      launch_p2p_allreduce(x, T * hidden, sent, dist_.exchange_blocks, stream_);
      mark("all-reduce");
      return Status::ok();
    }
    FS_RETURN_IF_ERROR(gemm(w, hidden, in, a, T, x, CUDA_R_32F, residual));
    mark(what);
    return tp ? reduce(bias) : Status::ok();
  };

  mark(nullptr);
  if (dist_.recv_hidden) {  // a later pipeline stage: x from the previous one
    FS_RETURN_IF_ERROR(dist_.recv_hidden(x, T * hidden));
    mark("receive hidden");
  } else {
    launch_embed(tokens, positions, tok_embd_, pos_embd_,
                 static_cast<int32_t>(c.learned_pos_offset), T, hidden, x, stream_);
    mark("embed");
  }
  const float* pending_bias = nullptr;  // the last projection's bias, added by the next norm
  // The fused decode GEMVs (kernels.h gemv_fused_supported): RMS norms without biases, SwiGLU.
  const bool gemv = T <= gemv_max_tokens_;
  const bool fuse_rms = gemv && (fused_gemv() & kFuseGemvNorm) && norm == NormType::kRms &&
                        gemv_fused_supported(T, hidden);
  const bool fuse_act = gemv && (fused_gemv() & kFuseGemvSiluMul) &&
                        c.activation == Activation::kSiluGated && gemv_fused_supported(T, ffn);
  const bool fuse_act_out = (fused_gemv() & kFuseGemvSiluOut) && fuse_rms;
  for (int64_t li = 0; li < c.num_layers; ++li) {
    const Layer& l = layers_[li];
    // Attention block: h = norm(x); x += Wo attention(rope(Wq h), rope(Wk h), Wv h).
    // Decode batches of RMS models: the norm runs inside the QKV GEMV (kernels.h).
    if (fuse_rms && !pending_bias && !l.attn_norm_b) {
      launch_gemv_rmsnorm(l.w_qkv, qd + 2 * kvd, hidden, x, l.attn_norm, eps, T, qkv_.as<void>(),
                          true, 0.0f, stream_);
      mark("norm + gemm qkv");
    } else {
      launch_norm(x, pending_bias, nullptr, l.attn_norm, l.attn_norm_b, norm, eps, T, hidden, h,
                  stream_);
      mark("norm");
      FS_RETURN_IF_ERROR(
          gemm(l.w_qkv, qd + 2 * kvd, hidden, h, T, qkv_.as<void>(), CUDA_R_32F, 0.0f));
      mark("gemm qkv");
    }
    launch_qkv_rope_store(qkv_.as<float>(), l.bq, l.bk, l.bv, positions, slots, inv_freq_,
                          c.rope_style == RopeStyle::kNeox, T, heads, kv.layout,
                          static_cast<int32_t>(li), q_.as<bf16>(), kv.data, stream_);
    mark("rope + kv store");
    launch_attention_prefill(q_.as<bf16>(), kv.data, kv.layout, static_cast<int32_t>(li), seq_descs,
                             tables, tiles, static_cast<int32_t>(num_tiles_), heads, scale,
                             attn_.as<bf16>(), stream_);
    mark("attention prefill");
    launch_attention_decode(q_.as<bf16>(), kv.data, kv.layout, static_cast<int32_t>(li), decode,
                            tables, static_cast<int32_t>(num_decode_), max_splits_, split_len_,
                            heads, scale, partials_.as<float>(), attn_.as<bf16>(), stream_);
    mark("attention decode");
    // MLP block: h = norm(x + bo); x += W_down act(W_gate h, W_up h).
    // Decode batches: the norm runs inside the gate/up GEMV, and silu(gate) * up in its epilogue
    // (kFuseGemvSiluOut) or in the down GEMV's prologue (kFuseGemvSiluMul) (kernels.h).
    const float* bo = tp ? nullptr : l.bo;  // TP adds it before the sum
    const bool fuse_ffn_norm =
        fuse_rms && !bo && !l.ffn_norm_b && c.activation == Activation::kSiluGated;
    FS_RETURN_IF_ERROR(row_parallel(l.wo, qd, attn_.as<bf16>(), l.bo, "gemm o"));
    const bool layer_act_out = fuse_ffn_norm && fuse_act_out;
    if (layer_act_out) {
      launch_gemv_rmsnorm_silu(l.w_up, ffn, hidden, x, l.ffn_norm, eps, T, act_.as<bf16>(),
                               stream_);
      mark("norm + gemm gate_up + activation");
    } else if (fuse_ffn_norm) {
      launch_gemv_rmsnorm(l.w_up, 2 * ffn, hidden, x, l.ffn_norm, eps, T, up_.as<void>(), false,
                          0.0f, stream_);
      mark("norm + gemm gate_up");
    } else {
      launch_norm(x, bo, nullptr, l.ffn_norm, l.ffn_norm_b, norm, eps, T, hidden, h, stream_);
      mark("norm");
    }
    switch (c.activation) {
      case Activation::kSiluGated:
        if (layer_act_out) break;
        if (!fuse_ffn_norm) {
          FS_RETURN_IF_ERROR(
              gemm(l.w_up, 2 * ffn, hidden, h, T, up_.as<void>(), CUDA_R_16BF, 0.0f));
          mark("gemm gate_up");
        }
        if (!fuse_act) {
          launch_silu_mul(up_.as<bf16>(), T, ffn, act_.as<bf16>(), stream_);
          mark("activation");
        }
        break;
      case Activation::kRelu:
        FS_RETURN_IF_ERROR(gemm(l.w_up, ffn, hidden, h, T, act_.as<void>(), CUDA_R_16BF, 0.0f));
        mark("gemm gate_up");
        launch_bias_relu(act_.as<bf16>(), l.b_up, T, ffn, stream_);
        mark("activation");
        break;
    }
    if (fuse_act && !layer_act_out) {
      launch_gemv_silu_mul(l.w_down, hidden, ffn, up_.as<bf16>(), T, x, true, residual, stream_);
      mark("activation + gemm down");
      if (tp) FS_RETURN_IF_ERROR(reduce(l.b_down));
    } else {
      FS_RETURN_IF_ERROR(row_parallel(l.w_down, ffn, act_.as<bf16>(), l.b_down, "gemm down"));
    }
    pending_bias = tp ? nullptr : l.b_down;
  }
  if (dist_.send_hidden) {  // an earlier pipeline stage: x goes on to the next, no logits here
    if (pending_bias) launch_add_bias(x, pending_bias, T, hidden, stream_);
    FS_RETURN_IF_ERROR(dist_.send_hidden(x, T * hidden));
    mark("send hidden");
    return check_launch("forward kernels");
  }
  // Final norm (with the last pending bias) and LM head, only for the rows that need logits.
  launch_norm(x, pending_bias, meta + off_rows_, output_norm_, output_norm_b_, norm, eps, num_rows_,
              hidden, h, stream_);
  FS_RETURN_IF_ERROR(
      gemm(output_, head_rows_, hidden, h, num_rows_, logits_.as<void>(), CUDA_R_32F, 0.0f));
  mark("final norm + LM head");
  return check_launch("forward kernels");
}

Result<int64_t> CudaModel::enqueue_forward(std::span<const ForwardSeq> seqs, const KvPoolView& kv) {
  collect_marks();
  FS_RETURN_IF_ERROR(check_batch(seqs, kv));
  FS_RETURN_IF_ERROR(build_metadata(seqs, kv));
  FS_RETURN_IF_ERROR(reserve(num_tokens_));
  const ModelConfig& c = config_;
  FS_RETURN_IF_ERROR(partials_.ensure(sizeof(float) * std::max<int64_t>(1, num_decode_) *
                                          c.num_heads * max_splits_ * (c.head_dim + 2),
                                      "attention partials", /*doubling=*/true));
  FS_RETURN_IF_ERROR(
      logits_.ensure(sizeof(float) * num_rows_ * c.vocab_size, "logits", /*doubling=*/true));
  FS_RETURN_IF_ERROR(
      tokens_out_.ensure(sizeof(int32_t) * num_rows_, "sampled tokens", /*doubling=*/true));
  // A stage that hands its hidden states on computes no logits.
  const int64_t rows = dist_.send_hidden ? 0 : num_rows_;
  if (const int64_t bucket = decode_graph_bucket(seqs); bucket > 0) {
    FS_ASSIGN_OR_RETURN(const bool replayed, run_decode_graph(bucket, kv));
    if (replayed) return rows;
  }
  FS_RETURN_IF_ERROR(run_layers(kv));
  return rows;
}

Status CudaModel::wait_stream() {
  if (dist_.wait) return dist_.wait();
  FS_CUDA_OK(cudaStreamSynchronize(stream_));
  return Status::ok();
}

// ---- vocab-parallel LM head ----

Status CudaModel::shard_lm_head(int tp, int tp_rank) {
  if (tp <= 1) return Status::ok();
  if (!dist_.all_reduce || head_tp_ > 1 || tp_rank < 0 || tp_rank >= tp) {
    return invalid_argument("vocab-parallel LM head: rank {} of {} (needs the all-reduce hook, once)",
                            tp_rank, tp);
  }
  const int64_t vocab = config_.vocab_size, hidden = config_.hidden_size;
  const int64_t chunk = (vocab + tp - 1) / tp;
  if ((tp - 1) * chunk >= vocab) return Status::ok();  // a rank would get no ids: stays whole
  const int64_t begin = tp_rank * chunk;
  const int64_t rows = std::min(chunk, vocab - begin);
  if (output_ == tok_embd_) {
    output_ = tok_embd_ + begin * hidden;  // every rank keeps the whole embedding anyway
  } else {
    FS_ASSIGN_OR_RETURN(void* p, alloc(sizeof(bf16) * rows * hidden, "LM head rows"));
    FS_CUDA_OK(cudaMemcpy(p, output_ + begin * hidden, sizeof(bf16) * rows * hidden,
                          cudaMemcpyDeviceToDevice));
    if (auto it = std::find(allocations_.begin(), allocations_.end(), static_cast<void*>(output_));
        it != allocations_.end()) {
      cudaFree(*it);
      allocations_.erase(it);
      weight_bytes_ -= static_cast<int64_t>(sizeof(bf16)) * vocab * hidden;
    }
    weight_bytes_ += static_cast<int64_t>(sizeof(bf16)) * rows * hidden;
    output_ = static_cast<bf16*>(p);
  }
  head_rows_ = rows;
  head_begin_ = begin;
  head_tp_ = tp;
  head_rank_ = tp_rank;
  return Status::ok();
}

Result<const float*> CudaModel::gather_logits(int64_t rows) {
  const int64_t vocab = config_.vocab_size;
  FS_RETURN_IF_ERROR(
      logits_full_.ensure(sizeof(float) * rows * vocab, "gathered logits", /*doubling=*/true));
  launch_scatter_logits(logits_.as<float>(), rows, head_rows_, head_begin_, vocab,
                        logits_full_.as<float>(), stream_);
  FS_RETURN_IF_ERROR(check_launch("scatter logits"));
  FS_RETURN_IF_ERROR(dist_.all_reduce(logits_full_.as<float>(), rows * vocab));
  return logits_full_.as<float>();
}

Status CudaModel::gather_picks(int64_t rows, int32_t* picks, int32_t* tokens) {
  const int64_t n = rows * head_tp_ * 3;
  FS_RETURN_IF_ERROR(pick_parts_.ensure(sizeof(float) * n, "greedy pick parts", /*doubling=*/true));
  launch_greedy_pick_part(logits_.as<float>(), rows, head_rows_, head_begin_, head_tp_, head_rank_,
                          pick_parts_.as<float>(), stream_);
  FS_RETURN_IF_ERROR(check_launch("greedy pick parts"));
  FS_RETURN_IF_ERROR(dist_.all_reduce(pick_parts_.as<float>(), n));
  launch_combine_picks(pick_parts_.as<float>(), rows, head_tp_, picks, tokens, stream_);
  return check_launch("combine greedy picks");
}

// ---- CUDA graphs for decode steps ----

void CudaModel::set_cuda_graphs(bool on) {
  cuda_graphs_ = on;
  if (on) return;
  if (stream_) cudaStreamSynchronize(stream_);
  for (DecodeGraph& g : graphs_) cudaGraphExecDestroy(g.exec);
  graphs_.clear();
  graph_keys_seen_.clear();
}

int64_t CudaModel::decode_graph_bucket(std::span<const ForwardSeq> seqs) const {
  if (!cuda_graphs_ || profiling_) return 0;
  int64_t max_ctx = 0;
  for (const ForwardSeq& s : seqs) {
    if (s.tokens.size() != 1 || s.all_logits) return 0;
    max_ctx = std::max(max_ctx, s.num_past + 1);
  }
  return context_bucket(max_ctx);
}

CudaModel::GraphBuffers CudaModel::graph_buffers(const KvPoolView& kv) const {
  return {kv.data,         meta_dev_.as<void>(), x_.as<void>(),      h_.as<void>(),
          qkv_.as<void>(), q_.as<void>(),        attn_.as<void>(),   up_.as<void>(),
          act_.as<void>(), partials_.as<void>(), logits_.as<void>(), cublas_workspace_.as<void>()};
}

Result<bool> CudaModel::run_decode_graph(int64_t ctx_bucket, const KvPoolView& kv) {
  const int64_t batch = num_tokens_;
  const GraphBuffers buffers = graph_buffers(kv);
  ++graph_clock_;
  for (size_t i = 0; i < graphs_.size(); ++i) {
    DecodeGraph& g = graphs_[i];
    if (g.batch != batch || g.ctx_bucket != ctx_bucket) continue;
    if (g.buffers == buffers) {
      g.last_use = graph_clock_;
      FS_CUDA_OK(cudaGraphLaunch(g.exec, stream_));
      ++num_graph_replays_;
      return true;
    }
    // A buffer it reads or writes was reallocated: capture again below.
    FS_CUDA_OK(cudaStreamSynchronize(stream_));
    cudaGraphExecDestroy(g.exec);
    graphs_.erase(graphs_.begin() + static_cast<std::ptrdiff_t>(i));
    break;
  }
  const std::pair<int64_t, int64_t> key(batch, ctx_bucket);
  if (std::find(graph_keys_seen_.begin(), graph_keys_seen_.end(), key) == graph_keys_seen_.end()) {
    if (graph_keys_seen_.size() >= 4096) graph_keys_seen_.clear();
    graph_keys_seen_.push_back(key);
    return false;  // first sighting: eager (module loading, kernel attributes happen here)
  }
  if (graphs_.size() >= static_cast<size_t>(max_decode_graphs_)) {
    if (!logged_graph_eviction_) {
      logged_graph_eviction_ = true;
      log_info("cuda: {} decode graphs alive: the least recently used are evicted and captured "
               "again when used (FASTSERVE_MAX_DECODE_GRAPHS raises the limit)", graphs_.size());
    }
    auto lru = std::min_element(graphs_.begin(), graphs_.end(), [](const auto& a, const auto& b) {
      return a.last_use < b.last_use;
    });
    FS_CUDA_OK(cudaStreamSynchronize(stream_));
    cudaGraphExecDestroy(lru->exec);
    graphs_.erase(lru);
  }
  Stopwatch capture_time;
  FS_CUDA_OK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
  const Status captured = run_layers(kv);
  cudaGraph_t graph = nullptr;
  const cudaError_t ended = cudaStreamEndCapture(stream_, &graph);
  cudaGraphExec_t exec = nullptr;
  cudaError_t err = ended;
  if (captured.is_ok() && ended == cudaSuccess) err = cudaGraphInstantiate(&exec, graph, 0);
  if (graph) cudaGraphDestroy(graph);
  if (!captured.is_ok() || err != cudaSuccess) {
    cudaGetLastError();  // clear the capture's error; the eager run reports real faults
    log_warn("cuda: decode graph capture failed ({}); running decode steps eagerly",
             captured.is_ok() ? std::string(cudaGetErrorString(err)) : captured.message());
    set_cuda_graphs(false);
    return false;
  }
  graphs_.push_back(DecodeGraph{batch, ctx_bucket, buffers, exec, graph_clock_});
  ++num_graph_captures_;
  if (const double s = capture_time.elapsed_s(); s > 0.05) {  // a stall every running job sees
    log_info("cuda: decode graph capture (batch {}, context bucket {}) took {:.0f} ms; {} captures, "
             "{} graphs alive", batch, ctx_bucket, s * 1e3, num_graph_captures_, graphs_.size());
  }
  FS_CUDA_OK(cudaGraphLaunch(exec, stream_));
  ++num_graph_replays_;
  return true;
}

void CudaModel::set_profiling(bool on) {
  profiling_ = on;
  marks_.clear();
  phase_ms_.clear();
}

void CudaModel::mark(const char* phase) {
  if (!profiling_) return;
  if (marks_.size() == event_pool_.size()) {
    cudaEvent_t e = nullptr;
    if (cudaEventCreate(&e) != cudaSuccess) return;
    event_pool_.push_back(e);
  }
  cudaEvent_t e = event_pool_[marks_.size()];
  cudaEventRecord(e, stream_);
  marks_.emplace_back(phase, e);
}

void CudaModel::collect_marks() {
  if (marks_.empty()) return;
  cudaEventSynchronize(marks_.back().second);
  for (size_t i = 1; i < marks_.size(); ++i) {
    float ms = 0;
    cudaEventElapsedTime(&ms, marks_[i - 1].second, marks_[i].second);
    const std::string name = marks_[i].first;
    auto it = std::find_if(phase_ms_.begin(), phase_ms_.end(),
                           [&](const auto& p) { return p.first == name; });
    if (it == phase_ms_.end()) {
      phase_ms_.emplace_back(name, ms);
    } else {
      it->second += ms;
    }
  }
  marks_.clear();
}

std::vector<std::pair<std::string, double>> CudaModel::phase_times_ms() {
  collect_marks();
  return phase_ms_;
}

Result<std::span<const float>> CudaModel::forward(std::span<const ForwardSeq> seqs,
                                                  const KvPoolView& kv) {
  FS_ASSIGN_OR_RETURN(const int64_t rows, enqueue_forward(seqs, kv));
  if (dist_.send_hidden) {
    // A stage before the last returns once its work is enqueued: the host takes the next batch
    // while the GPU computes and hands this one on (the next forward orders after it on the
    // stream; its metadata waits for this one's copy).
    picks_view_ = {};
    return std::span<const float>();
  }
  const int64_t vocab = config_.vocab_size;
  const size_t n = static_cast<size_t>(rows * vocab);
  if (n > logits_pinned_capacity_) {
    if (logits_pinned_) cudaFreeHost(logits_pinned_);
    logits_pinned_ = nullptr;
    FS_CUDA_OK(cudaMallocHost(&logits_pinned_, sizeof(float) * n));
    logits_pinned_capacity_ = n;
  }
  // Rows of greedy sequences are picked here (ForwardSeq::greedy); the others are copied, in runs
  // of consecutive rows.
  row_copied_.clear();
  bool any_greedy = false;
  if (rows > 0) {
    for (const ForwardSeq& s : seqs) {
      const bool greedy = s.greedy && !s.all_logits;
      any_greedy = any_greedy || greedy;
      row_copied_.insert(row_copied_.end(), s.all_logits ? s.tokens.size() : 1, !greedy);
    }
  }
  // A vocab-parallel head gathers what leaves the GPU: whole rows when any is copied (then the
  // greedy rows are picked from them too), else only every rank's pick parts.
  const bool any_copied = std::find(row_copied_.begin(), row_copied_.end(), true) != row_copied_.end();
  const float* logits = logits_.as<float>();
  if (head_tp_ > 1 && any_copied) {
    FS_ASSIGN_OR_RETURN(logits, gather_logits(rows));
  }
  if (any_greedy) {
    if (static_cast<size_t>(rows) > picks_pinned_capacity_) {
      if (picks_pinned_) cudaFreeHost(picks_pinned_);
      picks_pinned_ = nullptr;
      FS_CUDA_OK(cudaMallocHost(&picks_pinned_, sizeof(GreedyPick) * rows));
      picks_pinned_capacity_ = static_cast<size_t>(rows);
    }
    FS_RETURN_IF_ERROR(picks_.ensure(sizeof(GreedyPick) * rows, "greedy picks"));
    if (head_tp_ > 1 && !any_copied) {
      FS_RETURN_IF_ERROR(gather_picks(rows, picks_.as<int32_t>(), nullptr));
    } else {
      launch_greedy_pick(logits, rows, vocab, picks_.as<int32_t>(), stream_);
      FS_RETURN_IF_ERROR(check_launch("greedy pick"));
    }
    FS_CUDA_OK(cudaMemcpyAsync(picks_pinned_, picks_.as<void>(), sizeof(GreedyPick) * rows,
                               cudaMemcpyDeviceToHost, stream_));
  }
  for (int64_t r = 0; r < rows;) {
    if (!row_copied_[r]) {
      ++r;
      continue;
    }
    int64_t end = r + 1;
    while (end < rows && row_copied_[end]) ++end;
    FS_CUDA_OK(cudaMemcpyAsync(logits_pinned_ + r * vocab, logits + r * vocab,
                               sizeof(float) * (end - r) * vocab, cudaMemcpyDeviceToHost, stream_));
    r = end;
  }
  FS_RETURN_IF_ERROR(wait_stream());
  picks_view_ = any_greedy ? std::span<const GreedyPick>(picks_pinned_, static_cast<size_t>(rows))
                           : std::span<const GreedyPick>();
  return std::span<const float>(logits_pinned_, n);
}

Result<std::span<const int32_t>> CudaModel::forward_greedy(std::span<const ForwardSeq> seqs,
                                                           const KvPoolView& kv) {
  FS_ASSIGN_OR_RETURN(const int64_t rows, enqueue_forward(seqs, kv));
  if (static_cast<size_t>(rows) > tokens_pinned_capacity_) {
    if (tokens_pinned_) cudaFreeHost(tokens_pinned_);
    tokens_pinned_ = nullptr;
    FS_CUDA_OK(cudaMallocHost(&tokens_pinned_, sizeof(int32_t) * rows));
    tokens_pinned_capacity_ = static_cast<size_t>(rows);
  }
  if (head_tp_ > 1) {
    FS_RETURN_IF_ERROR(gather_picks(rows, nullptr, tokens_out_.as<int32_t>()));
  } else {
    launch_argmax(logits_.as<float>(), rows, config_.vocab_size, tokens_out_.as<int32_t>(),
                  stream_);
    FS_RETURN_IF_ERROR(check_launch("argmax"));
  }
  FS_CUDA_OK(cudaMemcpyAsync(tokens_pinned_, tokens_out_.as<int32_t>(), sizeof(int32_t) * rows,
                             cudaMemcpyDeviceToHost, stream_));
  FS_RETURN_IF_ERROR(wait_stream());
  return std::span<const int32_t>(tokens_pinned_, static_cast<size_t>(rows));
}

}  // namespace fs::cuda
