#include "core/dtype.h"

namespace fs {

int64_t dtype_block_size(DType t) {
  switch (t) {
    case DType::kF32:
    case DType::kF16:
    case DType::kBF16: return 1;
    case DType::kQ4_0:
    case DType::kQ4_1:
    case DType::kQ8_0:
    case DType::kQ8_1: return 32;
    case DType::kQ4_K:
    case DType::kQ6_K:
    case DType::kQ8_K: return 256;
  }
  return 0;
}

int64_t dtype_block_bytes(DType t) {
  switch (t) {
    case DType::kF32: return 4;
    case DType::kF16:
    case DType::kBF16: return 2;
    case DType::kQ4_0: return 2 + 16;
    case DType::kQ4_1: return 2 + 2 + 16;
    case DType::kQ8_0: return 2 + 32;
    case DType::kQ8_1: return 2 + 2 + 32;
    case DType::kQ4_K: return 2 + 2 + 12 + 128;
    case DType::kQ6_K: return 128 + 64 + 16 + 2;
    case DType::kQ8_K: return 4 + 256 + 32;
  }
  return 0;
}

std::string_view dtype_name(DType t) {
  switch (t) {
    case DType::kF32: return "F32";
    case DType::kF16: return "F16";
    case DType::kBF16: return "BF16";
    case DType::kQ4_0: return "Q4_0";
    case DType::kQ4_1: return "Q4_1";
    case DType::kQ8_0: return "Q8_0";
    case DType::kQ8_1: return "Q8_1";
    case DType::kQ4_K: return "Q4_K";
    case DType::kQ6_K: return "Q6_K";
    case DType::kQ8_K: return "Q8_K";
  }
  return "?";
}

std::optional<DType> dtype_from_ggml(uint32_t ggml_type) {
  switch (ggml_type) {
    case 0: return DType::kF32;
    case 1: return DType::kF16;
    case 2: return DType::kQ4_0;
    case 3: return DType::kQ4_1;
    case 8: return DType::kQ8_0;
    case 12: return DType::kQ4_K;
    case 14: return DType::kQ6_K;
    case 30: return DType::kBF16;
    default: return std::nullopt;
  }
}

bool dtype_is_quantized(DType t) { return dtype_block_size(t) > 1; }

}  // namespace fs
