// AVX-512 VNNI tiles (256-bit, EVEX: vpdpbusd and 32 vector registers) for the 32-element block
// types: Q8_0 and Q4_0 weights x Q8_0 activations, Q4_1 x Q8_1. Same tiles and the same f32
// arithmetic as matmul_q_avx2.cc; only the integer block dot changes: one vpdpbusd (u8 x s8 summed
// into int32 lanes of 4 bytes each, as maddubs + madd do, without the i16 step) instead of two or
// three instructions, with the constant part folded into the accumulator it starts from:
// - Q8_0: x + 128 (u8, one xor per activation block) times w (s8), starting from -128 * sum(w);
// - Q4_0: nibbles (u8) times x, starting from -8 * sum(x);
// - Q4_1: nibbles times x, starting from 0.
// The int32 lane sums are exact either way, so every output is bit-identical to the AVX2 tiles'
// (Matmul.Avx512TilesAreBitIdenticalToAvx2Tiles). Prefill-sized batches run wider 5x4 tiles
// (below) with the same per-output arithmetic (Matmul.WideTilesAreBitIdenticalToSmallTiles). Built
// with -mavx512{f,vl,bw,vnni}; selected at run time (use_avx512_kernels()).
#include <immintrin.h>

#include <algorithm>
#include <type_traits>

#include "backend/cpu/matmul_kernels.h"
#include "backend/cpu/quant_blocks.h"

namespace fs::cpu {
namespace {

// Local copies of simd_avx2.h's helpers (internal linkage): a non-inlined copy of a shared inline
// function compiled here could contain AVX-512 instructions and be picked by the linker for the
// AVX2 files too.
namespace avx2 {

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline void prefetch_ahead(const void* p, int64_t row_stride) {
  constexpr int kPrefetchRows = 8;  // as simd_avx2.h
  const uintptr_t a =
      reinterpret_cast<uintptr_t>(p) + static_cast<uintptr_t>(kPrefetchRows * row_stride);
  _mm_prefetch(reinterpret_cast<const char*>(a), _MM_HINT_T1);
}

inline __m256i unpack_nibbles_bcast(const uint8_t* qs) {
  const __m256i b =
      _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(qs)));
  return _mm256_and_si256(_mm256_srlv_epi64(b, _mm256_setr_epi64x(0, 0, 4, 4)),
                          _mm256_set1_epi8(0x0F));
}

inline __m128 load_2xf16(const void* p) {
  int32_t v;
  __builtin_memcpy(&v, p, 4);
  return _mm_cvtph_ps(_mm_cvtsi32_si128(v));
}

}  // namespace avx2

inline __m256i dpbusd(__m256i acc, __m256i u, __m256i s) { return _mm256_dpbusd_epi32(acc, u, s); }

template <int NR, int NT>
struct TileQ8_0Vnni {
  static void run(int64_t cols, const uint8_t* w, int64_t w_stride, const uint8_t* x,
                  int64_t x_stride, float* y, int64_t ldy) {
    const int64_t nb = cols / kQK;
    const __m256i bias = _mm256_set1_epi8(static_cast<char>(0x80));
    const __m256i zero = _mm256_setzero_si256();
    __m256 acc[NR][NT];
    for (int r = 0; r < NR; ++r)
      for (int t = 0; t < NT; ++t) acc[r][t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
      __m256i xu[NT];
      __m256 xd[NT];
      for (int t = 0; t < NT; ++t) {
        const BlockQ8_0& xb = reinterpret_cast<const BlockQ8_0*>(x + t * x_stride)[b];
        xu[t] = _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb.qs)), bias);
        xd[t] = _mm256_broadcastss_ps(avx2::load_2xf16(&xb.d));
      }
      for (int r = 0; r < NR; ++r) {
        const BlockQ8_0& wb = reinterpret_cast<const BlockQ8_0*>(w + r * w_stride)[b];
        avx2::prefetch_ahead(&wb, w_stride);
        const __m256i wq = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wb.qs));
        const __m256i start = _mm256_sub_epi32(zero, dpbusd(zero, bias, wq));  // -128 * sum(w)
        const __m256 wd = _mm256_broadcastss_ps(avx2::load_2xf16(&wb.d));
        for (int t = 0; t < NT; ++t) {
          const __m256i dot = dpbusd(start, xu[t], wq);
          acc[r][t] = _mm256_fmadd_ps(_mm256_mul_ps(wd, xd[t]), _mm256_cvtepi32_ps(dot), acc[r][t]);
        }
      }
    }
    for (int t = 0; t < NT; ++t)
      for (int r = 0; r < NR; ++r) y[t * ldy + r] = avx2::hsum(acc[r][t]);
  }
};

template <int NR, int NT>
struct TileQ4_0Vnni {
  static void run(int64_t cols, const uint8_t* w, int64_t w_stride, const uint8_t* x,
                  int64_t x_stride, float* y, int64_t ldy) {
    const int64_t nb = cols / kQK;
    const __m256i eights = _mm256_set1_epi8(8);
    const __m256i zero = _mm256_setzero_si256();
    __m256 acc[NR][NT];
    for (int r = 0; r < NR; ++r)
      for (int t = 0; t < NT; ++t) acc[r][t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
      __m256i xq[NT], start[NT];
      __m256 xd[NT];
      for (int t = 0; t < NT; ++t) {
        const BlockQ8_0& xb = reinterpret_cast<const BlockQ8_0*>(x + t * x_stride)[b];
        xq[t] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb.qs));
        start[t] = _mm256_sub_epi32(zero, dpbusd(zero, eights, xq[t]));  // -8 * sum(x)
        xd[t] = _mm256_broadcastss_ps(avx2::load_2xf16(&xb.d));
      }
      for (int r = 0; r < NR; ++r) {
        const BlockQ4_0& wb = reinterpret_cast<const BlockQ4_0*>(w + r * w_stride)[b];
        avx2::prefetch_ahead(&wb, w_stride);
        const __m256i wq = avx2::unpack_nibbles_bcast(wb.qs);
        const __m256 wd = _mm256_broadcastss_ps(avx2::load_2xf16(&wb.d));
        for (int t = 0; t < NT; ++t) {
          const __m256i dot = dpbusd(start[t], wq, xq[t]);
          acc[r][t] = _mm256_fmadd_ps(_mm256_mul_ps(wd, xd[t]), _mm256_cvtepi32_ps(dot), acc[r][t]);
        }
      }
    }
    for (int t = 0; t < NT; ++t)
      for (int r = 0; r < NR; ++r) y[t * ldy + r] = avx2::hsum(acc[r][t]);
  }
};

// Q4_1: the AVX2 tile keeps a 4-lane sum per (row, token) for the min term m * s_x (lane 1 of
// [d, m] * [d_x, s_x]); here one vector per row holds the min terms of all NT tokens in its lanes
// (m broadcast times [s_x0, s_x1, ...]), the same f32 products and additions per (row, token), so
// 16 accumulators + 4 min vectors fit the 32 registers.
template <int NR, int NT>
struct TileQ4_1Vnni {
  static void run(int64_t cols, const uint8_t* w, int64_t w_stride, const uint8_t* x,
                  int64_t x_stride, float* y, int64_t ldy) {
    const int64_t nb = cols / kQK;
    __m256 acc[NR][NT];
    __m128 summ[NR];  // lane t: sum over blocks of m * s_x(t)
    for (int r = 0; r < NR; ++r) {
      summ[r] = _mm_setzero_ps();
      for (int t = 0; t < NT; ++t) acc[r][t] = _mm256_setzero_ps();
    }
    for (int64_t b = 0; b < nb; ++b) {
      __m256i xq[NT];
      __m256 xd[NT];
      uint32_t sv[4] = {0, 0, 0, 0};  // the tokens' fp16 s_x, gathered in registers (unrolled)
      for (int t = 0; t < NT; ++t) {
        const BlockQ8_1& xb = reinterpret_cast<const BlockQ8_1*>(x + t * x_stride)[b];
        xq[t] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb.qs));
        xd[t] = _mm256_broadcastss_ps(avx2::load_2xf16(&xb.d));
        sv[t] = xb.s;
      }
      const __m128 xs = _mm_cvtph_ps(_mm_cvtsi64_si128(static_cast<int64_t>(
          static_cast<uint64_t>(sv[0] | (sv[1] << 16)) |
          (static_cast<uint64_t>(sv[2] | (sv[3] << 16)) << 32))));  // [s_x0, s_x1, ...]
      for (int r = 0; r < NR; ++r) {
        const BlockQ4_1& wb = reinterpret_cast<const BlockQ4_1*>(w + r * w_stride)[b];
        avx2::prefetch_ahead(&wb, w_stride);
        const __m256i wq = avx2::unpack_nibbles_bcast(wb.qs);
        const __m128 wdm = avx2::load_2xf16(&wb.d);  // [d, m, -, -]
        const __m256 wd = _mm256_broadcastss_ps(wdm);
        summ[r] = _mm_add_ps(summ[r], _mm_mul_ps(_mm_permute_ps(wdm, 0x55), xs));
        for (int t = 0; t < NT; ++t) {
          const __m256i dot = dpbusd(_mm256_setzero_si256(), wq, xq[t]);
          acc[r][t] = _mm256_fmadd_ps(_mm256_mul_ps(wd, xd[t]), _mm256_cvtepi32_ps(dot), acc[r][t]);
        }
      }
    }
    for (int r = 0; r < NR; ++r) {
      alignas(16) float m[4];
      _mm_store_ps(m, summ[r]);
      for (int t = 0; t < NT; ++t) y[t * ldy + r] = avx2::hsum(acc[r][t]) + m[t];
    }
  }
};

// Wide tiles (MatmulKernels::wide, prefill): NR rows x NT tokens (NT <= 8) with the same f32
// operations per (row, token, block) as the tiles above: acc = fma(wd * xd, float(dot), acc), then
// hsum. What changes is where wd * xd comes from: a first pass over up to kScaleBlocks blocks forms
// the products of each (row, block) for all NT tokens with one vector multiply (lane t = wd * xd(t),
// the same f32 product) into a small array; the main pass over those blocks stores nothing (so the
// accumulators stay in registers) and each FMA takes its product from the array as a broadcast
// memory operand. Per (row, token, block) that leaves dpbusd, cvt and FMA (the 4x4 tile also
// multiplies the scales there), and the per-row work (Q8_0's -128 * sum(w)) is shared by NT tokens.
constexpr int64_t kScaleBlocks = 32;

// [d(0), ..., d(NT - 1), 0...]: the fp16 field `d` (Field = &Block::d) or `s` of block b of NT
// activation rows, as f32.
template <typename Block, int NT, uint16_t Block::*Field>
inline __m256 act_halves(const uint8_t* x, int64_t x_stride, int64_t b) {
  static_assert(NT <= 8);
  uint64_t lo = 0, hi = 0;  // gathered in registers, not through a 16-bit store per token
  for (int t = 0; t < NT; ++t) {
    const uint64_t h = reinterpret_cast<const Block*>(x + t * x_stride)[b].*Field;
    if (t < 4) {
      lo |= h << (16 * t);
    } else {
      hi |= h << (16 * (t - 4));
    }
  }
  return _mm256_cvtph_ps(_mm_set_epi64x(static_cast<int64_t>(hi), static_cast<int64_t>(lo)));
}

// scales[i][r][t] = wd(r, b0 + i) * xd(t, b0 + i) for i < n. For Q4_1 (XBlock = BlockQ8_1) also
// summ[r] (lane t) += m(r, b) * s_x(t, b), block by block as the 4x4 tile adds its min terms.
template <typename WBlock, typename XBlock, int NR, int NT>
inline void scale_products(const uint8_t* w, int64_t w_stride, const uint8_t* x, int64_t x_stride,
                           int64_t b0, int64_t n, float (*scales)[NR][8], __m256* summ) {
  for (int64_t i = 0; i < n; ++i) {
    const int64_t b = b0 + i;
    const __m256 xd = act_halves<XBlock, NT, &XBlock::d>(x, x_stride, b);
    for (int r = 0; r < NR; ++r) {
      const WBlock& wb = reinterpret_cast<const WBlock*>(w + r * w_stride)[b];
      const __m128 wdm = avx2::load_2xf16(&wb.d);  // [d, m (Q4_1) or the first quants, ...]
      _mm256_store_ps(scales[i][r], _mm256_mul_ps(_mm256_broadcastss_ps(wdm), xd));
      if constexpr (std::is_same_v<XBlock, BlockQ8_1>) {
        const __m256 xs = act_halves<XBlock, NT, &XBlock::s>(x, x_stride, b);
        const __m256 m = _mm256_broadcastss_ps(_mm_permute_ps(wdm, 0x55));
        summ[r] = _mm256_add_ps(summ[r], _mm256_mul_ps(m, xs));
      }
    }
  }
}

template <int NR, int NT>
struct WideQ8_0Vnni {
  static void run(int64_t cols, const uint8_t* w, int64_t w_stride, const uint8_t* x,
                  int64_t x_stride, float* y, int64_t ldy) {
    const int64_t nb = cols / kQK;
    const __m256i bias = _mm256_set1_epi8(static_cast<char>(0x80));
    const __m256i zero = _mm256_setzero_si256();
    __m256 acc[NR][NT];
    for (int r = 0; r < NR; ++r)
      for (int t = 0; t < NT; ++t) acc[r][t] = _mm256_setzero_ps();
    alignas(32) float scales[kScaleBlocks][NR][8];
    for (int64_t b0 = 0; b0 < nb; b0 += kScaleBlocks) {
      const int64_t n = std::min(kScaleBlocks, nb - b0);
      scale_products<BlockQ8_0, BlockQ8_0, NR, NT>(w, w_stride, x, x_stride, b0, n, scales,
                                                   nullptr);
      for (int64_t i = 0; i < n; ++i) {
        const int64_t b = b0 + i;
        __m256i xu[NT];
        for (int t = 0; t < NT; ++t) {
          const BlockQ8_0& xb = reinterpret_cast<const BlockQ8_0*>(x + t * x_stride)[b];
          xu[t] =
              _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb.qs)), bias);
        }
        for (int r = 0; r < NR; ++r) {
          const BlockQ8_0& wb = reinterpret_cast<const BlockQ8_0*>(w + r * w_stride)[b];
          avx2::prefetch_ahead(&wb, w_stride);
          const __m256i wq = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wb.qs));
          const __m256i start = _mm256_sub_epi32(zero, dpbusd(zero, bias, wq));  // -128 * sum(w)
          for (int t = 0; t < NT; ++t) {
            const __m256i dot = dpbusd(start, xu[t], wq);
            acc[r][t] = _mm256_fmadd_ps(_mm256_set1_ps(scales[i][r][t]),
                                        _mm256_cvtepi32_ps(dot), acc[r][t]);
          }
        }
      }
    }
    for (int t = 0; t < NT; ++t)
      for (int r = 0; r < NR; ++r) y[t * ldy + r] = avx2::hsum(acc[r][t]);
  }
};

template <int NR, int NT>
struct WideQ4_0Vnni {
  static void run(int64_t cols, const uint8_t* w, int64_t w_stride, const uint8_t* x,
                  int64_t x_stride, float* y, int64_t ldy) {
    const int64_t nb = cols / kQK;
    const __m256i eights = _mm256_set1_epi8(8);
    const __m256i zero = _mm256_setzero_si256();
    __m256 acc[NR][NT];
    for (int r = 0; r < NR; ++r)
      for (int t = 0; t < NT; ++t) acc[r][t] = _mm256_setzero_ps();
    alignas(32) float scales[kScaleBlocks][NR][8];
    for (int64_t b0 = 0; b0 < nb; b0 += kScaleBlocks) {
      const int64_t n = std::min(kScaleBlocks, nb - b0);
      scale_products<BlockQ4_0, BlockQ8_0, NR, NT>(w, w_stride, x, x_stride, b0, n, scales,
                                                   nullptr);
      for (int64_t i = 0; i < n; ++i) {
        const int64_t b = b0 + i;
        __m256i xq[NT], start[NT];
        for (int t = 0; t < NT; ++t) {
          const BlockQ8_0& xb = reinterpret_cast<const BlockQ8_0*>(x + t * x_stride)[b];
          xq[t] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb.qs));
          start[t] = _mm256_sub_epi32(zero, dpbusd(zero, eights, xq[t]));  // -8 * sum(x)
        }
        for (int r = 0; r < NR; ++r) {
          const BlockQ4_0& wb = reinterpret_cast<const BlockQ4_0*>(w + r * w_stride)[b];
          avx2::prefetch_ahead(&wb, w_stride);
          const __m256i wq = avx2::unpack_nibbles_bcast(wb.qs);
          for (int t = 0; t < NT; ++t) {
            const __m256i dot = dpbusd(start[t], wq, xq[t]);
            acc[r][t] = _mm256_fmadd_ps(_mm256_set1_ps(scales[i][r][t]),
                                        _mm256_cvtepi32_ps(dot), acc[r][t]);
          }
        }
      }
    }
    for (int t = 0; t < NT; ++t)
      for (int r = 0; r < NR; ++r) y[t * ldy + r] = avx2::hsum(acc[r][t]);
  }
};

// Q4_1: the min terms (lane t of summ[r]: sum over blocks of m * s_x(t), the 4x4 tile's products and
// additions in the same order) are added up in the scale pass.
template <int NR, int NT>
struct WideQ4_1Vnni {
  static void run(int64_t cols, const uint8_t* w, int64_t w_stride, const uint8_t* x,
                  int64_t x_stride, float* y, int64_t ldy) {
    const int64_t nb = cols / kQK;
    __m256 acc[NR][NT];
    __m256 summ[NR];
    for (int r = 0; r < NR; ++r) {
      summ[r] = _mm256_setzero_ps();
      for (int t = 0; t < NT; ++t) acc[r][t] = _mm256_setzero_ps();
    }
    alignas(32) float scales[kScaleBlocks][NR][8];
    for (int64_t b0 = 0; b0 < nb; b0 += kScaleBlocks) {
      const int64_t n = std::min(kScaleBlocks, nb - b0);
      scale_products<BlockQ4_1, BlockQ8_1, NR, NT>(w, w_stride, x, x_stride, b0, n, scales, summ);
      for (int64_t i = 0; i < n; ++i) {
        const int64_t b = b0 + i;
        __m256i xq[NT];
        for (int t = 0; t < NT; ++t) {
          const BlockQ8_1& xb = reinterpret_cast<const BlockQ8_1*>(x + t * x_stride)[b];
          xq[t] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb.qs));
        }
        for (int r = 0; r < NR; ++r) {
          const BlockQ4_1& wb = reinterpret_cast<const BlockQ4_1*>(w + r * w_stride)[b];
          avx2::prefetch_ahead(&wb, w_stride);
          const __m256i wq = avx2::unpack_nibbles_bcast(wb.qs);
          for (int t = 0; t < NT; ++t) {
            const __m256i dot = dpbusd(_mm256_setzero_si256(), wq, xq[t]);
            acc[r][t] = _mm256_fmadd_ps(_mm256_set1_ps(scales[i][r][t]),
                                        _mm256_cvtepi32_ps(dot), acc[r][t]);
          }
        }
      }
    }
    for (int r = 0; r < NR; ++r) {
      alignas(32) float m[8];
      _mm256_store_ps(m, summ[r]);
      for (int t = 0; t < NT; ++t) y[t * ldy + r] = avx2::hsum(acc[r][t]) + m[t];
    }
  }
};

// Everything but the tiles as in the AVX2 table (quantizers, sgemm threshold, to-f32).
MatmulKernels with_tiles(const MatmulKernels& base, TileFn tile, WideTile wide) {
  MatmulKernels k = base;
  k.tile = tile;
  k.wide = wide;
  return k;
}

// The wide tile's shape: 5 rows x 4 tokens (20 accumulators, no spills in any of the three kernels).
// Measured on the Zen 4 box (matmul_bench --model, 512 tokens, one thread, best of 3 alternating
// runs, ms per pass; Q8_0 / Q4_1): 4x4 tiles 1011 / 1027; wide 4x4 924 / 969, 4x6 920 / 964,
// 6x4 940 / 943 (Q8_0 spills two accumulators), 4x8 928 / 1142 (spills), 5x4 908 / 921.
template <template <int, int> class K>
constexpr WideTile kWide5x4 = {K<5, 4>::run, 5, 4};

}  // namespace

const MatmulKernels* avx512_kernels(DType t) {
  static const MatmulKernels q8_0 = with_tiles(
      avx2_kernels(DType::kQ8_0), TileDispatch<TileQ8_0Vnni>::tile, kWide5x4<WideQ8_0Vnni>);
  static const MatmulKernels q4_0 = with_tiles(
      avx2_kernels(DType::kQ4_0), TileDispatch<TileQ4_0Vnni>::tile, kWide5x4<WideQ4_0Vnni>);
  static const MatmulKernels q4_1 = with_tiles(
      avx2_kernels(DType::kQ4_1), TileDispatch<TileQ4_1Vnni>::tile, kWide5x4<WideQ4_1Vnni>);
  switch (t) {
    case DType::kQ8_0:
      return &q8_0;
    case DType::kQ4_0:
      return &q4_0;
    case DType::kQ4_1:
      return &q4_1;
    default:
      return avx512_float_kernels(t);
  }
}

}  // namespace fs::cpu
