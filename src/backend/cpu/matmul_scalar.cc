// Scalar reference tile kernels for every weight type: one dot product per (row, token), in the
// same integer arithmetic as the fast kernels for quantized types.
#include <cpuid.h>

#include <cstdlib>
#include <string_view>

#include "backend/cpu/matmul_kernels.h"
#include "backend/cpu/quant_blocks.h"
#include "core/check.h"

namespace fs::cpu {
namespace {

template <typename WT>
float load_float(const WT* w, int64_t i);
template <>
float load_float<float>(const float* w, int64_t i) {
  return w[i];
}
template <>
float load_float<uint16_t>(const uint16_t* w, int64_t i) {
  return fp16_to_fp32(w[i]);
}

struct Bf16 {
  uint16_t bits;
};
template <>
float load_float<Bf16>(const Bf16* w, int64_t i) {
  return bf16_to_fp32(w[i].bits);
}

// Float weights: f32 accumulation in column order (an exact-ish reference; tests use f64 for
// truth).
template <typename WT>
void tile_float(int64_t cols, const uint8_t* w, int64_t w_stride, int nr, const uint8_t* x,
                int64_t x_stride, int nt, float* y, int64_t ldy) {
  for (int r = 0; r < nr; ++r) {
    const WT* wr = reinterpret_cast<const WT*>(w + r * w_stride);
    for (int t = 0; t < nt; ++t) {
      const float* xt = reinterpret_cast<const float*>(x + t * x_stride);
      float sum = 0.0f;
      for (int64_t c = 0; c < cols; ++c) sum += load_float(wr, c) * xt[c];
      y[t * ldy + r] = sum;
    }
  }
}

template <typename WB, typename XB, float (*Dot)(int64_t, const WB*, const XB*)>
void tile_quant(int64_t cols, const uint8_t* w, int64_t w_stride, int nr, const uint8_t* x,
                int64_t x_stride, int nt, float* y, int64_t ldy) {
  for (int r = 0; r < nr; ++r) {
    for (int t = 0; t < nt; ++t) {
      y[t * ldy + r] = Dot(cols, reinterpret_cast<const WB*>(w + r * w_stride),
                           reinterpret_cast<const XB*>(x + t * x_stride));
    }
  }
}

template <typename XB, void (*Quantize)(const float*, XB*, int64_t)>
void quantize_row(const float* x, void* out, int64_t cols) {
  Quantize(x, static_cast<XB*>(out), cols);
}

constexpr MatmulKernels kF32{DType::kF32, nullptr, tile_float<float>, kNever, nullptr};
constexpr MatmulKernels kF16{DType::kF32, nullptr, tile_float<uint16_t>, kNever, nullptr};
constexpr MatmulKernels kBF16{DType::kF32, nullptr, tile_float<Bf16>, kNever, nullptr};
constexpr MatmulKernels kQ8_0{DType::kQ8_0, quantize_row<BlockQ8_0, quantize_row_q8_0_ref>,
                              tile_quant<BlockQ8_0, BlockQ8_0, vec_dot_q8_0_q8_0_ref>, kNever,
                              nullptr};
constexpr MatmulKernels kQ4_0{DType::kQ8_0, quantize_row<BlockQ8_0, quantize_row_q8_0_ref>,
                              tile_quant<BlockQ4_0, BlockQ8_0, vec_dot_q4_0_q8_0_ref>, kNever,
                              nullptr};
constexpr MatmulKernels kQ4_1{DType::kQ8_1, quantize_row<BlockQ8_1, quantize_row_q8_1_ref>,
                              tile_quant<BlockQ4_1, BlockQ8_1, vec_dot_q4_1_q8_1_ref>, kNever,
                              nullptr};
constexpr MatmulKernels kQ4_K{DType::kQ8_K, quantize_row<BlockQ8_K, quantize_row_q8_k_ref>,
                              tile_quant<BlockQ4_K, BlockQ8_K, vec_dot_q4_k_q8_k_ref>, kNever,
                              nullptr};
constexpr MatmulKernels kQ6_K{DType::kQ8_K, quantize_row<BlockQ8_K, quantize_row_q8_k_ref>,
                              tile_quant<BlockQ6_K, BlockQ8_K, vec_dot_q6_k_q8_k_ref>, kNever,
                              nullptr};

}  // namespace

const MatmulKernels& scalar_kernels(DType t) {
  switch (t) {
    case DType::kF32:
      return kF32;
    case DType::kF16:
      return kF16;
    case DType::kBF16:
      return kBF16;
    case DType::kQ8_0:
      return kQ8_0;
    case DType::kQ4_0:
      return kQ4_0;
    case DType::kQ4_1:
      return kQ4_1;
    case DType::kQ4_K:
      return kQ4_K;
    case DType::kQ6_K:
      return kQ6_K;
    case DType::kQ8_1:
    case DType::kQ8_K:
      break;
  }
  FS_CHECK(false, "matmul: unsupported weight dtype {}", dtype_name(t));
  std::abort();
}

bool use_avx2_kernels() {
  static const bool use = [] {
    const char* env = std::getenv("FASTSERVE_CPU_KERNELS");  // read here and below only
    if (env != nullptr && std::string_view(env) == "scalar") return false;
    __builtin_cpu_init();
    // F16C from CPUID leaf 1, ECX bit 29 (clang's __builtin_cpu_supports does not know "f16c").
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    const bool f16c = __get_cpuid(1, &eax, &ebx, &ecx, &edx) != 0 && (ecx & (1u << 29)) != 0;
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c;
  }();
  return use;
}

bool use_avx512_kernels() {
  static const bool use = [] {
    const char* env = std::getenv("FASTSERVE_CPU_KERNELS");
    if (!use_avx2_kernels() || (env != nullptr && std::string_view(env) == "avx2")) return false;
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vnni");
  }();
  return use;
}

}  // namespace fs::cpu
