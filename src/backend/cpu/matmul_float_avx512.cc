// AVX-512 F16, BF16 and F32 tiles (below their sgemm thresholds): 16 columns per step, F16/BF16
// weights converted in registers (F16: 2x vcvtph2ps ymm; BF16: vpmovzxwd + vpslld, exact), 16-lane
// accumulators. F16/BF16: half the instructions of the AVX2 tile per weight byte. F32: the AVX2 4x4
// tile needs 21 ymm registers of 16 and spills its accumulators (and reloads x per FMA); with 32
// zmm registers nothing spills. Summation order differs from the AVX2 tile (16 lanes instead of
// 8), within the float bound of Matmul.EveryTypeEveryShapeMatchesExactDot.
// GCC 12's avx512fintrin.h builds _mm512_undefined_* from a self-initialized variable, which
// -Wuninitialized reports at every 512-bit conversion/reduction (a known false positive).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include "backend/cpu/matmul_kernels.h"
#include "core/dtype.h"

namespace fs::cpu {
namespace {

inline void prefetch_ahead(const void* p, int64_t row_stride) {
  constexpr int kPrefetchRows = 8;  // as simd_avx2.h
  const uintptr_t a =
      reinterpret_cast<uintptr_t>(p) + static_cast<uintptr_t>(kPrefetchRows * row_stride);
  _mm_prefetch(reinterpret_cast<const char*>(a), _MM_HINT_T1);
}

// Weight element type of a float tile: F16 (vcvtph2ps), BF16 (zero-extend and shift left by 16,
// exact) or F32. Only the load differs; the FMA and summation order are the same for all three.
enum class FloatWeights { kF32, kF16, kBF16 };

template <FloatWeights kW>
inline __m512 load16(const uint8_t* row, int64_t c) {
  if constexpr (kW == FloatWeights::kF32) {
    return _mm512_loadu_ps(reinterpret_cast<const float*>(row) + c);
  } else if constexpr (kW == FloatWeights::kF16) {
    // Two 8-column halves converted in 256-bit registers, then joined, as the BF16 load below
    // (the same lanes, exact; docs/KERNELS.md, "F16 split load").
    const auto* h = reinterpret_cast<const __m128i*>(row + 2 * c);
    const __m256 lo = _mm256_cvtph_ps(_mm_loadu_si128(h));
    const __m256 hi = _mm256_cvtph_ps(_mm_loadu_si128(h + 1));
    return _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castpd256_pd512(_mm256_castps_pd(lo)),
                                               _mm256_castps_pd(hi), 1));
  } else {
    // Two 8-column halves widened in 256-bit registers, then joined: the same lanes as one
    // vpmovzxwd zmm from memory, but decode (1 token, weights streamed from DRAM) measured 10-20%
    // faster this way (docs/KERNELS.md, "BF16 AVX-512 tiles").
    const auto* h = reinterpret_cast<const __m128i*>(row + 2 * c);
    const __m256i lo = _mm256_cvtepu16_epi32(_mm_loadu_si128(h));
    const __m256i hi = _mm256_cvtepu16_epi32(_mm_loadu_si128(h + 1));
    const __m512i v = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
    return _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
  }
}

template <FloatWeights kW>
inline float load1(const uint8_t* row, int64_t c) {
  if constexpr (kW == FloatWeights::kF32) {
    return reinterpret_cast<const float*>(row)[c];
  } else if constexpr (kW == FloatWeights::kF16) {
    return _cvtsh_ss(reinterpret_cast<const uint16_t*>(row)[c]);
  } else {
    return bf16_to_fp32(reinterpret_cast<const uint16_t*>(row)[c]);
  }
}

// A tile of NR weight rows x NT tokens (TileDispatch's K<NR, NT>).
template <FloatWeights kW, int NR, int NT>
struct FloatTile {
  static constexpr int64_t kElemBytes = kW == FloatWeights::kF32 ? 4 : 2;
  static constexpr int64_t kLineCols = 64 / kElemBytes;  // columns per 64-byte line of weights
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
        const __m512 wv = load16<kW>(w + r * w_stride, c);
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
        for (int64_t c = c16; c < cols; ++c) sum += load1<kW>(w + r * w_stride, c) * xt[c];
        y[t * ldy + r] = sum;
      }
    }
  }
};

template <int NR, int NT>
using TileF16x16 = FloatTile<FloatWeights::kF16, NR, NT>;
template <int NR, int NT>
using TileBF16x16 = FloatTile<FloatWeights::kBF16, NR, NT>;
template <int NR, int NT>
using TileF32x16 = FloatTile<FloatWeights::kF32, NR, NT>;

// F32 tiles up to this many tokens (docs/KERNELS.md, "F32 decode batches").
constexpr int64_t kF32SgemmMinTokens = 64;
// BF16 tiles below this many tokens, sgemm from it (docs/KERNELS.md, "BF16 AVX-512 tiles").
constexpr int64_t kBF16SgemmMinTokens = 128;

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
  static const MatmulKernels bf16 = [] {
    MatmulKernels k = avx2_kernels(DType::kBF16);
    k.tile = TileDispatch<TileBF16x16>::tile;
    k.sgemm_min_tokens = kBF16SgemmMinTokens;
    return k;
  }();
  if (t == DType::kF16) return &f16;
  if (t == DType::kBF16) return &bf16;
  if (t == DType::kF32) return &f32;
  return nullptr;
}

}  // namespace fs::cpu
