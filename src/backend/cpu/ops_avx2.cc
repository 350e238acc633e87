// AVX2+FMA versions of element-wise ops (compiled with -mavx2 -mfma; called only when the CPU has
// them, from ops.cc).
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "backend/cpu/simd_avx2.h"

namespace fs::cpu {

// gate[i] = gate[i] / (1 + exp(-gate[i])) * up[i].
void silu_mul_avx2(float* gate, const float* up, int64_t n) {
  const __m256 one = _mm256_set1_ps(1.0f), sign = _mm256_set1_ps(-0.0f);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 g = _mm256_loadu_ps(gate + i);
    const __m256 e = avx2::exp_ps(_mm256_xor_ps(g, sign));
    const __m256 s = _mm256_div_ps(g, _mm256_add_ps(one, e));
    _mm256_storeu_ps(gate + i, _mm256_mul_ps(s, _mm256_loadu_ps(up + i)));
  }
  for (; i < n; ++i) gate[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

// log(sum_i exp(x[i])), computed as max + log(sum exp(x - max)) in f32.
float log_sum_exp_avx2(const float* x, int64_t n) {
  __m256 mv = _mm256_set1_ps(-INFINITY);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) mv = _mm256_max_ps(mv, _mm256_loadu_ps(x + i));
  __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(mv), _mm256_extractf128_ps(mv, 1));
  m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
  m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
  float max_v = _mm_cvtss_f32(m4);
  for (; i < n; ++i) max_v = std::max(max_v, x[i]);
  if (!std::isfinite(max_v)) return max_v;
  const __m256 m = _mm256_set1_ps(max_v);
  __m256 sum0 = _mm256_setzero_ps(), sum1 = _mm256_setzero_ps();
  i = 0;
  for (; i + 16 <= n; i += 16) {
    sum0 = _mm256_add_ps(sum0, avx2::exp_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), m)));
    sum1 = _mm256_add_ps(sum1, avx2::exp_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i + 8), m)));
  }
  for (; i + 8 <= n; i += 8) {
    sum0 = _mm256_add_ps(sum0, avx2::exp_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), m)));
  }
  float sum = avx2::hsum(_mm256_add_ps(sum0, sum1));
  for (; i < n; ++i) sum += std::exp(x[i] - max_v);
  return max_v + std::log(sum);
}

}  // namespace fs::cpu
