// AVX2+FMA pieces of the attention (compiled with -mavx2 -mfma; called only when the CPU has them).
#include <immintrin.h>

#include <cmath>
#include <cstdint>

#include "backend/cpu/attention_kernels.h"
#include "backend/cpu/simd_avx2.h"

namespace fs::cpu {

using avx2::exp_ps;
using avx2::hsum;

namespace {

inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
inline __m256 load8(const uint16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

}  // namespace

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
template <typename T>
void attn_scores_avx2(const float* q, const T* k, int64_t k_stride, int64_t n, int64_t hd,
                      float scale, float* scores) {
  const __m256 sc = _mm256_set1_ps(scale);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 a[8];
    for (int j = 0; j < 8; ++j) a[j] = _mm256_setzero_ps();
    for (int64_t d = 0; d < hd; d += 8) {
      const __m256 qv = _mm256_loadu_ps(q + d);
      for (int j = 0; j < 8; ++j) {
        a[j] = _mm256_fmadd_ps(qv, load8(k + (i + j) * k_stride + d), a[j]);
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
      a = _mm256_fmadd_ps(_mm256_loadu_ps(q + d), load8(k + i * k_stride + d), a);
    }
    scores[i] = hsum(a) * scale;
  }
}

// acc[d] += sum_i w[i] * v_i[d], v_i = v + i * v_stride, for d < hd (a multiple of 8). 64 columns
// at a time stay in eight registers across all n rows.
template <typename T>
void attn_accumulate_avx2(const float* w, const T* v, int64_t v_stride, int64_t n, int64_t hd,
                          float* acc) {
  int64_t d = 0;
  for (; d + 64 <= hd; d += 64) {
    __m256 a[8];
    for (int j = 0; j < 8; ++j) a[j] = _mm256_loadu_ps(acc + d + 8 * j);
    for (int64_t i = 0; i < n; ++i) {
      const __m256 wi = _mm256_broadcast_ss(w + i);
      const T* vi = v + i * v_stride + d;
      for (int j = 0; j < 8; ++j) a[j] = _mm256_fmadd_ps(wi, load8(vi + 8 * j), a[j]);
    }
    for (int j = 0; j < 8; ++j) _mm256_storeu_ps(acc + d + 8 * j, a[j]);
  }
  for (; d < hd; d += 8) {
    __m256 a = _mm256_loadu_ps(acc + d);
    for (int64_t i = 0; i < n; ++i) {
      a = _mm256_fmadd_ps(_mm256_broadcast_ss(w + i), load8(v + i * v_stride + d), a);
    }
    _mm256_storeu_ps(acc + d, a);
  }
}

namespace {

// One query head per call: the run is read from L1 again for every head of the group.
template <typename T>
void attn_scores_heads_avx2(const float* q, int64_t group, const void* k, int64_t k_stride,
                            int64_t n, int64_t hd, float scale, float* scores, int64_t s_stride) {
  for (int64_t h = 0; h < group; ++h) {
    attn_scores_avx2(q + h * hd, static_cast<const T*>(k), k_stride, n, hd, scale,
                     scores + h * s_stride);
  }
}

template <typename T>
void attn_accumulate_heads_avx2(const float* w, int64_t w_stride, int64_t group, const void* v,
                                int64_t v_stride, int64_t n, int64_t hd, float* acc,
                                int64_t a_stride) {
  for (int64_t h = 0; h < group; ++h) {
    attn_accumulate_avx2(w + h * w_stride, static_cast<const T*>(v), v_stride, n, hd,
                         acc + h * a_stride);
  }
}

}  // namespace

AttnKernels attn_kernels_avx2(KvDtype dtype) {
  switch (dtype) {
    case KvDtype::kF32:
      return {attn_scores_heads_avx2<float>, attn_accumulate_heads_avx2<float>, softmax_exp_avx2};
    case KvDtype::kF16:
      break;
  }
  return {attn_scores_heads_avx2<uint16_t>, attn_accumulate_heads_avx2<uint16_t>, softmax_exp_avx2};
}

// F16C rounds to nearest even, as fp32_to_fp16.
void f32_to_f16_row_avx2(const float* src, uint16_t* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i),
                     _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
  }
  for (; i < n; ++i) {
    dst[i] = static_cast<uint16_t>(
        _mm_extract_epi16(_mm_cvtps_ph(_mm_set_ss(src[i]), _MM_FROUND_TO_NEAREST_INT), 0));
  }
}

}  // namespace fs::cpu
