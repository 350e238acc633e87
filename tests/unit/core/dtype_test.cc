#include "core/dtype.h"

#include <cmath>
#include <cstring>

#include <gtest/gtest.h>

namespace fs {
namespace {

TEST(DTypeTest, Fp16RoundTripsEveryHalf) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = fp16_to_fp32(static_cast<uint16_t>(h));
    if (std::isnan(f)) continue;
    EXPECT_EQ(fp32_to_fp16(f), h) << std::hex << h;
  }
}

TEST(DTypeTest, Fp16RoundsToNearestEven) {
  EXPECT_EQ(fp32_to_fp16(1.0f), 0x3c00);
  // 1 + 2^-11 is exactly halfway between 1 and 1 + 2^-10: ties to even (1.0).
  EXPECT_EQ(fp32_to_fp16(1.0f + std::ldexp(1.0f, -11)), 0x3c00);
  EXPECT_EQ(fp32_to_fp16(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);
  EXPECT_EQ(fp32_to_fp16(65520.0f), 0x7c00);  // rounds to inf
  EXPECT_EQ(fp32_to_fp16(std::ldexp(1.0f, -24)), 0x0001);
}

TEST(DTypeTest, Bf16RoundTrip) {
  EXPECT_EQ(bf16_to_fp32(fp32_to_bf16(1.5f)), 1.5f);
  EXPECT_EQ(fp32_to_bf16(1.0f + std::ldexp(1.0f, -8)), 0x3f80);  // tie -> even
}

TEST(DTypeTest, RowBytesMatchGgml) {
  EXPECT_EQ(dtype_row_bytes(DType::kQ4_1, 576), 18 * 20);
  EXPECT_EQ(dtype_row_bytes(DType::kQ8_0, 64), 68);
  EXPECT_EQ(dtype_row_bytes(DType::kQ4_K, 256), 144);
  EXPECT_EQ(dtype_row_bytes(DType::kQ6_K, 512), 420);
  EXPECT_FALSE(dtype_from_ggml(7).has_value());
}

}  // namespace
}  // namespace fs
