// AVX2 kernels for the 32-element block types: Q8_0 and Q4_0 weights x Q8_0 activations, Q4_1 x
// Q8_1. A tile of NR rows x NT tokens loads each weight block once and each activation block once
// per block column; the int8 products use _mm256_maddubs_epi16 (u8 x s8), with the sign trick |w| *
// sign(x, w) for signed weights, as in ggml's AVX2 path. Also the table avx2_kernels().
#include <cmath>

#include "backend/cpu/matmul_kernels.h"
#include "backend/cpu/quant_blocks.h"
#include "backend/cpu/simd_avx2.h"
#include "core/check.h"

namespace fs::cpu {
namespace {

using avx2::half_to_float;

// Signed int8 weights (Q8_0 as is, Q4_0 as nibble - 8) against Q8_0 activations.
template <typename WB, int NR, int NT>
void tile_signed(int64_t cols, const uint8_t* w, int64_t w_stride, const uint8_t* x,
                 int64_t x_stride, float* y, int64_t ldy) {
  const int64_t nb = cols / kQK;
  __m256 acc[NR][NT];
  for (int r = 0; r < NR; ++r)
    for (int t = 0; t < NT; ++t) acc[r][t] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    __m256i xq[NT];
    float xd[NT];
    for (int t = 0; t < NT; ++t) {
      const BlockQ8_0& xb = reinterpret_cast<const BlockQ8_0*>(x + t * x_stride)[b];
      xq[t] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb.qs));
      xd[t] = half_to_float(xb.d);
    }
    for (int r = 0; r < NR; ++r) {
      const WB& wb = reinterpret_cast<const WB*>(w + r * w_stride)[b];
      avx2::prefetch_ahead(&wb, w_stride);
      __m256i wq;
      if constexpr (sizeof(WB) == sizeof(BlockQ8_0)) {
        wq = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wb.qs));
      } else {
        wq = _mm256_sub_epi8(avx2::unpack_nibbles(wb.qs), _mm256_set1_epi8(8));
      }
      const __m256i wabs = _mm256_sign_epi8(wq, wq);
      const float wd = half_to_float(wb.d);
      for (int t = 0; t < NT; ++t) {
        const __m256i dot = avx2::dot_u8_s8(wabs, _mm256_sign_epi8(xq[t], wq));
        acc[r][t] = _mm256_fmadd_ps(_mm256_set1_ps(wd * xd[t]), _mm256_cvtepi32_ps(dot), acc[r][t]);
      }
    }
  }
  for (int t = 0; t < NT; ++t)
    for (int r = 0; r < NR; ++r) y[t * ldy + r] = avx2::hsum(acc[r][t]);
}

template <int NR, int NT>
struct TileQ8_0 {
  static void run(int64_t cols, const uint8_t* w, int64_t ws, const uint8_t* x, int64_t xs,
                  float* y, int64_t ldy) {
    tile_signed<BlockQ8_0, NR, NT>(cols, w, ws, x, xs, y, ldy);
  }
};
template <int NR, int NT>
struct TileQ4_0 {
  static void run(int64_t cols, const uint8_t* w, int64_t ws, const uint8_t* x, int64_t xs,
                  float* y, int64_t ldy) {
    tile_signed<BlockQ4_0, NR, NT>(cols, w, ws, x, xs, y, ldy);
  }
};

// Q4_1 (unsigned nibbles, scale d and min m) against Q8_1: d_w*d_x*dot + m_w*s_x per block.
template <int NR, int NT>
struct TileQ4_1 {
  static void run(int64_t cols, const uint8_t* w, int64_t w_stride, const uint8_t* x,
                  int64_t x_stride, float* y, int64_t ldy) {
    const int64_t nb = cols / kQK;
    __m256 acc[NR][NT];
    float summ[NR][NT] = {};
    for (int r = 0; r < NR; ++r)
      for (int t = 0; t < NT; ++t) acc[r][t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
      __m256i xq[NT];
      float xd[NT], xs[NT];
      for (int t = 0; t < NT; ++t) {
        const BlockQ8_1& xb = reinterpret_cast<const BlockQ8_1*>(x + t * x_stride)[b];
        xq[t] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb.qs));
        xd[t] = half_to_float(xb.d);
        xs[t] = half_to_float(xb.s);
      }
      for (int r = 0; r < NR; ++r) {
        const BlockQ4_1& wb = reinterpret_cast<const BlockQ4_1*>(w + r * w_stride)[b];
        avx2::prefetch_ahead(&wb, w_stride);
        const __m256i wq = avx2::unpack_nibbles(wb.qs);
        const float wd = half_to_float(wb.d), wm = half_to_float(wb.m);
        for (int t = 0; t < NT; ++t) {
          const __m256i dot = avx2::dot_u8_s8(wq, xq[t]);
          acc[r][t] =
              _mm256_fmadd_ps(_mm256_set1_ps(wd * xd[t]), _mm256_cvtepi32_ps(dot), acc[r][t]);
          summ[r][t] += wm * xs[t];
        }
      }
    }
    for (int t = 0; t < NT; ++t)
      for (int r = 0; r < NR; ++r) y[t * ldy + r] = avx2::hsum(acc[r][t]) + summ[r][t];
  }
};

// Rounds 32 floats scaled by id to int8 (round to nearest even) in element order; returns the
// 8 x int32 partial sums of the rounded values (for Q8_1's s).
inline __m256i quantize_32(const float* x, float id, int8_t* out) {
  const __m256 mul = _mm256_set1_ps(id);
  __m256i i[4];
  for (int k = 0; k < 4; ++k) {
    const __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + 8 * k), mul);
    i[k] = _mm256_cvtps_epi32(_mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }
  const __m256i sum = _mm256_add_epi32(_mm256_add_epi32(i[0], i[1]), _mm256_add_epi32(i[2], i[3]));
  // packs work per 128-bit lane; the final permute restores element order.
  const __m256i p01 = _mm256_packs_epi32(i[0], i[1]);
  const __m256i p23 = _mm256_packs_epi32(i[2], i[3]);
  __m256i q = _mm256_packs_epi16(p01, p23);
  q = _mm256_permutevar8x32_epi32(q, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), q);
  return sum;
}

inline float abs_max_32(const float* x) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  __m256 m = _mm256_andnot_ps(sign, _mm256_loadu_ps(x));
  for (int k = 1; k < 4; ++k)
    m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + 8 * k)));
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

void quantize_row_q8_0(const float* x, void* out, int64_t cols) {
  auto* y = static_cast<BlockQ8_0*>(out);
  for (int64_t b = 0; b < cols / kQK; ++b) {
    const float d = abs_max_32(x + b * kQK) / 127.0f;
    y[b].d = static_cast<uint16_t>(_cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT));
    quantize_32(x + b * kQK, d != 0.0f ? 1.0f / d : 0.0f, y[b].qs);
  }
}

void quantize_row_q8_1(const float* x, void* out, int64_t cols) {
  auto* y = static_cast<BlockQ8_1*>(out);
  for (int64_t b = 0; b < cols / kQK; ++b) {
    const float d = abs_max_32(x + b * kQK) / 127.0f;
    y[b].d = static_cast<uint16_t>(_cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT));
    const __m256i sum = quantize_32(x + b * kQK, d != 0.0f ? 1.0f / d : 0.0f, y[b].qs);
    y[b].s = static_cast<uint16_t>(
        _cvtss_sh(static_cast<float>(avx2::hsum_i32(sum)) * d, _MM_FROUND_TO_NEAREST_INT));
  }
}

constexpr MatmulKernels kQ8_0{DType::kQ8_0, quantize_row_q8_0, TileDispatch<TileQ8_0>::tile};
constexpr MatmulKernels kQ4_0{DType::kQ8_0, quantize_row_q8_0, TileDispatch<TileQ4_0>::tile};
constexpr MatmulKernels kQ4_1{DType::kQ8_1, quantize_row_q8_1, TileDispatch<TileQ4_1>::tile};

}  // namespace

const MatmulKernels& avx2_kernels(DType t) {
  switch (t) {
    case DType::kQ8_0:
      return kQ8_0;
    case DType::kQ4_0:
      return kQ4_0;
    case DType::kQ4_1:
      return kQ4_1;
    case DType::kF32:
    case DType::kF16:
    case DType::kBF16:
      return avx2_float_kernels(t);
    case DType::kQ4_K:
    case DType::kQ6_K:
      return avx2_kquant_kernels(t);
    case DType::kQ8_1:
    case DType::kQ8_K:
      break;
  }
  FS_CHECK(false, "matmul: unsupported weight dtype {}", dtype_name(t));
  std::abort();
}

}  // namespace fs::cpu
