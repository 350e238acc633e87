// Element-wise and normalisation ops of the forward pass (f32 activations). Each op is a plain loop
// over rows, threaded over the pool where rows are many. Shapes are given per argument.
#pragma once

#include <cstdint>
#include <vector>

#include "core/thread_pool.h"

namespace fs::cpu {

// y[t, :] = x[t, :] / rms(x[t, :]) * weight. x, y: [num_tokens, dim]; weight: [dim]. y may alias x.
void rms_norm(const float* x, const float* weight, int64_t num_tokens, int64_t dim, float eps,
              float* y);

// y[t, :] = (x[t, :] - mean) / sqrt(var + eps) * weight + bias. Shapes as rms_norm; bias may be
// null.
void layer_norm(const float* x, const float* weight, const float* bias, int64_t num_tokens,
                int64_t dim, float eps, float* y);

// x[t, :] += bias[:] for t < num_tokens. x: [num_tokens, dim].
void add_bias(float* x, const float* bias, int64_t num_tokens, int64_t dim);

// x[i] += y[i], i < n.
void add_inplace(float* x, const float* y, int64_t n);

// gate[i] = silu(gate[i]) * up[i], i < n.
void silu_mul(float* gate, const float* up, int64_t n);

// x[i] = max(x[i], 0).
void relu_inplace(float* x, int64_t n);

// How a head's dimensions are paired for rotation.
enum class RopeStyle {
  kInterleaved,  // pairs (2i, 2i+1): llama.cpp's "normal" rope, used by GGUF Llama (Q/K rows
                 // permuted)
  kNeox,         // pairs (i, i + d/2): HF Llama/Qwen2/Mistral, llama.cpp's NEOX rope
};

// Precomputed inverse frequencies of one head: inv_freq[i] for i < rotary_dim / 2. Rope scaling
// (linear, llama3) is folded into these by the caller (model code), so this op stays one formula.
struct RopeTable {
  RopeStyle style = RopeStyle::kNeox;
  int64_t head_dim = 0;
  std::vector<float> inv_freq;  // [head_dim / 2]
};

// Rotates x in place: x: [num_tokens, num_heads, head_dim]; positions: [num_tokens].
void apply_rope(const RopeTable& rope, float* x, const int32_t* positions, int64_t num_tokens,
                int64_t num_heads);

// log(sum_i exp(x[i])) over n > 0 values, in f32 (max-shifted; AVX2 when available): the
// log-normalizer of a row of logits.
float log_sum_exp(const float* x, int64_t n);

// Numerically stable in-place softmax over n values; returns nothing, x sums to 1 afterwards.
void softmax_inplace(float* x, int64_t n);

}  // namespace fs::cpu
