#include "model/causal_lm.h"

#include <algorithm>
#include <cmath>
#include <optional>

#include "core/check.h"
#include "core/log.h"

namespace fs {
namespace {

// Optional weights may be held as pointers or std::optional; both read the same here.
const WeightTensor* get(const std::optional<WeightTensor>& w) { return w ? &*w : nullptr; }

cpu::WeightView view_of(const WeightTensor& w) {
  const int64_t rows = w.shape.size() == 2 ? w.shape[0] : 1;
  const int64_t cols = w.shape.back();
  return cpu::WeightView{w.dtype, rows, cols, w.data};
}

// A 1-D tensor (norm weight, bias) as f32; empty for an absent tensor.
std::vector<float> to_f32(const WeightTensor* w) {
  if (w == nullptr) return {};
  const cpu::WeightView v = view_of(*w);
  std::vector<float> out(v.rows * v.cols);
  cpu::dequantize_rows(v, 0, v.rows, out.data());
  return out;
}

template <typename T>
void grow(std::vector<T>& v, int64_t n) {
  if (static_cast<int64_t>(v.size()) < n) v.resize(n);
}

}  // namespace

CausalLm::CausalLm(LoadedModel model) : model_(std::move(model)), pool_(&default_pool()) {}

Result<std::unique_ptr<CausalLm>> CausalLm::load(const std::string& path) {
  FS_ASSIGN_OR_RETURN(LoadedModel loaded, load_model(path));
  std::unique_ptr<CausalLm> lm = create(std::move(loaded));
  log_info("model: {} ({} layers, hidden {}, vocab {}), kernels: {}", path, lm->config().num_layers,
           lm->config().hidden_size, lm->config().vocab_size, cpu::matmul_kernel_info());
  return lm;
}

std::unique_ptr<CausalLm> CausalLm::create(LoadedModel model) {
  std::unique_ptr<CausalLm> lm(new CausalLm(std::move(model)));
  lm->prepare();
  return lm;
}

void CausalLm::prepare() {
  const ModelWeights& w = model_.weights;
  for (const LayerWeights& lw : w.layers) {
    LayerF32 f;
    f.attn_norm = to_f32(&lw.attn_norm);
    f.attn_norm_bias = to_f32(get(lw.attn_norm_b));
    f.ffn_norm = to_f32(&lw.ffn_norm);
    f.ffn_norm_bias = to_f32(get(lw.ffn_norm_b));
    f.bq = to_f32(get(lw.bq));
    f.bk = to_f32(get(lw.bk));
    f.bv = to_f32(get(lw.bv));
    f.bo = to_f32(get(lw.bo));
    f.b_up = to_f32(get(lw.b_up));
    f.b_down = to_f32(get(lw.b_down));
    layers_f32_.push_back(std::move(f));
  }
  output_norm_ = to_f32(&w.output_norm);
  output_norm_bias_ = to_f32(get(w.output_norm_b));
  const ModelConfig& c = config();
  rope_.head_dim = c.head_dim;
  rope_.style = c.rope_style == RopeStyle::kInterleaved ? cpu::RopeStyle::kInterleaved
                                                        : cpu::RopeStyle::kNeox;
  if (c.position == PositionKind::kRope) {
    if (const WeightTensor* freqs = get(w.rope_freqs)) {
      // GGUF llama3: the converter baked the scaling into per-pair divisors (llama.cpp rope_freqs).
      ModelConfig unscaled = c;
      unscaled.rope_scaling = RopeScaling{};
      rope_.inv_freq = rope_inv_freq(unscaled);
      const std::vector<float> divisors = to_f32(freqs);
      FS_CHECK(divisors.size() == rope_.inv_freq.size(), "rope_freqs has the wrong length");
      for (size_t i = 0; i < divisors.size(); ++i) rope_.inv_freq[i] /= divisors[i];
    } else {
      rope_.inv_freq = rope_inv_freq(c);
    }
  }
}

cpu::KvCacheShape CausalLm::kv_shape(int64_t num_blocks, int64_t block_size) const {
  return cpu::KvCacheShape{.num_layers = config().num_layers,
                           .num_kv_heads = config().num_kv_heads,
                           .head_dim = config().head_dim,
                           .block_size = block_size,
                           .num_blocks = num_blocks,
                           .dtype = kv_dtype_};
}

int64_t CausalLm::workspace_floats(int64_t num_tokens) const {
  const ModelConfig& c = config();
  const int64_t qd = c.num_heads * c.head_dim, kvd = c.num_kv_heads * c.head_dim;
  return num_tokens * (3 * c.hidden_size + 2 * qd + 2 * kvd + 2 * c.intermediate_size);
}

void CausalLm::norm(const float* x, const std::vector<float>& w, const std::vector<float>& b,
                    int64_t num_tokens, float* y) const {
  const ModelConfig& c = config();
  switch (c.norm) {
    case NormKind::kRms:
      cpu::rms_norm(x, w.data(), num_tokens, c.hidden_size, static_cast<float>(c.norm_eps), y);
      break;
    case NormKind::kLayerNorm:
      cpu::layer_norm(x, w.data(), b.empty() ? nullptr : b.data(), num_tokens, c.hidden_size,
                      static_cast<float>(c.norm_eps), y);
      break;
  }
}

void CausalLm::linear(const WeightTensor& w, const std::vector<float>& bias, const float* x,
                      int64_t num_tokens, float* y) {
  const cpu::WeightView v = view_of(w);
  cpu::matmul(v, x, num_tokens, y, *pool_);
  if (!bias.empty()) cpu::add_bias(y, bias.data(), num_tokens, v.rows);
}

void CausalLm::linears(std::span<const LinearOut> outs, const float* x, int64_t num_tokens) {
  cpu::WeightView views[4];
  float* ys[4];
  bool fused = outs.size() <= 4;
  for (size_t i = 0; fused && i < outs.size(); ++i) {
    views[i] = view_of(*outs[i].w);
    ys[i] = outs[i].y;
    fused = views[i].dtype == views[0].dtype && views[i].cols == views[0].cols;
  }
  if (!fused) {
    for (const LinearOut& o : outs) linear(*o.w, *o.bias, x, num_tokens, o.y);
    return;
  }
  cpu::matmul_multi(std::span(views, outs.size()), x, num_tokens, std::span(ys, outs.size()),
                    *pool_);
  for (size_t i = 0; i < outs.size(); ++i) {
    if (!outs[i].bias->empty()) {
      cpu::add_bias(ys[i], outs[i].bias->data(), num_tokens, views[i].rows);
    }
  }
}

void CausalLm::embed(std::span<const ForwardSeq> seqs, int64_t num_tokens) {
  const ModelConfig& c = config();
  const cpu::WeightView tok = view_of(model_.weights.tok_embd);
  const WeightTensor* pos_embd = get(model_.weights.pos_embd);
  std::vector<float> pos_row;
  if (pos_embd) pos_row.resize(c.hidden_size);
  int64_t t = 0;
  for (const ForwardSeq& s : seqs) {
    for (size_t j = 0; j < s.tokens.size(); ++j, ++t) {
      float* row = x_.data() + t * c.hidden_size;
      cpu::dequantize_rows(tok, s.tokens[j], 1, row);
      positions_[t] = static_cast<int32_t>(s.num_past + static_cast<int64_t>(j));
      if (pos_embd) {
        cpu::dequantize_rows(view_of(*pos_embd), positions_[t] + c.learned_pos_offset, 1,
                             pos_row.data());
        cpu::add_inplace(row, pos_row.data(), c.hidden_size);
      }
    }
  }
  FS_CHECK(t == num_tokens);
}

void CausalLm::layer(int64_t l, std::span<const cpu::AttentionSeq> attn_seqs, int64_t num_tokens,
                     cpu::KvCache& cache) {
  const ModelConfig& c = config();
  const LayerWeights& lw = model_.weights.layers[l];
  const LayerF32& lf = layers_f32_[l];
  const int64_t hidden = c.hidden_size, ffn = c.intermediate_size;

  // Attention block: h = norm(x); x += Wo attention(rope(Wq h), rope(Wk h), Wv h).
  norm(x_.data(), lf.attn_norm, lf.attn_norm_bias, num_tokens, h_.data());
  const LinearOut qkv[] = {
      {&lw.wq, &lf.bq, q_.data()}, {&lw.wk, &lf.bk, k_.data()}, {&lw.wv, &lf.bv, v_.data()}};
  linears(qkv, h_.data(), num_tokens);
  if (c.position == PositionKind::kRope) {
    cpu::apply_rope(rope_, q_.data(), positions_.data(), num_tokens, c.num_heads);
    cpu::apply_rope(rope_, k_.data(), positions_.data(), num_tokens, c.num_kv_heads);
  }
  cpu::write_kv(cache, l, attn_seqs, k_.data(), v_.data());
  const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  cpu::paged_attention(cache, l, attn_seqs, q_.data(), c.num_heads, scale, attn_.data(), *pool_);
  linear(lw.wo, lf.bo, attn_.data(), num_tokens, proj_.data());
  if (dist_.all_reduce) dist_.all_reduce(proj_.data(), num_tokens * hidden);  // TP partial sums
  cpu::add_inplace(x_.data(), proj_.data(), num_tokens * hidden);

  // MLP block: h = norm(x); x += W_down act(W_gate h, W_up h).
  norm(x_.data(), lf.ffn_norm, lf.ffn_norm_bias, num_tokens, h_.data());
  switch (c.activation) {
    case Activation::kSiluGated: {
      static const std::vector<float> kNoBias;
      const LinearOut gate_up[] = {{get(lw.w_gate), &kNoBias, gate_.data()},
                                   {&lw.w_up, &lf.b_up, up_.data()}};
      linears(gate_up, h_.data(), num_tokens);
      cpu::silu_mul(gate_.data(), up_.data(), num_tokens * ffn);
      linear(lw.w_down, lf.b_down, gate_.data(), num_tokens, proj_.data());
      break;
    }
    case Activation::kRelu:
      linear(lw.w_up, lf.b_up, h_.data(), num_tokens, up_.data());
      cpu::relu_inplace(up_.data(), num_tokens * ffn);
      linear(lw.w_down, lf.b_down, up_.data(), num_tokens, proj_.data());
      break;
  }
  if (dist_.all_reduce) dist_.all_reduce(proj_.data(), num_tokens * hidden);  // TP partial sums
  cpu::add_inplace(x_.data(), proj_.data(), num_tokens * hidden);
}

Result<std::span<const float>> CausalLm::forward(std::span<const ForwardSeq> seqs,
                                                 cpu::KvCache& cache) {
  const ModelConfig& c = config();
  int64_t num_tokens = 0, num_rows = 0;
  attn_seqs_.clear();
  for (size_t i = 0; i < seqs.size(); ++i) {
    const ForwardSeq& s = seqs[i];
    const int64_t n = static_cast<int64_t>(s.tokens.size());
    FS_RETURN_IF_ERROR(
        validate_forward_seq(s, i, c, cache.shape().block_size, cache.shape().num_blocks));
    attn_seqs_.push_back({num_tokens, n, s.num_past, s.block_table});
    num_tokens += n;
    num_rows += s.all_logits ? n : 1;
  }
  const int64_t qd = c.num_heads * c.head_dim, kvd = c.num_kv_heads * c.head_dim;
  grow(x_, num_tokens * c.hidden_size);
  grow(h_, num_tokens * c.hidden_size);
  grow(proj_, num_tokens * c.hidden_size);
  grow(q_, num_tokens * qd);
  grow(attn_, num_tokens * qd);
  grow(k_, num_tokens * kvd);
  grow(v_, num_tokens * kvd);
  grow(gate_, num_tokens * c.intermediate_size);
  grow(up_, num_tokens * c.intermediate_size);
  grow(positions_, num_tokens);
  grow(last_, num_rows * c.hidden_size);
  grow(logits_, num_rows * c.vocab_size);

  embed(seqs, num_tokens);
  if (dist_.recv_hidden) dist_.recv_hidden(x_.data(), num_tokens * c.hidden_size);  // PP stage > 0
  for (int64_t l = 0; l < c.num_layers; ++l) layer(l, attn_seqs_, num_tokens, cache);
  if (dist_.send_hidden) {  // PP: not the last stage; the next stage continues from x_
    dist_.send_hidden(x_.data(), num_tokens * c.hidden_size);
    return std::span<const float>();
  }

  // Final norm and LM head only for the rows that need logits.
  int64_t row = 0;
  for (size_t i = 0; i < seqs.size(); ++i) {
    const cpu::AttentionSeq& a = attn_seqs_[i];
    const int64_t first = seqs[i].all_logits ? a.token_begin : a.token_begin + a.num_new - 1;
    const int64_t count = seqs[i].all_logits ? a.num_new : 1;
    std::copy_n(x_.data() + first * c.hidden_size, count * c.hidden_size,
                last_.data() + row * c.hidden_size);
    row += count;
  }
  norm(last_.data(), output_norm_, output_norm_bias_, num_rows, last_.data());
  cpu::matmul(view_of(model_.weights.output), last_.data(), num_rows, logits_.data(), *pool_);
  return std::span<const float>(logits_.data(), num_rows * c.vocab_size);
}

}  // namespace fs
