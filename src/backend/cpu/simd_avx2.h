// Small AVX2 helpers shared by the *_avx2.cc kernels. Include only from files built with
// -mavx2 -mfma -mf16c (the inline functions must not be emitted into baseline translation units).
#pragma once

#include <immintrin.h>

#include <cstdint>

namespace fs::cpu::avx2 {

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// exp for 8 floats: Cephes' expf (range reduction by ln 2 split in two constants, degree-5
// polynomial), ~2 ulp; inputs are clamped to [-87.3, 88.3].
inline __m256 exp_ps(__m256 x) {
  x = _mm256_max_ps(x, _mm256_set1_ps(-87.3f));
  x = _mm256_min_ps(x, _mm256_set1_ps(88.3f));
  __m256 fx = _mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), _mm256_set1_ps(0.5f));
  fx = _mm256_floor_ps(fx);
  x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
  x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), x);
  __m256 y = _mm256_set1_ps(1.9875691500E-4f);
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.3981999507E-3f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(8.3334519073E-3f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(4.1665795894E-2f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.6666665459E-1f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(5.0000001201E-1f));
  const __m256 x2 = _mm256_mul_ps(x, x);
  y = _mm256_fmadd_ps(y, x2, _mm256_add_ps(x, _mm256_set1_ps(1.0f)));
  const __m256i e =
      _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvttps_epi32(fx), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

inline int hsum_i32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
  return _mm_cvtsi128_si32(s);
}

// Decode reads each weight once from DRAM, and a tile's rows are short interleaved streams that the
// hardware prefetchers serve poorly (one thread reached ~9 GB/s on Q8_0 without this, ~5 GB/s with
// no prefetch at all). Kernels prefetch the same position kPrefetchRows rows below (two tiles
// ahead, where this thread reads next) into L2: T1 leaves the L1 miss buffers free and measured
// 2-2.5x faster than T0 (docs/KERNELS.md).
inline constexpr int kPrefetchRows = 8;
// The address may lie past the end of the matrix (last tiles): prefetches never fault, and the
// arithmetic is done on integers so no out-of-bounds pointer is formed.
inline void prefetch_ahead(const void* p, int64_t row_stride) {
  const uintptr_t a =
      reinterpret_cast<uintptr_t>(p) + static_cast<uintptr_t>(kPrefetchRows * row_stride);
  _mm_prefetch(reinterpret_cast<const char*>(a), _MM_HINT_T1);
}

inline float half_to_float(uint16_t h) { return _cvtsh_ss(h); }

// 32 nibbles of 16 bytes as 32 bytes in [0, 15]: low nibbles in the low lane, high in the high lane
// (ggml's element order for Q4_0/Q4_1).
inline __m256i unpack_nibbles(const uint8_t* qs) {
  const __m128i t = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m256i b = _mm256_set_m128i(_mm_srli_epi16(t, 4), t);
  return _mm256_and_si256(b, _mm256_set1_epi8(0x0F));
}

// Same, from one 16-byte load broadcast to both lanes and a per-lane variable shift (2 ALU ops).
inline __m256i unpack_nibbles_bcast(const uint8_t* qs) {
  const __m256i b =
      _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(qs)));
  return _mm256_and_si256(_mm256_srlv_epi64(b, _mm256_setr_epi64x(0, 0, 4, 4)),
                          _mm256_set1_epi8(0x0F));
}

// The two fp16 values at p (e.g. a block's d and m) as f32 lanes 0 and 1 (lanes 2, 3: garbage from
// the two bytes after them, which every block has). One load and one conversion.
inline __m128 load_2xf16(const void* p) {
  int32_t v;
  __builtin_memcpy(&v, p, 4);
  return _mm_cvtph_ps(_mm_cvtsi32_si128(v));
}

// Sum of pairs of u8 x s8 products, widened to 8 x int32.
inline __m256i dot_u8_s8(__m256i u, __m256i s) {
  return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}

// 8 x f32 from 8 halves / bfloat16s.
inline __m256 load_f16x8(const uint16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
inline __m256 load_bf16x8(const uint16_t* p) {
  const __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}

}  // namespace fs::cpu::avx2
