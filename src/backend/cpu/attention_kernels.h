// Internal: the per-run kernels of paged attention (attention.cc), one scalar reference and the
// SIMD versions, declared here so tests can run each against the reference. A "run" is n
// consecutive K or V rows of one KV head inside one KV block (rows `stride` floats apart); the
// kernels serve the `group` query heads of that KV head (GQA) in one call. K/V elements are floats
// or halves (the pool's KvDtype; each kernel set is for one of them); strides count elements.
#pragma once

#include <cstdint>

#include "backend/cpu/kv_cache.h"

namespace fs::cpu {

// scores[h * s_stride + i] = scale * (q[h * hd ..] . k[i * k_stride ..]) for h < group, i < n.
// q: [group, hd].
using AttnScoresFn = void (*)(const float* q, int64_t group, const void* k, int64_t k_stride,
                              int64_t n, int64_t hd, float scale, float* scores, int64_t s_stride);
// acc[h * a_stride + d] += sum_i w[h * w_stride + i] * v[i * v_stride + d] for h < group, d < hd.
using AttnAccumulateFn = void (*)(const float* w, int64_t w_stride, int64_t group, const void* v,
                                  int64_t v_stride, int64_t n, int64_t hd, float* acc,
                                  int64_t a_stride);

struct AttnKernels {
  AttnScoresFn scores;
  AttnAccumulateFn accumulate;
  // scores[i] = exp(scores[i] - max_score) for i < n; returns their sum.
  float (*softmax_exp)(float* scores, int64_t n, float max_score);
};

// Scalar reference (any head_dim).
AttnKernels attn_kernels_scalar(KvDtype dtype);
// AVX2+FMA (head_dim a multiple of 8): one query head at a time, the run re-read from L1 per head.
AttnKernels attn_kernels_avx2(KvDtype dtype);
// AVX-512F (head_dim a multiple of 16): every K/V row loaded once for up to 3 query heads of the
// group (24 of the 32 zmm registers hold scores of 8 keys x 3 heads). attention_avx512.cc.
AttnKernels attn_kernels_avx512(KvDtype dtype);
// What paged_attention uses for this head_dim on this CPU (FASTSERVE_CPU_KERNELS: "scalar" gives
// the reference, "avx2" the AVX2 kernels).
AttnKernels attn_kernels_for(int64_t head_dim, KvDtype dtype);

// dst[i] = fp32_to_fp16(src[i]) (round to nearest even), for write_kv into f16 pools: F16C when
// use_avx2_kernels(), else scalar; the same halves either way.
void f32_to_f16_row(const float* src, uint16_t* dst, int64_t n);

}  // namespace fs::cpu
