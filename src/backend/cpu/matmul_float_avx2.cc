// AVX2+FMA kernels for float weights (F32, F16 via F16C, BF16 by shifting) against f32 activations:
// a tile of NR rows x NT tokens converts each 8-column weight chunk once and reuses it across
// tokens. Used for decode; prefill of float weights goes to OpenBLAS sgemm (matmul.cc).
#include "backend/cpu/matmul_kernels.h"
#include "backend/cpu/simd_avx2.h"
#include "core/check.h"

namespace fs::cpu {
namespace {

enum class FloatKind { kF32, kF16, kBF16 };

template <FloatKind kKind>
inline __m256 load8(const uint8_t* row, int64_t c) {
  if constexpr (kKind == FloatKind::kF32) {
    return _mm256_loadu_ps(reinterpret_cast<const float*>(row) + c);
  } else if constexpr (kKind == FloatKind::kF16) {
    return avx2::load_f16x8(reinterpret_cast<const uint16_t*>(row) + c);
  } else {
    return avx2::load_bf16x8(reinterpret_cast<const uint16_t*>(row) + c);
  }
}

template <FloatKind kKind>
inline float load1(const uint8_t* row, int64_t c) {
  if constexpr (kKind == FloatKind::kF32) {
    return reinterpret_cast<const float*>(row)[c];
  } else if constexpr (kKind == FloatKind::kF16) {
    return avx2::half_to_float(reinterpret_cast<const uint16_t*>(row)[c]);
  } else {
    return bf16_to_fp32(reinterpret_cast<const uint16_t*>(row)[c]);
  }
}

template <FloatKind kKind, int NR, int NT>
void tile_float(int64_t cols, const uint8_t* w, int64_t w_stride, const uint8_t* x,
                int64_t x_stride, float* y, int64_t ldy) {
  __m256 acc[NR][NT];
  for (int r = 0; r < NR; ++r)
    for (int t = 0; t < NT; ++t) acc[r][t] = _mm256_setzero_ps();
  // Columns in steps of one cache line of weights (16 f32 or 32 f16/bf16), prefetching ahead per
  // line; then 8-column steps; then a scalar tail.
  constexpr int kLineCols = kKind == FloatKind::kF32 ? 16 : 32;
  constexpr int64_t kElemBytes = kKind == FloatKind::kF32 ? 4 : 2;
  auto step8 = [&](int64_t c) {
    __m256 xv[NT];
    for (int t = 0; t < NT; ++t) {
      xv[t] = _mm256_loadu_ps(reinterpret_cast<const float*>(x + t * x_stride) + c);
    }
    for (int r = 0; r < NR; ++r) {
      const __m256 wv = load8<kKind>(w + r * w_stride, c);
      for (int t = 0; t < NT; ++t) acc[r][t] = _mm256_fmadd_ps(wv, xv[t], acc[r][t]);
    }
  };
  const int64_t c_lines = cols / kLineCols * kLineCols;
  for (int64_t c = 0; c < c_lines; c += kLineCols) {
    for (int r = 0; r < NR; ++r) avx2::prefetch_ahead(w + r * w_stride + c * kElemBytes, w_stride);
    for (int k = 0; k < kLineCols; k += 8) step8(c + k);
  }
  const int64_t c8 = cols / 8 * 8;
  for (int64_t c = c_lines; c < c8; c += 8) step8(c);
  for (int t = 0; t < NT; ++t) {
    const float* xt = reinterpret_cast<const float*>(x + t * x_stride);
    for (int r = 0; r < NR; ++r) {
      float sum = avx2::hsum(acc[r][t]);
      for (int64_t c = c8; c < cols; ++c) sum += load1<kKind>(w + r * w_stride, c) * xt[c];
      y[t * ldy + r] = sum;
    }
  }
}

template <int NR, int NT>
struct TileF32 {
  static void run(int64_t cols, const uint8_t* w, int64_t ws, const uint8_t* x, int64_t xs,
                  float* y, int64_t ldy) {
    tile_float<FloatKind::kF32, NR, NT>(cols, w, ws, x, xs, y, ldy);
  }
};
template <int NR, int NT>
struct TileF16 {
  static void run(int64_t cols, const uint8_t* w, int64_t ws, const uint8_t* x, int64_t xs,
                  float* y, int64_t ldy) {
    tile_float<FloatKind::kF16, NR, NT>(cols, w, ws, x, xs, y, ldy);
  }
};
template <int NR, int NT>
struct TileBF16 {
  static void run(int64_t cols, const uint8_t* w, int64_t ws, const uint8_t* x, int64_t xs,
                  float* y, int64_t ldy) {
    tile_float<FloatKind::kBF16, NR, NT>(cols, w, ws, x, xs, y, ldy);
  }
};

void f16_to_f32(const uint8_t* w, int64_t num_rows, int64_t cols, float* out) {
  const auto* src = reinterpret_cast<const uint16_t*>(w);
  const int64_t n = num_rows * cols, n8 = n / 8 * 8;
  for (int64_t i = 0; i < n8; i += 8) _mm256_storeu_ps(out + i, avx2::load_f16x8(src + i));
  for (int64_t i = n8; i < n; ++i) out[i] = avx2::half_to_float(src[i]);
}

void bf16_to_f32(const uint8_t* w, int64_t num_rows, int64_t cols, float* out) {
  const auto* src = reinterpret_cast<const uint16_t*>(w);
  const int64_t n = num_rows * cols, n8 = n / 8 * 8;
  for (int64_t i = 0; i < n8; i += 8) _mm256_storeu_ps(out + i, avx2::load_bf16x8(src + i));
  for (int64_t i = n8; i < n; ++i) out[i] = bf16_to_fp32(src[i]);
}

// sgemm from 16 tokens: 80-98 GFLOP/s per thread against 45-65 for the tiles (docs/KERNELS.md).
constexpr int64_t kFloatSgemmMinTokens = 16;
constexpr MatmulKernels kF32{DType::kF32, nullptr, TileDispatch<TileF32>::tile,
                             kFloatSgemmMinTokens, nullptr};
constexpr MatmulKernels kF16{DType::kF32, nullptr, TileDispatch<TileF16>::tile,
                             kFloatSgemmMinTokens, f16_to_f32};
constexpr MatmulKernels kBF16{DType::kF32, nullptr, TileDispatch<TileBF16>::tile,
                              kFloatSgemmMinTokens, bf16_to_f32};

}  // namespace

const MatmulKernels& avx2_float_kernels(DType t) {
  if (t == DType::kF16) return kF16;
  if (t == DType::kBF16) return kBF16;
  FS_CHECK(t == DType::kF32);
  return kF32;
}

}  // namespace fs::cpu
