// Element types of weights and activations. Values match ggml's `enum ggml_type` so GGUF tensor infos
// map directly; safetensors dtypes map to F32/F16/BF16.
#pragma once

#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>

namespace fs {

enum class DType : uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ4_1 = 3,
  kQ8_0 = 8,
  kQ8_1 = 9,
  kQ4_K = 12,
  kQ6_K = 14,
  kQ8_K = 15,
  kBF16 = 30,
};

// Elements per quantization block (1 for plain float types).
int64_t dtype_block_size(DType t);
// Bytes per block.
int64_t dtype_block_bytes(DType t);
// Bytes for a row of `n` elements; n must be a multiple of the block size (checked by callers that read files).
inline int64_t dtype_row_bytes(DType t, int64_t n) { return n / dtype_block_size(t) * dtype_block_bytes(t); }
std::string_view dtype_name(DType t);
// ggml type id -> DType, or nullopt for a type we do not support.
std::optional<DType> dtype_from_ggml(uint32_t ggml_type);
bool dtype_is_quantized(DType t);

// IEEE half and bfloat16 conversions (scalar; vectorized versions live in backend/cpu).
inline float fp16_to_fp32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: normalize
      exp = 127 - 15 + 1;
      while ((mant & 0x400u) == 0) {
        mant <<= 1;
        --exp;
      }
      mant &= 0x3ffu;
      bits = sign | (exp << 23) | (mant << 13);
    }
  } else if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// Round-to-nearest-even float -> half.
inline uint16_t fp32_to_fp16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t abs = x & 0x7fffffffu;
  if (abs >= 0x7f800000u) return static_cast<uint16_t>(sign | 0x7c00u | (abs > 0x7f800000u ? 0x200u : 0));
  if (abs >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // overflow -> inf
  if (abs < 0x38800000u) {                                                 // subnormal or zero
    // Subnormal halves are multiples of 2^-24; scaling by 2^24 is exact, nearbyint rounds to even.
    std::memcpy(&f, &abs, 4);
    return static_cast<uint16_t>(sign | static_cast<uint32_t>(__builtin_nearbyintf(f * 16777216.0f)));
  }
  uint32_t r = abs + 0xfffu + ((abs >> 13) & 1u);  // RNE at bit 13
  r -= (127 - 15) << 23;
  return static_cast<uint16_t>(sign | (r >> 13));
}

inline float bf16_to_fp32(uint16_t h) {
  const uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

inline uint16_t fp32_to_bf16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((x >> 16) | 0x40u);  // quiet NaN
  x += 0x7fffu + ((x >> 16) & 1u);
  return static_cast<uint16_t>(x >> 16);
}

}  // namespace fs
