// AVX2+FMA pieces of the attention (compiled with -mavx2 -mfma; called only when the CPU has them).
#include <immintrin.h>

#include <cmath>
#include <cstdint>

#include "backend/cpu/simd_avx2.h"

namespace fs::cpu {

using avx2::exp_ps;
using avx2::hsum;

// scores[i] = exp(scores[i] - max_score); returns their sum.
float softmax_exp_avx2(float* scores, int64_t n, float max_score) {
  const __m256 m = _mm256_set1_ps(max_score);
  __m256 sum = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 e = exp_ps(_mm256_sub_ps(_mm256_loadu_ps(scores + i), m));
    _mm256_storeu_ps(scores + i, e);
    sum = _mm256_add_ps(sum, e);
  }
  float total = hsum(sum);
  for (; i < n; ++i) total += (scores[i] = std::exp(scores[i] - max_score));
  return total;
}

// scores[i] = scale * (q . k_i), k_i = k + i * k_stride, for i < n. hd: a multiple of 8. Eight
// keys at a time (eight independent FMA chains), reduced to one vector with a hadd tree.
void attn_scores_avx2(const float* q, const float* k, int64_t k_stride, int64_t n, int64_t hd,
                      float scale, float* scores) {
  const __m256 sc = _mm256_set1_ps(scale);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 a[8];
    for (int j = 0; j < 8; ++j) a[j] = _mm256_setzero_ps();
    for (int64_t d = 0; d < hd; d += 8) {
      const __m256 qv = _mm256_loadu_ps(q + d);
      for (int j = 0; j < 8; ++j) {
        a[j] = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k + (i + j) * k_stride + d), a[j]);
      }
    }
    // hadd tree: t2 = [s0 s1 s2 s3 | s0' s1' s2' s3'] (halves per 128-bit lane), likewise t5.
    const __m256 t0 = _mm256_hadd_ps(a[0], a[1]), t1 = _mm256_hadd_ps(a[2], a[3]);
    const __m256 t3 = _mm256_hadd_ps(a[4], a[5]), t4 = _mm256_hadd_ps(a[6], a[7]);
    const __m256 t2 = _mm256_hadd_ps(t0, t1), t5 = _mm256_hadd_ps(t3, t4);
    // [lo(t2) lo(t5)] + [hi(t2) hi(t5)] = [s0..s3, s4..s7].
    const __m256 lo = _mm256_permute2f128_ps(t2, t5, 0x20),
                 hi = _mm256_permute2f128_ps(t2, t5, 0x31);
    _mm256_storeu_ps(scores + i, _mm256_mul_ps(_mm256_add_ps(lo, hi), sc));
  }
  for (; i < n; ++i) {
    __m256 a = _mm256_setzero_ps();
    for (int64_t d = 0; d < hd; d += 8) {
      a = _mm256_fmadd_ps(_mm256_loadu_ps(q + d), _mm256_loadu_ps(k + i * k_stride + d), a);
    }
    scores[i] = hsum(a) * scale;
  }
}

// acc[d] += sum_i w[i] * v_i[d], v_i = v + i * v_stride, for d < hd (a multiple of 8). 64 columns
// at a time stay in eight registers across all n rows.
void attn_accumulate_avx2(const float* w, const float* v, int64_t v_stride, int64_t n, int64_t hd,
                          float* acc) {
  int64_t d = 0;
  for (; d + 64 <= hd; d += 64) {
    __m256 a[8];
    for (int j = 0; j < 8; ++j) a[j] = _mm256_loadu_ps(acc + d + 8 * j);
    for (int64_t i = 0; i < n; ++i) {
      const __m256 wi = _mm256_broadcast_ss(w + i);
      const float* vi = v + i * v_stride + d;
      for (int j = 0; j < 8; ++j) a[j] = _mm256_fmadd_ps(wi, _mm256_loadu_ps(vi + 8 * j), a[j]);
    }
    for (int j = 0; j < 8; ++j) _mm256_storeu_ps(acc + d + 8 * j, a[j]);
  }
  for (; d < hd; d += 8) {
    __m256 a = _mm256_loadu_ps(acc + d);
    for (int64_t i = 0; i < n; ++i) {
      a = _mm256_fmadd_ps(_mm256_broadcast_ss(w + i), _mm256_loadu_ps(v + i * v_stride + d), a);
    }
    _mm256_storeu_ps(acc + d, a);
  }
}

}  // namespace fs::cpu
