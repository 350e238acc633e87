// ggml quantization blocks (bit-exact with ggml-common.h, as stored in GGUF) and the scalar
// reference code over them: dequantization, activation quantization (Q8_0, Q8_1, Q8_K) and integer
// dot products. The AVX2 kernels in *_avx2.cc are tested against these.
#pragma once

#include <cstdint>

namespace fs::cpu {

inline constexpr int kQK = 32;    // elements per block of Q4_0, Q4_1, Q8_0, Q8_1
inline constexpr int kQKK = 256;  // elements per super-block of the K-quants and Q8_K

// x[i] = (qs nibble - 8) * d; nibble i < 16 is the low half of qs[i], i >= 16 the high half of
// qs[i-16].
struct BlockQ4_0 {
  uint16_t d;  // fp16
  uint8_t qs[kQK / 2];
};
// x[i] = nibble * d + m (nibbles as Q4_0).
struct BlockQ4_1 {
  uint16_t d;  // fp16
  uint16_t m;  // fp16
  uint8_t qs[kQK / 2];
};
struct BlockQ8_0 {
  uint16_t d;  // fp16
  int8_t qs[kQK];
};
// Activations for Q4_1 weights: s = d * sum(qs) carries the min term.
struct BlockQ8_1 {
  uint16_t d;  // fp16
  uint16_t s;  // fp16
  int8_t qs[kQK];
};
// 8 sub-blocks of 32; 6-bit scales and mins packed in `scales` (see get_scale_min_k4).
// x = d * sc[j] * nibble - dmin * m[j].
struct BlockQ4_K {
  uint16_t d;     // fp16, super-block scale of the scales
  uint16_t dmin;  // fp16, super-block scale of the mins
  uint8_t scales[12];
  uint8_t qs[kQKK / 2];
};
// 16 sub-blocks of 16; x = d * scales[j] * (q - 32), q 6 bits: low 4 in ql, high 2 in qh.
struct BlockQ6_K {
  uint8_t ql[kQKK / 2];
  uint8_t qh[kQKK / 4];
  int8_t scales[kQKK / 16];
  uint16_t d;  // fp16
};
// Activations for the K-quants. qs in [-127, 127]; bsums[j] = sum of qs[16j, 16j + 16).
struct BlockQ8_K {
  float d;
  int8_t qs[kQKK];
  int16_t bsums[kQKK / 16];
};

static_assert(sizeof(BlockQ4_0) == 18);
static_assert(sizeof(BlockQ4_1) == 20);
static_assert(sizeof(BlockQ8_0) == 34);
static_assert(sizeof(BlockQ8_1) == 36);
static_assert(sizeof(BlockQ4_K) == 144);
static_assert(sizeof(BlockQ6_K) == 210);
static_assert(sizeof(BlockQ8_K) == 292);

// Scale j < 8 and min of a Q4_K super-block, 6 bits each.
inline void get_scale_min_k4(int j, const uint8_t* q, uint8_t* d, uint8_t* m) {
  if (j < 4) {
    *d = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *d = static_cast<uint8_t>((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    *m = static_cast<uint8_t>((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

// Dequantizes one row of n elements (n a multiple of the block size). out: [n].
void dequantize_row_q4_0(const BlockQ4_0* x, float* out, int64_t n);
void dequantize_row_q4_1(const BlockQ4_1* x, float* out, int64_t n);
void dequantize_row_q8_0(const BlockQ8_0* x, float* out, int64_t n);
void dequantize_row_q4_k(const BlockQ4_K* x, float* out, int64_t n);
void dequantize_row_q6_k(const BlockQ6_K* x, float* out, int64_t n);

// Quantizes one activation row of n floats (ggml's reference rounding). out: [n / block size].
void quantize_row_q8_0_ref(const float* x, BlockQ8_0* out, int64_t n);
void quantize_row_q8_1_ref(const float* x, BlockQ8_1* out, int64_t n);
void quantize_row_q8_k_ref(const float* x, BlockQ8_K* out, int64_t n);

// Integer dot products of one weight row with one quantized activation row of n elements.
float vec_dot_q8_0_q8_0_ref(int64_t n, const BlockQ8_0* w, const BlockQ8_0* x);
float vec_dot_q4_0_q8_0_ref(int64_t n, const BlockQ4_0* w, const BlockQ8_0* x);
float vec_dot_q4_1_q8_1_ref(int64_t n, const BlockQ4_1* w, const BlockQ8_1* x);
float vec_dot_q4_k_q8_k_ref(int64_t n, const BlockQ4_K* w, const BlockQ8_K* x);
float vec_dot_q6_k_q8_k_ref(int64_t n, const BlockQ6_K* w, const BlockQ8_K* x);

}  // namespace fs::cpu
