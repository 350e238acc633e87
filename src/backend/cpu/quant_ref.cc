// Scalar reference code over ggml blocks (quant_blocks.h). Formulas follow ggml-quants.c's
// reference (dequantize_row_*, quantize_row_*_ref, ggml_vec_dot_*_generic); the code is ours.
#include <algorithm>
#include <cmath>

#include "backend/cpu/quant_blocks.h"
#include "core/dtype.h"

namespace fs::cpu {

void dequantize_row_q4_0(const BlockQ4_0* x, float* out, int64_t n) {
  for (int64_t b = 0; b < n / kQK; ++b) {
    const float d = fp16_to_fp32(x[b].d);
    for (int j = 0; j < kQK / 2; ++j) {
      out[b * kQK + j] = static_cast<float>((x[b].qs[j] & 0xF) - 8) * d;
      out[b * kQK + j + kQK / 2] = static_cast<float>((x[b].qs[j] >> 4) - 8) * d;
    }
  }
}

void dequantize_row_q4_1(const BlockQ4_1* x, float* out, int64_t n) {
  for (int64_t b = 0; b < n / kQK; ++b) {
    const float d = fp16_to_fp32(x[b].d), m = fp16_to_fp32(x[b].m);
    for (int j = 0; j < kQK / 2; ++j) {
      out[b * kQK + j] = static_cast<float>(x[b].qs[j] & 0xF) * d + m;
      out[b * kQK + j + kQK / 2] = static_cast<float>(x[b].qs[j] >> 4) * d + m;
    }
  }
}

void dequantize_row_q8_0(const BlockQ8_0* x, float* out, int64_t n) {
  for (int64_t b = 0; b < n / kQK; ++b) {
    const float d = fp16_to_fp32(x[b].d);
    for (int j = 0; j < kQK; ++j) out[b * kQK + j] = static_cast<float>(x[b].qs[j]) * d;
  }
}

void dequantize_row_q4_k(const BlockQ4_K* x, float* out, int64_t n) {
  for (int64_t b = 0; b < n / kQKK; ++b) {
    const float d = fp16_to_fp32(x[b].d), dmin = fp16_to_fp32(x[b].dmin);
    const uint8_t* q = x[b].qs;
    float* y = out + b * kQKK;
    for (int j = 0; j < kQKK; j += 64) {
      uint8_t sc, m;
      get_scale_min_k4(j / 32, x[b].scales, &sc, &m);
      const float d1 = d * sc, m1 = dmin * m;
      get_scale_min_k4(j / 32 + 1, x[b].scales, &sc, &m);
      const float d2 = d * sc, m2 = dmin * m;
      for (int l = 0; l < 32; ++l) *y++ = d1 * static_cast<float>(q[l] & 0xF) - m1;
      for (int l = 0; l < 32; ++l) *y++ = d2 * static_cast<float>(q[l] >> 4) - m2;
      q += 32;
    }
  }
}

void dequantize_row_q6_k(const BlockQ6_K* x, float* out, int64_t n) {
  for (int64_t b = 0; b < n / kQKK; ++b) {
    const float d = fp16_to_fp32(x[b].d);
    const uint8_t* ql = x[b].ql;
    const uint8_t* qh = x[b].qh;
    const int8_t* sc = x[b].scales;
    float* y = out + b * kQKK;
    for (int half = 0; half < 2; ++half) {
      for (int l = 0; l < 32; ++l) {
        const int is = l / 16;
        const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        y[l] = d * sc[is] * static_cast<float>(q1);
        y[l + 32] = d * sc[is + 2] * static_cast<float>(q2);
        y[l + 64] = d * sc[is + 4] * static_cast<float>(q3);
        y[l + 96] = d * sc[is + 6] * static_cast<float>(q4);
      }
      y += 128;
      ql += 64;
      qh += 32;
      sc += 8;
    }
  }
}

void quantize_row_q8_0_ref(const float* x, BlockQ8_0* out, int64_t n) {
  for (int64_t b = 0; b < n / kQK; ++b) {
    const float* xb = x + b * kQK;
    float amax = 0.0f;
    for (int j = 0; j < kQK; ++j) amax = std::max(amax, std::fabs(xb[j]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    out[b].d = fp32_to_fp16(d);
    for (int j = 0; j < kQK; ++j) out[b].qs[j] = static_cast<int8_t>(std::lround(xb[j] * id));
  }
}

void quantize_row_q8_1_ref(const float* x, BlockQ8_1* out, int64_t n) {
  for (int64_t b = 0; b < n / kQK; ++b) {
    const float* xb = x + b * kQK;
    float amax = 0.0f;
    for (int j = 0; j < kQK; ++j) amax = std::max(amax, std::fabs(xb[j]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    int sum = 0;
    for (int j = 0; j < kQK; ++j) {
      out[b].qs[j] = static_cast<int8_t>(std::lround(xb[j] * id));
      sum += out[b].qs[j];
    }
    out[b].d = fp32_to_fp16(d);
    out[b].s = fp32_to_fp16(static_cast<float>(sum) * d);
  }
}

void quantize_row_q8_k_ref(const float* x, BlockQ8_K* out, int64_t n) {
  for (int64_t b = 0; b < n / kQKK; ++b) {
    const float* xb = x + b * kQKK;
    float max = 0.0f, amax = 0.0f;
    for (int j = 0; j < kQKK; ++j) {
      if (std::fabs(xb[j]) > amax) {
        amax = std::fabs(xb[j]);
        max = xb[j];
      }
    }
    if (amax == 0.0f) {
      out[b].d = 0.0f;
      std::fill(out[b].qs, out[b].qs + kQKK, int8_t{0});
      std::fill(out[b].bsums, out[b].bsums + kQKK / 16, int16_t{0});
      continue;
    }
    // Signed so that the extreme value maps to exactly -127 (ggml's quantize_row_q8_K_ref).
    const float iscale = -127.0f / max;
    for (int j = 0; j < kQKK; ++j) {
      const int v = static_cast<int>(std::nearbyint(iscale * xb[j]));
      out[b].qs[j] = static_cast<int8_t>(std::min(127, std::max(-127, v)));
    }
    for (int j = 0; j < kQKK / 16; ++j) {
      int sum = 0;
      for (int i = 0; i < 16; ++i) sum += out[b].qs[j * 16 + i];
      out[b].bsums[j] = static_cast<int16_t>(sum);
    }
    out[b].d = 1.0f / iscale;
  }
}

float vec_dot_q8_0_q8_0_ref(int64_t n, const BlockQ8_0* w, const BlockQ8_0* x) {
  float sum = 0.0f;
  for (int64_t b = 0; b < n / kQK; ++b) {
    int sumi = 0;
    for (int j = 0; j < kQK; ++j) sumi += w[b].qs[j] * x[b].qs[j];
    sum += static_cast<float>(sumi) * (fp16_to_fp32(w[b].d) * fp16_to_fp32(x[b].d));
  }
  return sum;
}

float vec_dot_q4_0_q8_0_ref(int64_t n, const BlockQ4_0* w, const BlockQ8_0* x) {
  float sum = 0.0f;
  for (int64_t b = 0; b < n / kQK; ++b) {
    int sumi = 0;
    for (int j = 0; j < kQK / 2; ++j) {
      sumi += ((w[b].qs[j] & 0xF) - 8) * x[b].qs[j];
      sumi += ((w[b].qs[j] >> 4) - 8) * x[b].qs[j + kQK / 2];
    }
    sum += static_cast<float>(sumi) * (fp16_to_fp32(w[b].d) * fp16_to_fp32(x[b].d));
  }
  return sum;
}

float vec_dot_q4_1_q8_1_ref(int64_t n, const BlockQ4_1* w, const BlockQ8_1* x) {
  float sum = 0.0f;
  for (int64_t b = 0; b < n / kQK; ++b) {
    int sumi = 0;
    for (int j = 0; j < kQK / 2; ++j) {
      sumi += (w[b].qs[j] & 0xF) * x[b].qs[j];
      sumi += (w[b].qs[j] >> 4) * x[b].qs[j + kQK / 2];
    }
    sum += static_cast<float>(sumi) * (fp16_to_fp32(w[b].d) * fp16_to_fp32(x[b].d)) +
           fp16_to_fp32(w[b].m) * fp16_to_fp32(x[b].s);
  }
  return sum;
}

float vec_dot_q4_k_q8_k_ref(int64_t n, const BlockQ4_K* w, const BlockQ8_K* x) {
  float sum = 0.0f;
  for (int64_t b = 0; b < n / kQKK; ++b) {
    int sumi = 0, summ = 0;
    for (int j = 0; j < 8; ++j) {
      uint8_t sc, m;
      get_scale_min_k4(j, w[b].scales, &sc, &m);
      const uint8_t* q = w[b].qs + (j / 2) * 32;
      const int8_t* a = x[b].qs + j * 32;
      int s = 0;
      for (int l = 0; l < 32; ++l) s += ((j % 2 == 0) ? (q[l] & 0xF) : (q[l] >> 4)) * a[l];
      sumi += sc * s;
      summ += m * (x[b].bsums[2 * j] + x[b].bsums[2 * j + 1]);
    }
    sum += x[b].d * (fp16_to_fp32(w[b].d) * static_cast<float>(sumi) -
                     fp16_to_fp32(w[b].dmin) * static_cast<float>(summ));
  }
  return sum;
}

float vec_dot_q6_k_q8_k_ref(int64_t n, const BlockQ6_K* w, const BlockQ8_K* x) {
  float sum = 0.0f;
  for (int64_t b = 0; b < n / kQKK; ++b) {
    int8_t q[kQKK];  // dequantized 6-bit values minus 32, in element order
    const uint8_t* ql = w[b].ql;
    const uint8_t* qh = w[b].qh;
    for (int half = 0; half < 2; ++half) {
      int8_t* qq = q + half * 128;
      for (int l = 0; l < 32; ++l) {
        qq[l] = static_cast<int8_t>(((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32);
        qq[l + 32] = static_cast<int8_t>(((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32);
        qq[l + 64] = static_cast<int8_t>(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
        qq[l + 96] = static_cast<int8_t>(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
      }
      ql += 64;
      qh += 32;
    }
    int sumi = 0;
    for (int j = 0; j < kQKK / 16; ++j) {
      int s = 0;
      for (int l = 0; l < 16; ++l) s += q[j * 16 + l] * x[b].qs[j * 16 + l];
      sumi += w[b].scales[j] * s;
    }
    sum += fp16_to_fp32(w[b].d) * x[b].d * static_cast<float>(sumi);
  }
  return sum;
}

}  // namespace fs::cpu
