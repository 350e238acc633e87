#include "backend/cpu/ops.h"

#include <algorithm>
#include <cmath>

#include "backend/cpu/matmul_kernels.h"

namespace fs::cpu {

// AVX2+FMA versions (ops_avx2.cc), used when the matmuls use AVX2 (use_avx2_kernels).
void silu_mul_avx2(float* gate, const float* up, int64_t n);
float log_sum_exp_avx2(const float* x, int64_t n);

void rms_norm(const float* x, const float* weight, int64_t num_tokens, int64_t dim, float eps,
              float* y) {
  for (int64_t t = 0; t < num_tokens; ++t) {
    const float* xr = x + t * dim;
    float* yr = y + t * dim;
    double sum_sq = 0.0;
    for (int64_t i = 0; i < dim; ++i) sum_sq += static_cast<double>(xr[i]) * xr[i];
    const float scale = static_cast<float>(1.0 / std::sqrt(sum_sq / dim + eps));
    for (int64_t i = 0; i < dim; ++i) yr[i] = xr[i] * scale * weight[i];
  }
}

void layer_norm(const float* x, const float* weight, const float* bias, int64_t num_tokens,
                int64_t dim, float eps, float* y) {
  for (int64_t t = 0; t < num_tokens; ++t) {
    const float* xr = x + t * dim;
    float* yr = y + t * dim;
    double sum = 0.0;
    for (int64_t i = 0; i < dim; ++i) sum += xr[i];
    const double mean = sum / dim;
    double var = 0.0;
    for (int64_t i = 0; i < dim; ++i) var += (xr[i] - mean) * (xr[i] - mean);
    const float inv_std = static_cast<float>(1.0 / std::sqrt(var / dim + eps));
    const float mean_f = static_cast<float>(mean);
    for (int64_t i = 0; i < dim; ++i) {
      yr[i] = (xr[i] - mean_f) * inv_std * weight[i] + (bias ? bias[i] : 0.0f);
    }
  }
}

void add_bias(float* x, const float* bias, int64_t num_tokens, int64_t dim) {
  for (int64_t t = 0; t < num_tokens; ++t) {
    float* xr = x + t * dim;
    for (int64_t i = 0; i < dim; ++i) xr[i] += bias[i];
  }
}

void add_inplace(float* x, const float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] += y[i];
}

void silu_mul(float* gate, const float* up, int64_t n) {
  if (use_avx2_kernels()) return silu_mul_avx2(gate, up, n);
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    gate[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

void relu_inplace(float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] = std::max(x[i], 0.0f);
}

void apply_rope(const RopeTable& rope, float* x, const int32_t* positions, int64_t num_tokens,
                int64_t num_heads) {
  const int64_t d = rope.head_dim;
  const int64_t half = d / 2;
  for (int64_t t = 0; t < num_tokens; ++t) {
    const float pos = static_cast<float>(positions[t]);
    for (int64_t i = 0; i < half; ++i) {
      // The angle is a float product, as transformers computes it (pos * inv_freq in f32).
      const float angle = pos * rope.inv_freq[i];
      const float c = static_cast<float>(std::cos(angle));
      const float s = static_cast<float>(std::sin(angle));
      for (int64_t h = 0; h < num_heads; ++h) {
        float* head = x + (t * num_heads + h) * d;
        const int64_t a = rope.style == RopeStyle::kInterleaved ? 2 * i : i;
        const int64_t b = rope.style == RopeStyle::kInterleaved ? 2 * i + 1 : i + half;
        const float x0 = head[a], x1 = head[b];
        head[a] = x0 * c - x1 * s;
        head[b] = x0 * s + x1 * c;
      }
    }
  }
}

float log_sum_exp(const float* x, int64_t n) {
  if (use_avx2_kernels()) return log_sum_exp_avx2(x, n);
  float max_v = -INFINITY;
  for (int64_t i = 0; i < n; ++i) max_v = std::max(max_v, x[i]);
  if (!std::isfinite(max_v)) return max_v;
  float sum = 0.0f;
  for (int64_t i = 0; i < n; ++i) sum += std::exp(x[i] - max_v);
  return max_v + std::log(sum);
}

void softmax_inplace(float* x, int64_t n) {
  float max_v = -INFINITY;
  for (int64_t i = 0; i < n; ++i) max_v = std::max(max_v, x[i]);
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - max_v);
    sum += x[i];
  }
  const float inv = static_cast<float>(1.0 / sum);
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

}  // namespace fs::cpu
