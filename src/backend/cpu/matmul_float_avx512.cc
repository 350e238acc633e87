// AVX-512 F16 tiles (n_tokens below 256, the sgemm threshold here): 16 columns per step, weights
// converted in registers (vcvtph2ps zmm), 16-lane accumulators. Half the instructions of the AVX2
// tile per weight byte. Summation order differs from the AVX2 tile (16 lanes instead of 8), within
// the float bound of Matmul.EveryTypeEveryShapeMatchesExactDot.
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

template <int NR, int NT>
struct TileF16x16 {
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
        const __m512 wv = load_f16x16(w + r * w_stride, c);
        for (int t = 0; t < NT; ++t) acc[r][t] = _mm512_fmadd_ps(wv, xv[t], acc[r][t]);
      }
    };
    // One 64-byte line of weights (32 halves) per step, prefetching the same line 8 rows below.
    const int64_t c_lines = cols / 32 * 32;
    for (int64_t c = 0; c < c_lines; c += 32) {
      for (int r = 0; r < NR; ++r) prefetch_ahead(w + r * w_stride + 2 * c, w_stride);
      step16(c);
      step16(c + 16);
    }
    const int64_t c16 = cols / 16 * 16;
    for (int64_t c = c_lines; c < c16; c += 16) step16(c);
    for (int t = 0; t < NT; ++t) {
      const float* xt = reinterpret_cast<const float*>(x + t * x_stride);
      for (int r = 0; r < NR; ++r) {
        float sum = _mm512_reduce_add_ps(acc[r][t]);
        const auto* wr = reinterpret_cast<const uint16_t*>(w + r * w_stride);
        for (int64_t c = c16; c < cols; ++c) sum += _cvtsh_ss(wr[c]) * xt[c];
        y[t * ldy + r] = sum;
      }
    }
  }
};

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
  return t == DType::kF16 ? &f16 : nullptr;
}

}  // namespace fs::cpu
