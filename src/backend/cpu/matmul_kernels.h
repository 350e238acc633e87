// Internal to matmul: the per-weight-type kernel table and the CPU feature selection.
#pragma once

#include <cstdint>
#include <limits>

#include "core/dtype.h"

namespace fs::cpu {

// Largest register tile of a TileFn: kMaxTileRows weight rows x kMaxTileTokens tokens.
inline constexpr int kMaxTileRows = 4;
inline constexpr int kMaxTileTokens = 4;

// y[t * ldy + r] = dot(weight row r, activation row t) for r < nr, t < nt (nr <= kMaxTileRows,
// nt <= kMaxTileTokens). w: first weight row, w_stride bytes between rows; x: first activation row
// (f32 for float weights, else blocks of MatmulKernels::act_type), x_stride bytes between rows.
using TileFn = void (*)(int64_t cols, const uint8_t* w, int64_t w_stride, int nr, const uint8_t* x,
                        int64_t x_stride, int nt, float* y, int64_t ldy);
// A fixed-shape tile of WideTile::rows x WideTile::tokens: y[t * ldy + r] as TileFn, same arguments.
using WideTileFn = void (*)(int64_t cols, const uint8_t* w, int64_t w_stride, const uint8_t* x,
                            int64_t x_stride, float* y, int64_t ldy);
// An optional wider register tile for prefill-sized batches (MatmulKernels::wide). Its outputs must
// be bit-identical to `tile`'s for every (row, token), so which tile an output lands in never
// changes it (batch invariance, docs/KERNELS.md "Paths").
struct WideTile {
  WideTileFn fn = nullptr;  // null: no wide tile
  int rows = 0;
  int tokens = 0;
};

// Quantizes one activation row of `cols` floats into blocks of act_type.
using QuantizeRowFn = void (*)(const float* x, void* out, int64_t cols);

// Converts num_rows weight rows (back to back, starting at w) to f32. out: [num_rows, cols].
using ToF32Fn = void (*)(const uint8_t* w, int64_t num_rows, int64_t cols, float* out);

inline constexpr int64_t kNever = std::numeric_limits<int64_t>::max();

struct MatmulKernels {
  DType act_type;              // kF32 (no quantization), kQ8_0, kQ8_1 or kQ8_K
  QuantizeRowFn quantize_row;  // null when act_type is kF32
  TileFn tile;
  // From this many tokens on, matmul() converts row blocks of W to f32 (to_f32) and calls OpenBLAS
  // sgemm instead of the tiles: compute bound, and sgemm's f32 FMA beats the int8 tiles' per-block
  // overhead (docs/KERNELS.md). Activations are then not quantized. kNever: always tiles.
  int64_t sgemm_min_tokens;
  ToF32Fn to_f32;  // null when the weights are f32 already or sgemm is never used
  // Used by matmul() for the full wide tiles of batches of >= kWideTileMinTokens tokens; `tile`
  // covers the rest.
  WideTile wide = {};
};

inline constexpr int64_t kWideTileMinTokens = 16;

// Scalar reference kernels (matmul_scalar.cc); every supported dtype.
const MatmulKernels& scalar_kernels(DType t);
// AVX2+FMA+F16C kernels (matmul_*_avx2.cc); call only when cpu_has_avx2() is true.
const MatmulKernels& avx2_kernels(DType t);

// AVX-512 VNNI tiles (matmul_q_avx512.cc) for Q8_0, Q4_0 and Q4_1 (bit-identical to the AVX2
// tiles, fewer instructions); null for other types. Call only when use_avx512_kernels() is true.
const MatmulKernels* avx512_kernels(DType t);
// The F16, BF16 and F32 part of it (matmul_float_avx512.cc): 16-lane tiles below their sgemm
// thresholds.
const MatmulKernels* avx512_float_kernels(DType t);

// Pieces of the AVX2 table defined in matmul_float_avx2.cc and matmul_kquant_avx2.cc.
const MatmulKernels& avx2_float_kernels(DType t);
const MatmulKernels& avx2_kquant_kernels(DType t);

// Whether matmul() takes the dequantize + sgemm path for this weight type and batch.
bool matmul_uses_sgemm(DType t, int64_t n_tokens);

// Builds a TileFn from a kernel template K<NR, NT>::run(cols, w, w_stride, x, x_stride, y, ldy)
// with compile-time tile sizes, so accumulators live in registers.
template <template <int, int> class K>
struct TileDispatch {
  using Fn = void (*)(int64_t, const uint8_t*, int64_t, const uint8_t*, int64_t, float*, int64_t);
  static constexpr Fn kFns[4][4] = {
      {K<1, 1>::run, K<1, 2>::run, K<1, 3>::run, K<1, 4>::run},
      {K<2, 1>::run, K<2, 2>::run, K<2, 3>::run, K<2, 4>::run},
      {K<3, 1>::run, K<3, 2>::run, K<3, 3>::run, K<3, 4>::run},
      {K<4, 1>::run, K<4, 2>::run, K<4, 3>::run, K<4, 4>::run},
  };
  static void tile(int64_t cols, const uint8_t* w, int64_t w_stride, int nr, const uint8_t* x,
                   int64_t x_stride, int nt, float* y, int64_t ldy) {
    kFns[nr - 1][nt - 1](cols, w, w_stride, x, x_stride, y, ldy);
  }
};
static_assert(kMaxTileRows == 4 && kMaxTileTokens == 4);

// True when the CPU has AVX2, FMA and F16C and FASTSERVE_CPU_KERNELS is not "scalar". Read once.
bool use_avx2_kernels();
// True when use_avx2_kernels() and the CPU has AVX-512 F/VL/BW/VNNI, unless FASTSERVE_CPU_KERNELS
// is "avx2". Read once.
bool use_avx512_kernels();

}  // namespace fs::cpu
