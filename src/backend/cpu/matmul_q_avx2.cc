// AVX2 kernels for the 32-element block types: Q8_0 and Q4_0 weights x Q8_0 activations, Q4_1 x
// Q8_1. A tile of NR rows x NT tokens loads each weight block once and each activation block once
// per block column; the int8 products use _mm256_maddubs_epi16 (u8 x s8), with the sign trick |w| *
// sign(x, w) for signed weights, as in ggml's AVX2 path. Also the table avx2_kernels().
#include <cmath>
#include <type_traits>

#include "backend/cpu/matmul_kernels.h"
#include "backend/cpu/quant_blocks.h"
#include "backend/cpu/simd_avx2.h"
#include "core/check.h"

namespace fs::cpu {
namespace {

// Q8_0 weights x Q8_0 activations: signed x signed via |w| * sign(x, w).
template <int NR, int NT>
struct TileQ8_0 {
  static void run(int64_t cols, const uint8_t* w, int64_t w_stride, const uint8_t* x,
                  int64_t x_stride, float* y, int64_t ldy) {
    const int64_t nb = cols / kQK;
    __m256 acc[NR][NT];
    for (int r = 0; r < NR; ++r)
      for (int t = 0; t < NT; ++t) acc[r][t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
      __m256i xq[NT];
      __m128 xd[NT];
      for (int t = 0; t < NT; ++t) {
        const BlockQ8_0& xb = reinterpret_cast<const BlockQ8_0*>(x + t * x_stride)[b];
        xq[t] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb.qs));
        xd[t] = avx2::load_2xf16(&xb.d);
      }
      for (int r = 0; r < NR; ++r) {
        const BlockQ8_0& wb = reinterpret_cast<const BlockQ8_0*>(w + r * w_stride)[b];
        avx2::prefetch_ahead(&wb, w_stride);
        const __m256i wq = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wb.qs));
        const __m256i wabs = _mm256_sign_epi8(wq, wq);
        const __m128 wd = avx2::load_2xf16(&wb.d);
        for (int t = 0; t < NT; ++t) {
          const __m256i dot = avx2::dot_u8_s8(wabs, _mm256_sign_epi8(xq[t], wq));
          const __m256 d = _mm256_broadcastss_ps(_mm_mul_ss(wd, xd[t]));
          acc[r][t] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot), acc[r][t]);
        }
      }
    }
    for (int t = 0; t < NT; ++t)
      for (int r = 0; r < NR; ++r) y[t * ldy + r] = avx2::hsum(acc[r][t]);
  }
};

// Q4_0 weights x Q8_0 activations. The nibbles u = w + 8 are unsigned, so maddubs(u, x) needs no
// sign trick; the offset 8 * sum(x) is computed once per activation block and subtracted per row.
template <int NR, int NT>
struct TileQ4_0 {
  static void run(int64_t cols, const uint8_t* w, int64_t w_stride, const uint8_t* x,
                  int64_t x_stride, float* y, int64_t ldy) {
    const int64_t nb = cols / kQK;
    const __m256i eights = _mm256_set1_epi8(8);
    __m256 acc[NR][NT];
    for (int r = 0; r < NR; ++r)
      for (int t = 0; t < NT; ++t) acc[r][t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
      __m256i xq[NT], offset[NT];
      __m128 xd[NT];
      for (int t = 0; t < NT; ++t) {
        const BlockQ8_0& xb = reinterpret_cast<const BlockQ8_0*>(x + t * x_stride)[b];
        xq[t] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb.qs));
        offset[t] = avx2::dot_u8_s8(eights, xq[t]);
        xd[t] = avx2::load_2xf16(&xb.d);
      }
      for (int r = 0; r < NR; ++r) {
        const BlockQ4_0& wb = reinterpret_cast<const BlockQ4_0*>(w + r * w_stride)[b];
        avx2::prefetch_ahead(&wb, w_stride);
        const __m256i wq = avx2::unpack_nibbles_bcast(wb.qs);
        const __m128 wd = avx2::load_2xf16(&wb.d);
        for (int t = 0; t < NT; ++t) {
          const __m256i dot = _mm256_sub_epi32(avx2::dot_u8_s8(wq, xq[t]), offset[t]);
          const __m256 d = _mm256_broadcastss_ps(_mm_mul_ss(wd, xd[t]));
          acc[r][t] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot), acc[r][t]);
        }
      }
    }
    for (int t = 0; t < NT; ++t)
      for (int r = 0; r < NR; ++r) y[t * ldy + r] = avx2::hsum(acc[r][t]);
  }
};

// Q4_1 (unsigned nibbles, scale d and min m) against Q8_1: d_w*d_x*dot + m_w*s_x per block. The
// pairs (d, m) and (d_x, s_x) are converted with one instruction each and multiplied as a vector:
// lane 0 scales the dot, lane 1 accumulates the min term.
template <int NR, int NT>
struct TileQ4_1 {
  static void run(int64_t cols, const uint8_t* w, int64_t w_stride, const uint8_t* x,
                  int64_t x_stride, float* y, int64_t ldy) {
    const int64_t nb = cols / kQK;
    __m256 acc[NR][NT];
    __m128 summ[NR][NT];
    for (int r = 0; r < NR; ++r) {
      for (int t = 0; t < NT; ++t) {
        acc[r][t] = _mm256_setzero_ps();
        summ[r][t] = _mm_setzero_ps();
      }
    }
    for (int64_t b = 0; b < nb; ++b) {
      __m256i xq[NT];
      __m128 xds[NT];  // [d_x, s_x, -, -]
      for (int t = 0; t < NT; ++t) {
        const BlockQ8_1& xb = reinterpret_cast<const BlockQ8_1*>(x + t * x_stride)[b];
        xq[t] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb.qs));
        xds[t] = avx2::load_2xf16(&xb.d);
      }
      for (int r = 0; r < NR; ++r) {
        const BlockQ4_1& wb = reinterpret_cast<const BlockQ4_1*>(w + r * w_stride)[b];
        avx2::prefetch_ahead(&wb, w_stride);
        const __m256i wq = avx2::unpack_nibbles_bcast(wb.qs);
        const __m128 wdm = avx2::load_2xf16(&wb.d);  // [d, m, -, -]
        for (int t = 0; t < NT; ++t) {
          const __m256i dot = avx2::dot_u8_s8(wq, xq[t]);
          const __m128 p = _mm_mul_ps(wdm, xds[t]);  // [d * d_x, m * s_x, -, -]
          acc[r][t] = _mm256_fmadd_ps(_mm256_broadcastss_ps(p), _mm256_cvtepi32_ps(dot), acc[r][t]);
          summ[r][t] = _mm_add_ps(summ[r][t], p);
        }
      }
    }
    for (int t = 0; t < NT; ++t) {
      for (int r = 0; r < NR; ++r) {
        const __m128 m = _mm_shuffle_ps(summ[r][t], summ[r][t], 1);
        y[t * ldy + r] = avx2::hsum(acc[r][t]) + _mm_cvtss_f32(m);
      }
    }
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

// Dequantization to f32 for the sgemm path: 8 values per step, int8 -> int32 -> f32 times d (+ m).
inline void store_scaled_8(__m128i q8, __m256 d, __m256 m, bool is_signed, float* out) {
  const __m256i i32 = is_signed ? _mm256_cvtepi8_epi32(q8) : _mm256_cvtepu8_epi32(q8);
  _mm256_storeu_ps(out, _mm256_fmadd_ps(_mm256_cvtepi32_ps(i32), d, m));
}

// 32 int8/uint8 values in element order -> out[0, 32).
inline void store_block_32(__m256i q, __m256 d, __m256 m, bool is_signed, float* out) {
  const __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
  store_scaled_8(lo, d, m, is_signed, out);
  store_scaled_8(_mm_srli_si128(lo, 8), d, m, is_signed, out + 8);
  store_scaled_8(hi, d, m, is_signed, out + 16);
  store_scaled_8(_mm_srli_si128(hi, 8), d, m, is_signed, out + 24);
}

template <typename WB>
void blocks_to_f32(const uint8_t* w, int64_t num_rows, int64_t cols, float* out) {
  const auto* blocks = reinterpret_cast<const WB*>(w);  // rows are whole blocks, back to back
  const int64_t nb = num_rows * cols / kQK;
  for (int64_t b = 0; b < nb; ++b) {
    const WB& blk = blocks[b];
    const __m256 d = _mm256_set1_ps(avx2::half_to_float(blk.d));
    if constexpr (std::is_same_v<WB, BlockQ8_0>) {
      const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk.qs));
      store_block_32(q, d, _mm256_setzero_ps(), true, out + b * kQK);
    } else if constexpr (std::is_same_v<WB, BlockQ4_0>) {
      const __m256i q = _mm256_sub_epi8(avx2::unpack_nibbles(blk.qs), _mm256_set1_epi8(8));
      store_block_32(q, d, _mm256_setzero_ps(), true, out + b * kQK);
    } else {
      const __m256 m = _mm256_set1_ps(avx2::half_to_float(blk.m));
      store_block_32(avx2::unpack_nibbles(blk.qs), d, m, false, out + b * kQK);
    }
  }
}

// The 32-element block types stay on the int8 tiles at every batch size. Through sgemm a
// product differs from the tiles' in f32 rounding, and the next layer's activation quantization
// turns such differences into whole quantization steps: a sequence's logits then moved by up to
// ~0.7 with the batch it shared (tests/unit/engine
// DefaultModelTest.QuantizedLogitsDoNotDependOnTheBatch), so prefill trades ~25% of matmul speed
// (docs/KERNELS.md) for batch invariance. For Q4_1 the tiles also use the fp16-rounded Q8_1 block
// sum, which f32 activations cannot reproduce.
constexpr MatmulKernels kQ8_0{DType::kQ8_0, quantize_row_q8_0, TileDispatch<TileQ8_0>::tile, kNever,
                              blocks_to_f32<BlockQ8_0>};
constexpr MatmulKernels kQ4_0{DType::kQ8_0, quantize_row_q8_0, TileDispatch<TileQ4_0>::tile, kNever,
                              blocks_to_f32<BlockQ4_0>};
constexpr MatmulKernels kQ4_1{DType::kQ8_1, quantize_row_q8_1, TileDispatch<TileQ4_1>::tile,
                              kNever, blocks_to_f32<BlockQ4_1>};

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
