// AVX-512 F16 and F32 tiles (below their sgemm thresholds): 16 columns per step, F16 weights
// converted in registers (vcvtph2ps zmm), 16-lane accumulators. F16: half the instructions of the
// AVX2 tile per weight byte. F32: the AVX2 4x4 tile needs 21 ymm registers of 16 and spills its
// accumulators (and reloads x per FMA); with 32 zmm registers nothing spills. Summation order
// differs from the AVX2 tile (16 lanes instead of 8), within the float bound of
// Matmul.EveryTypeEveryShapeMatchesExactDot.
// GCC 12's avx512fintrin.h builds _mm512_undefined_* from a self-initialized variable, which
// -Wuninitialized reports at every 512-bit conversion/reduction (a known false positive).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include "backend/cpu/matmul_kernels.h"

namespace fs::cpu {
namespace {

inline void prefetch_ahead(const void* p, int64_t row_stride) {
  constexpr int kPrefetchRows = 8;  // as simd_avx2.h
  const uintptr_t a =
      reinterpret_cast<uintptr_t>(p) + static_cast<uintptr_t>(kPrefetchRows * row_stride);
  _mm_prefetch(reinterpret_cast<const char*>(a), _MM_HINT_T1);
}

inline __m512 load_f16x16(const uint8_t* row, int64_t c) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + 2 * c)));
}

// Weight element type of a tile: F16 (converted in registers) or F32.
template <bool kF16>
struct FloatTile {
  static constexpr int64_t kElemBytes = kF16 ? 2 : 4;
  static constexpr int64_t kLineCols = 64 / kElemBytes;  // columns per 64-byte line of weights
  static __m512 load16(const uint8_t* row, int64_t c) {
    if constexpr (kF16) {
      return load_f16x16(row, c);
    } else {
      return _mm512_loadu_ps(reinterpret_cast<const float*>(row) + c);
    }
  }
  static float load1(const uint8_t* row, int64_t c) {
    if constexpr (kF16) {
      return _cvtsh_ss(reinterpret_cast<const uint16_t*>(row)[c]);
    } else {
      return reinterpret_cast<const float*>(row)[c];
    }
  }
  template <int NR, int NT>
  static void run(int64_t cols, const uint8_t* w, int64_t w_stride, const uint8_t* x,
                  int64_t x_stride, float* y, int64_t ldy) {
    __m512 acc[NR][NT];
    for (int r = 0; r < NR; ++r)
      for (int t = 0; t < NT; ++t) acc[r][t] = _mm512_setzero_ps();
    auto step16 = [&](int64_t c) {
      __m512 xv[NT];
      for (int t = 0; t < NT; ++t) {
        xv[t] = _mm512_loadu_ps(reinterpret_cast<const float*>(x + t * x_stride) + c);
      }
      for (int r = 0; r < NR; ++r) {
        const __m512 wv = load16(w + r * w_stride, c);
        for (int t = 0; t < NT; ++t) acc[r][t] = _mm512_fmadd_ps(wv, xv[t], acc[r][t]);
      }
    };
    // One 64-byte line of weights (32 halves, 16 floats) per step, prefetching the same line 8
    // rows below.
    const int64_t c_lines = cols / kLineCols * kLineCols;
    for (int64_t c = 0; c < c_lines; c += kLineCols) {
      for (int r = 0; r < NR; ++r) prefetch_ahead(w + r * w_stride + kElemBytes * c, w_stride);
      for (int64_t k = 0; k < kLineCols; k += 16) step16(c + k);
    }
    const int64_t c16 = cols / 16 * 16;
    for (int64_t c = c_lines; c < c16; c += 16) step16(c);
    for (int t = 0; t < NT; ++t) {
      const float* xt = reinterpret_cast<const float*>(x + t * x_stride);
      for (int r = 0; r < NR; ++r) {
        float sum = _mm512_reduce_add_ps(acc[r][t]);
        for (int64_t c = c16; c < cols; ++c) sum += load1(w + r * w_stride, c) * xt[c];
        y[t * ldy + r] = sum;
      }
    }
  }
};

template <int NR, int NT>
struct TileF16x16 {
  static void run(int64_t cols, const uint8_t* w, int64_t ws, const uint8_t* x, int64_t xs,
                  float* y, int64_t ldy) {
    FloatTile<true>::run<NR, NT>(cols, w, ws, x, xs, y, ldy);
  }
};
template <int NR, int NT>
struct TileF32x16 {
  static void run(int64_t cols, const uint8_t* w, int64_t ws, const uint8_t* x, int64_t xs,
                  float* y, int64_t ldy) {
    FloatTile<false>::run<NR, NT>(cols, w, ws, x, xs, y, ldy);
  }
};

// F32 tiles up to this many tokens (docs/KERNELS.md, "F32 decode batches").
constexpr int64_t kF32SgemmMinTokens = 64;

}  // namespace

const MatmulKernels* avx512_float_kernels(DType t) {
  static const MatmulKernels f16 = [] {
    MatmulKernels k = avx2_kernels(DType::kF16);
    k.tile = TileDispatch<TileF16x16>::tile;
    // Whole model, one thread, CPU time (GFLOP/s per CPU-second), tiles vs dequantize + sgemm:
    // 16 tokens 70-79 vs 43, 32: 85 vs 59-65, 64: 86 vs 70-80, 128: 88-89 vs 86, 512: 85-88 vs 94.
    k.sgemm_min_tokens = 256;
    return k;
  }();
  static const MatmulKernels f32 = [] {
    MatmulKernels k = avx2_kernels(DType::kF32);
    k.tile = TileDispatch<TileF32x16>::tile;
    k.sgemm_min_tokens = kF32SgemmMinTokens;
    return k;
  }();
  if (t == DType::kF16) return &f16;
  if (t == DType::kF32) return &f32;
  return nullptr;
}

}  // namespace fs::cpu
