// AVX-512F attention kernels (head_dim a multiple of 16; called only when use_avx512_kernels()).
// The AVX2 kernels serve one query head per call, so each K/V row of a run is loaded once per head
// of the GQA group (3 times for SmolLM2) and scores of 8 keys are reduced per head. Here one pass
// over the run serves up to 3 heads: 8 keys x 3 heads = 24 zmm accumulators for the scores (16
// lanes of partial dot products each, reduced to 8 scores per head by a shuffle tree), 3 x 4 zmm
// accumulators for the weighted V sum at head_dim 64. Summation order differs from the AVX2 kernels
// (16 lanes, not 8) by f32 rounding; every path of paged_attention calls the same kernels, so
// outputs stay batch-invariant. K/V rows of f16 pools are widened in registers (vcvtph2ps).
// GCC 12's avx512fintrin.h builds _mm512_undefined_* from a self-initialized variable, which
// -Wuninitialized reports at every 512-bit conversion/reduction (a known false positive).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include <algorithm>

#include "backend/cpu/attention_kernels.h"

namespace fs::cpu {

float softmax_exp_avx2(float* scores, int64_t n, float max_score);  // attention_avx2.cc

namespace {

constexpr int kMaxHeads = 3;

inline __m512 load16(const float* p) { return _mm512_loadu_ps(p); }
inline __m512 load16(const uint16_t* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}  // query heads per pass: 8 keys x 3 heads = 24 accumulators

// The 16-lane sums of a[0..7], as 8 floats in order. Three shuffle levels, each halving the
// vectors: 512 -> 256 bits per key (pairs j, j + 4), then 4-lane sums within 128-bit lanes.
inline __m256 reduce8(const __m512* a) {
  __m512 b[4];  // low half: 8 lanes of key j; high half: 8 lanes of key j + 4
  for (int j = 0; j < 4; ++j) {
    b[j] = _mm512_add_ps(_mm512_shuffle_f32x4(a[j], a[j + 4], 0x44),
                         _mm512_shuffle_f32x4(a[j], a[j + 4], 0xEE));
  }
  const __m512 t0 =
      _mm512_add_ps(_mm512_shuffle_ps(b[0], b[1], 0x44), _mm512_shuffle_ps(b[0], b[1], 0xEE));
  const __m512 t1 =
      _mm512_add_ps(_mm512_shuffle_ps(b[2], b[3], 0x44), _mm512_shuffle_ps(b[2], b[3], 0xEE));
  // u, 128-bit lane L: [b0, b1, b2, b3] partial sums; lanes 0-1 hold keys 0-3, lanes 2-3 keys 4-7.
  const __m512 u = _mm512_add_ps(_mm512_shuffle_ps(t0, t1, 0x88), _mm512_shuffle_ps(t0, t1, 0xDD));
  const __m512 s =
      _mm512_add_ps(_mm512_shuffle_f32x4(u, u, 0x08), _mm512_shuffle_f32x4(u, u, 0x0D));
  return _mm512_castps512_ps256(s);
}

template <int G, typename T>
void scores_heads(const float* q, const T* k, int64_t k_stride, int64_t n, int64_t hd, float scale,
                  float* scores, int64_t s_stride) {
  const __m256 sc = _mm256_set1_ps(scale);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m512 a[G][8];
    for (int h = 0; h < G; ++h)
      for (int j = 0; j < 8; ++j) a[h][j] = _mm512_setzero_ps();
    const T* ki = k + i * k_stride;
    for (int64_t d = 0; d < hd; d += 16) {
      __m512 qv[G];
      for (int h = 0; h < G; ++h) qv[h] = _mm512_loadu_ps(q + h * hd + d);
      for (int j = 0; j < 8; ++j) {
        const __m512 kv = load16(ki + j * k_stride + d);
        for (int h = 0; h < G; ++h) a[h][j] = _mm512_fmadd_ps(qv[h], kv, a[h][j]);
      }
    }
    for (int h = 0; h < G; ++h)
      _mm256_storeu_ps(scores + h * s_stride + i, _mm256_mul_ps(reduce8(a[h]), sc));
  }
  for (; i < n; ++i) {
    __m512 a[G];
    for (int h = 0; h < G; ++h) a[h] = _mm512_setzero_ps();
    for (int64_t d = 0; d < hd; d += 16) {
      const __m512 kv = load16(k + i * k_stride + d);
      for (int h = 0; h < G; ++h) a[h] = _mm512_fmadd_ps(_mm512_loadu_ps(q + h * hd + d), kv, a[h]);
    }
    for (int h = 0; h < G; ++h) scores[h * s_stride + i] = _mm512_reduce_add_ps(a[h]) * scale;
  }
}

template <typename T>
void attn_scores_avx512(const float* q, int64_t group, const void* kv, int64_t k_stride, int64_t n,
                        int64_t hd, float scale, float* scores, int64_t s_stride) {
  const T* k = static_cast<const T*>(kv);
  for (int64_t h0 = 0; h0 < group; h0 += kMaxHeads) {
    const float* qh = q + h0 * hd;
    float* sh = scores + h0 * s_stride;
    switch (std::min<int64_t>(group - h0, kMaxHeads)) {
      case 1:
        scores_heads<1>(qh, k, k_stride, n, hd, scale, sh, s_stride);
        break;
      case 2:
        scores_heads<2>(qh, k, k_stride, n, hd, scale, sh, s_stride);
        break;
      default:
        scores_heads<3>(qh, k, k_stride, n, hd, scale, sh, s_stride);
        break;
    }
  }
}

// D zmm registers (16 * D columns) per head, G heads.
template <int G, int D, typename T>
void accumulate_heads(const float* w, int64_t w_stride, const T* v, int64_t v_stride, int64_t n,
                      float* acc, int64_t a_stride) {
  __m512 a[G][D];
  for (int h = 0; h < G; ++h)
    for (int j = 0; j < D; ++j) a[h][j] = _mm512_loadu_ps(acc + h * a_stride + 16 * j);
  for (int64_t i = 0; i < n; ++i) {
    __m512 vv[D];
    for (int j = 0; j < D; ++j) vv[j] = load16(v + i * v_stride + 16 * j);
    for (int h = 0; h < G; ++h) {
      const __m512 wb = _mm512_set1_ps(w[h * w_stride + i]);
      for (int j = 0; j < D; ++j) a[h][j] = _mm512_fmadd_ps(wb, vv[j], a[h][j]);
    }
  }
  for (int h = 0; h < G; ++h)
    for (int j = 0; j < D; ++j) _mm512_storeu_ps(acc + h * a_stride + 16 * j, a[h][j]);
}

template <int G, typename T>
void accumulate_cols(const float* w, int64_t w_stride, const T* v, int64_t v_stride, int64_t n,
                     int64_t hd, float* acc, int64_t a_stride) {
  int64_t d = 0;
  for (; d + 64 <= hd; d += 64)
    accumulate_heads<G, 4, T>(w, w_stride, v + d, v_stride, n, acc + d, a_stride);
  for (; d < hd; d += 16)
    accumulate_heads<G, 1, T>(w, w_stride, v + d, v_stride, n, acc + d, a_stride);
}

template <typename T>
void attn_accumulate_avx512(const float* w, int64_t w_stride, int64_t group, const void* vv,
                            int64_t v_stride, int64_t n, int64_t hd, float* acc, int64_t a_stride) {
  const T* v = static_cast<const T*>(vv);
  for (int64_t h0 = 0; h0 < group; h0 += kMaxHeads) {
    const float* wh = w + h0 * w_stride;
    float* ah = acc + h0 * a_stride;
    switch (std::min<int64_t>(group - h0, kMaxHeads)) {
      case 1:
        accumulate_cols<1>(wh, w_stride, v, v_stride, n, hd, ah, a_stride);
        break;
      case 2:
        accumulate_cols<2>(wh, w_stride, v, v_stride, n, hd, ah, a_stride);
        break;
      default:
        accumulate_cols<3>(wh, w_stride, v, v_stride, n, hd, ah, a_stride);
        break;
    }
  }
}

}  // namespace

AttnKernels attn_kernels_avx512(KvDtype dtype) {
  switch (dtype) {
    case KvDtype::kF32:
      return {attn_scores_avx512<float>, attn_accumulate_avx512<float>, softmax_exp_avx2};
    case KvDtype::kF16:
      break;
  }
  return {attn_scores_avx512<uint16_t>, attn_accumulate_avx512<uint16_t>, softmax_exp_avx2};
}

}  // namespace fs::cpu
