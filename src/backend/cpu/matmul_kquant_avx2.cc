// AVX2 kernels for the K-quants against Q8_K activations: Q4_K (4-bit, 6-bit scales and mins) and
// Q6_K (6-bit, int8 scales). One super-block dot per (row, token); the weight rows of a tile stay
// in L1 while the tokens of the tile reuse them. Unsigned weights x signed activations with
// maddubs; offsets (Q4_K mins, Q6_K's -32) come from the activation block sums bsums.
#include "backend/cpu/matmul_kernels.h"
#include "backend/cpu/quant_blocks.h"
#include "backend/cpu/simd_avx2.h"
#include "core/check.h"

namespace fs::cpu {
namespace {

float dot_q4_k(int64_t n, const BlockQ4_K* w, const BlockQ8_K* x) {
  const __m256i m4 = _mm256_set1_epi8(0x0F);
  __m256 acc = _mm256_setzero_ps();
  float mins = 0.0f;
  for (int64_t b = 0; b < n / kQKK; ++b) {
    uint8_t sc[8], m[8];
    int summ = 0;
    for (int j = 0; j < 8; ++j) {
      get_scale_min_k4(j, w[b].scales, &sc[j], &m[j]);
      summ += m[j] * (x[b].bsums[2 * j] + x[b].bsums[2 * j + 1]);
    }
    mins += x[b].d * avx2::half_to_float(w[b].dmin) * static_cast<float>(summ);
    __m256i sumi = _mm256_setzero_si256();
    for (int j = 0; j < 4; ++j) {
      const __m256i q4 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[b].qs + 32 * j));
      const __m256i lo = _mm256_and_si256(q4, m4);
      const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q4, 4), m4);
      const __m256i y0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[b].qs + 64 * j));
      const __m256i y1 =
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[b].qs + 64 * j + 32));
      const __m256i p0 =
          _mm256_madd_epi16(_mm256_maddubs_epi16(lo, y0), _mm256_set1_epi16(sc[2 * j]));
      const __m256i p1 =
          _mm256_madd_epi16(_mm256_maddubs_epi16(hi, y1), _mm256_set1_epi16(sc[2 * j + 1]));
      sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p0, p1));
    }
    const float d = x[b].d * avx2::half_to_float(w[b].d);
    acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
  }
  return avx2::hsum(acc) - mins;
}

// Scale pair (s0 for elements 0..15 in the low lane, s1 for 16..31) as int16 for madd.
inline __m256i scale_pair(int8_t s0, int8_t s1) {
  return _mm256_set_m128i(_mm_set1_epi16(s1), _mm_set1_epi16(s0));
}

float dot_q6_k(int64_t n, const BlockQ6_K* w, const BlockQ8_K* x) {
  const __m256i m4 = _mm256_set1_epi8(0x0F);
  const __m256i m2 = _mm256_set1_epi8(0x03);
  __m256 acc = _mm256_setzero_ps();
  float offsets = 0.0f;
  for (int64_t b = 0; b < n / kQKK; ++b) {
    int corr = 0;  // sum_j scale_j * bsums_j: the -32 offset of every 6-bit value
    for (int j = 0; j < kQKK / 16; ++j) corr += w[b].scales[j] * x[b].bsums[j];
    const float d = x[b].d * avx2::half_to_float(w[b].d);
    offsets += d * 32.0f * static_cast<float>(corr);
    const uint8_t* ql = w[b].ql;
    const uint8_t* qh = w[b].qh;
    const int8_t* q8 = x[b].qs;
    const int8_t* sc = w[b].scales;
    __m256i sumi = _mm256_setzero_si256();
    for (int half = 0; half < 2; ++half) {
      const __m256i qla = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ql));
      const __m256i qlb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ql + 32));
      const __m256i qhv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qh));
      __m256i q[4];
      q[0] = _mm256_or_si256(_mm256_and_si256(qla, m4),
                             _mm256_slli_epi16(_mm256_and_si256(qhv, m2), 4));
      q[1] = _mm256_or_si256(_mm256_and_si256(qlb, m4),
                             _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qhv, 2), m2), 4));
      q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(qla, 4), m4),
                             _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qhv, 4), m2), 4));
      q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(qlb, 4), m4),
                             _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qhv, 6), m2), 4));
      for (int k = 0; k < 4; ++k) {
        const __m256i y = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q8 + 32 * k));
        const __m256i p = _mm256_maddubs_epi16(q[k], y);
        sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, scale_pair(sc[2 * k], sc[2 * k + 1])));
      }
      ql += 64;
      qh += 32;
      q8 += 128;
      sc += 8;
    }
    acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
  }
  return avx2::hsum(acc) - offsets;
}

template <typename WB, float (*Dot)(int64_t, const WB*, const BlockQ8_K*)>
void tile_kquant(int64_t cols, const uint8_t* w, int64_t w_stride, int nr, const uint8_t* x,
                 int64_t x_stride, int nt, float* y, int64_t ldy) {
  for (int r = 0; r < nr; ++r) {
    if (nt < 4) {  // decode: bring the rows two tiles ahead towards L2 (see prefetch_ahead)
      for (int64_t off = 0; off < w_stride; off += 64) {
        avx2::prefetch_ahead(w + r * w_stride + off, w_stride);
      }
    }
    for (int t = 0; t < nt; ++t) {
      y[t * ldy + r] = Dot(cols, reinterpret_cast<const WB*>(w + r * w_stride),
                           reinterpret_cast<const BlockQ8_K*>(x + t * x_stride));
    }
  }
}

void quantize_row_q8_k(const float* x, void* out, int64_t cols) {
  quantize_row_q8_k_ref(x, static_cast<BlockQ8_K*>(out), cols);
}

// The sgemm path dequantizes with the scalar reference (cost amortized over >= 32 tokens).
template <typename WB, void (*Dequantize)(const WB*, float*, int64_t)>
void rows_to_f32(const uint8_t* w, int64_t num_rows, int64_t cols, float* out) {
  Dequantize(reinterpret_cast<const WB*>(w), out, num_rows * cols);
}

// The one-pair-at-a-time tiles reach ~40 GFLOP/s per thread; sgemm wins from a few dozen tokens.
constexpr int64_t kKQuantSgemmMinTokens = 32;
constexpr MatmulKernels kQ4_K{DType::kQ8_K, quantize_row_q8_k, tile_kquant<BlockQ4_K, dot_q4_k>,
                              kKQuantSgemmMinTokens, rows_to_f32<BlockQ4_K, dequantize_row_q4_k>};
constexpr MatmulKernels kQ6_K{DType::kQ8_K, quantize_row_q8_k, tile_kquant<BlockQ6_K, dot_q6_k>,
                              kKQuantSgemmMinTokens, rows_to_f32<BlockQ6_K, dequantize_row_q6_k>};

}  // namespace

const MatmulKernels& avx2_kquant_kernels(DType t) {
  if (t == DType::kQ6_K) return kQ6_K;
  FS_CHECK(t == DType::kQ4_K);
  return kQ4_K;
}

}  // namespace fs::cpu
