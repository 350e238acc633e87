// Element-wise, normalisation, rope/KV-store, argmax and init kernels (kernels.h).
#include <algorithm>
#include <cfloat>

#include "backend/cuda/bf16_math.cuh"
#include "backend/cuda/kernels.h"
#include "backend/cuda/launch.cuh"

namespace fs::cuda {
namespace {

constexpr int kNormThreads = 256;

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Sum over the block (blockDim.x a multiple of 32, <= 1024); every thread gets the result.
__device__ float block_sum(float v, float* scratch) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nw = blockDim.x / 32;
  v = warp_sum(v);
  __syncthreads();  // scratch may still be read by a previous call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  float t = lane < nw ? scratch[lane] : 0.0f;
  return warp_sum(t);
}

__global__ void embed_kernel(const int32_t* tokens, const int32_t* positions, const bf16* tok_embd,
                             const bf16* pos_embd, int32_t pos_offset, int64_t hidden, float* x) {
  pdl_wait();
  pdl_launch_dependents();
  const int64_t t = blockIdx.x;
  const bf16* row = tok_embd + static_cast<int64_t>(tokens[t]) * hidden;
  const bf16* prow =
      pos_embd ? pos_embd + static_cast<int64_t>(positions[t] + pos_offset) * hidden : nullptr;
  for (int64_t i = threadIdx.x; i < hidden; i += blockDim.x) {
    float v = __bfloat162float(row[i]);
    if (prow) v += __bfloat162float(prow[i]);
    x[t * hidden + i] = v;
  }
}

__global__ void norm_kernel(float* x, const float* add_bias, const int32_t* row_index,
                            const float* weight, const float* bias, NormType type, float eps,
                            int64_t hidden, bf16* y) {
  pdl_wait();
  pdl_launch_dependents();
  __shared__ float scratch[32];
  const int64_t r = blockIdx.x;
  const int64_t t = row_index ? row_index[r] : r;
  float* xr = x + t * hidden;
  float sum = 0.0f, sum_sq = 0.0f;
  for (int64_t i = threadIdx.x; i < hidden; i += blockDim.x) {
    float v = xr[i];
    if (add_bias) xr[i] = v = v + add_bias[i];
    sum += v;
    sum_sq += v * v;
  }
  float mean = 0.0f, inv;
  if (type == NormType::kRms) {
    sum_sq = block_sum(sum_sq, scratch);
    inv = rsqrtf(sum_sq / static_cast<float>(hidden) + eps);
  } else {
    mean = block_sum(sum, scratch) / static_cast<float>(hidden);
    // Two-pass variance (the row is in L1): no cancellation for large means.
    float var = 0.0f;
    for (int64_t i = threadIdx.x; i < hidden; i += blockDim.x) {
      const float d = xr[i] - mean;
      var += d * d;
    }
    var = block_sum(var, scratch) / static_cast<float>(hidden);
    inv = rsqrtf(var + eps);
  }
  bf16* yr = y + r * hidden;
  for (int64_t i = threadIdx.x; i < hidden; i += blockDim.x) {
    float v = (xr[i] - mean) * inv * weight[i];
    if (bias) v += bias[i];
    yr[i] = __float2bfloat16(v);
  }
}

// norm_kernel for rows of hidden % 4 == 0 and hidden <= 4 * kNormThreads * kVec: every load of
// the row (x, pending bias, weight, bias) is issued at once into registers, one round of memory
// latency instead of one per loop iteration (a decode step's 65 norms of a single row are
// latency-bound: ~13 us each with the loop above, docs/BENCHMARKS.md).
template <int kVec>
__global__ void __launch_bounds__(kNormThreads)
    norm_vec_kernel(float* x, const float* add_bias, const int32_t* row_index, const float* weight,
                    const float* bias, NormType type, float eps, int64_t hidden, bf16* y) {
  pdl_wait();
  pdl_launch_dependents();
  __shared__ float scratch[32];
  const int64_t r = blockIdx.x;
  const int64_t t = row_index ? row_index[r] : r;
  float4* xr = reinterpret_cast<float4*>(x + t * hidden);
  const int64_t n4 = hidden / 4;
  float4 v[kVec], w[kVec], b[kVec];
#pragma unroll
  for (int k = 0; k < kVec; ++k) {
    const int64_t i = threadIdx.x + static_cast<int64_t>(k) * kNormThreads;
    const float4 zero = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    v[k] = i < n4 ? xr[i] : zero;
    w[k] = i < n4 ? reinterpret_cast<const float4*>(weight)[i] : zero;
    b[k] = i < n4 && bias ? reinterpret_cast<const float4*>(bias)[i] : zero;
    if (add_bias && i < n4) {
      const float4 a = reinterpret_cast<const float4*>(add_bias)[i];
      v[k] = make_float4(v[k].x + a.x, v[k].y + a.y, v[k].z + a.z, v[k].w + a.w);
      xr[i] = v[k];
    }
  }
  float sum = 0.0f, sum_sq = 0.0f;
#pragma unroll
  for (int k = 0; k < kVec; ++k) {
    sum += (v[k].x + v[k].y) + (v[k].z + v[k].w);
    sum_sq += (v[k].x * v[k].x + v[k].y * v[k].y) + (v[k].z * v[k].z + v[k].w * v[k].w);
  }
  float mean = 0.0f, inv;
  if (type == NormType::kRms) {
    inv = rsqrtf(block_sum(sum_sq, scratch) / static_cast<float>(hidden) + eps);
  } else {
    mean = block_sum(sum, scratch) / static_cast<float>(hidden);
    float var = 0.0f;  // two-pass variance from the registers: no cancellation for large means
#pragma unroll
    for (int k = 0; k < kVec; ++k) {
      if (threadIdx.x + static_cast<int64_t>(k) * kNormThreads < n4) {
        const float dx = v[k].x - mean, dy = v[k].y - mean, dz = v[k].z - mean, dw = v[k].w - mean;
        var += (dx * dx + dy * dy) + (dz * dz + dw * dw);
      }
    }
    inv = rsqrtf(block_sum(var, scratch) / static_cast<float>(hidden) + eps);
  }
  uint2* yr = reinterpret_cast<uint2*>(y + r * hidden);  // 4 bf16 per store
#pragma unroll
  for (int k = 0; k < kVec; ++k) {
    const int64_t i = threadIdx.x + static_cast<int64_t>(k) * kNormThreads;
    if (i >= n4) continue;
    const __nv_bfloat162 lo = __floats2bfloat162_rn((v[k].x - mean) * inv * w[k].x + b[k].x,
                                                    (v[k].y - mean) * inv * w[k].y + b[k].y);
    const __nv_bfloat162 hi = __floats2bfloat162_rn((v[k].z - mean) * inv * w[k].z + b[k].z,
                                                    (v[k].w - mean) * inv * w[k].w + b[k].w);
    uint2 packed;
    packed.x = *reinterpret_cast<const uint32_t*>(&lo);
    packed.y = *reinterpret_cast<const uint32_t*>(&hi);
    yr[i] = packed;
  }
}

// Grid (token, gridDim.y blocks of the token); threads over (head, pair) of q and k, then over v.
__global__ void qkv_rope_store_kernel(const float* qkv, const float* bq, const float* bk,
                                      const float* bv, const int32_t* positions,
                                      const int32_t* slots, const float* inv_freq, bool neox,
                                      int32_t num_heads, KvLayout kv, int32_t layer, bf16* q_out,
                                      bf16* cache) {
  pdl_wait();
  pdl_launch_dependents();
  const int64_t t = blockIdx.x;
  const int32_t hd = kv.head_dim, half = hd / 2, kvh = kv.num_kv_heads;
  const int64_t qd = static_cast<int64_t>(num_heads) * hd, kvd = static_cast<int64_t>(kvh) * hd;
  const float* row = qkv + t * (qd + 2 * kvd);
  const int32_t slot = slots[t];
  const int64_t block = slot / kv.block_size, offset = slot % kv.block_size;
  const int64_t layer_base =
      (block * kv.num_layers + layer) * 2 * kv.block_size * kvd + offset * kvd;
  bf16* k_dst = cache + layer_base;
  bf16* v_dst = cache + layer_base + kv.block_size * kvd;
  const float pos = static_cast<float>(positions[t]);
  // Rotated pairs of q heads then k heads, spread over the gridDim.y blocks of the token.
  const int32_t num_pairs = (num_heads + kvh) * half;
  const int32_t first = blockIdx.y * blockDim.x + threadIdx.x, stride = gridDim.y * blockDim.x;
  for (int32_t p = first; p < num_pairs; p += stride) {
    const int32_t head = p / half, i = p % half;
    const bool is_q = head < num_heads;
    const int32_t h = is_q ? head : head - num_heads;
    const float* src = row + (is_q ? 0 : qd) + static_cast<int64_t>(h) * hd;
    const float* b = is_q ? bq : bk;
    const int32_t a_idx = neox ? i : 2 * i, b_idx = neox ? i + half : 2 * i + 1;
    float x0 = src[a_idx], x1 = src[b_idx];
    if (b) {
      x0 += b[h * hd + a_idx];
      x1 += b[h * hd + b_idx];
    }
    if (inv_freq) {
      // The angle is a float product, as transformers computes it; sin/cos precise (no fast math).
      float s, c;
      sincosf(pos * inv_freq[i], &s, &c);
      const float r0 = x0 * c - x1 * s, r1 = x0 * s + x1 * c;
      x0 = r0;
      x1 = r1;
    }
    bf16* dst =
        is_q ? q_out + t * qd + static_cast<int64_t>(h) * hd : k_dst + static_cast<int64_t>(h) * hd;
    dst[a_idx] = __float2bfloat16(x0);
    dst[b_idx] = __float2bfloat16(x1);
  }
  const float* vsrc = row + qd + kvd;
  for (int64_t i = first; i < kvd; i += stride) {
    float v = vsrc[i];
    if (bv) v += bv[i];
    v_dst[i] = __float2bfloat16(v);
  }
}

__global__ void silu_mul_kernel(const bf16* gate_up, int64_t ffn, int64_t n, bf16* out) {
  pdl_wait();
  pdl_launch_dependents();
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < n;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t t = idx / ffn, i = idx % ffn;
    const float g = __bfloat162float(gate_up[t * 2 * ffn + i]);
    const float u = __bfloat162float(gate_up[t * 2 * ffn + ffn + i]);
    out[idx] = __float2bfloat16(g / (1.0f + __expf(-g)) * u);
  }
}

// 8 values per thread (16-byte loads) when ffn % 8 == 0.
__global__ void silu_mul_vec_kernel(const bf16* gate_up, int64_t ffn8, int64_t n8, bf16* out) {
  pdl_wait();
  pdl_launch_dependents();
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < n8;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t t = idx / ffn8, i = idx - t * ffn8;
    const uint4* row = reinterpret_cast<const uint4*>(gate_up) + t * 2 * ffn8;
    reinterpret_cast<uint4*>(out)[idx] = silu_mul_bf16x8(row[i], row[ffn8 + i]);
  }
}

__global__ void bias_relu_kernel(bf16* x, const float* bias, int64_t width, int64_t n) {
  pdl_wait();
  pdl_launch_dependents();
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < n;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float v = __bfloat162float(x[idx]);
    if (bias) v += bias[idx % width];
    x[idx] = __float2bfloat16(fmaxf(v, 0.0f));
  }
}

__global__ void add_bias_kernel(float* x, const float* bias, int64_t width, int64_t n) {
  pdl_wait();
  pdl_launch_dependents();
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < n;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    x[idx] += bias[idx % width];
  }
}

// The warp's largest (value, index), lowest index among equal values, on every lane.
__device__ __forceinline__ void warp_argmax(float& bv, int32_t& bi) {
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
    const int32_t oi = __shfl_xor_sync(0xffffffffu, bi, o);
    if (ov > bv || (ov == bv && oi < bi)) {
      bv = ov;
      bi = oi;
    }
  }
}

// The block's largest (value, index), lowest index among equal values, on every thread. best_v /
// best_i: 32 entries of shared memory.
__device__ void block_argmax(float& bv, int32_t& bi, float* best_v, int32_t* best_i) {
  warp_argmax(bv, bi);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) {
    best_v[warp] = bv;
    best_i[warp] = bi;
  }
  __syncthreads();
  const int nw = blockDim.x / 32;
  bv = lane < nw ? best_v[lane] : -INFINITY;
  bi = lane < nw ? best_i[lane] : 0x7fffffff;
  warp_argmax(bv, bi);
  __syncthreads();  // best_v / best_i may be reused
}

__global__ void argmax_kernel(const float* logits, int64_t vocab, int32_t* out) {
  pdl_wait();
  pdl_launch_dependents();
  __shared__ float best_v[32];
  __shared__ int32_t best_i[32];
  const float* row = logits + blockIdx.x * vocab;
  float bv = -FLT_MAX;
  int32_t bi = 0x7fffffff;
  for (int64_t i = threadIdx.x; i < vocab; i += blockDim.x) {
    const float v = row[i];
    if (v > bv) {  // strided scan: the first hit per thread has the lowest index
      bv = v;
      bi = static_cast<int32_t>(i);
    }
  }
  block_argmax(bv, bi, best_v, best_i);
  if (threadIdx.x == 0) out[blockIdx.x] = bi == 0x7fffffff ? 0 : bi;
}

// The block's greedy pick of one row: the largest value (lowest index among ties), the sum of
// exp(x - largest), and whether the row has a NaN or +inf. Every thread gets the result.
struct RowPick {
  float best;
  int32_t index;
  float sum;
  bool bad;
};
__device__ RowPick block_pick(const float* row, int64_t n) {
  __shared__ float best_v[32], sums[32];
  __shared__ int32_t best_i[32];
  __shared__ int bad_flag;
  if (threadIdx.x == 0) bad_flag = 0;
  __syncthreads();
  float bv = -INFINITY;
  int32_t bi = 0x7fffffff;
  bool my_bad = false;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    const float v = row[i];
    my_bad |= isnan(v) || v == INFINITY;
    if (v > bv) {  // strided scan: the first hit per thread has the lowest index
      bv = v;
      bi = static_cast<int32_t>(i);
    }
  }
  if (my_bad) bad_flag = 1;
  block_argmax(bv, bi, best_v, best_i);  // its barrier publishes bad_flag too
  RowPick pick{bv, bi, 0.0f, bad_flag != 0};
  if (pick.bad || bv == -INFINITY) return pick;
  float sum = 0.0f;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) sum += __expf(row[i] - bv);
  for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) sums[warp] = sum;
  __syncthreads();
  for (int w = 0; w < static_cast<int>(blockDim.x / 32); ++w) pick.sum += sums[w];
  return pick;
}

// One row per block: out[2 r] = argmax token (-1 when the row has a NaN or +inf, or nothing
// finite), out[2 r + 1] = the bits of its log-softmax, -log(sum_v exp(x_v - max)).
__global__ void greedy_pick_kernel(const float* logits, int64_t vocab, int32_t* out) {
  pdl_wait();
  pdl_launch_dependents();
  const RowPick p = block_pick(logits + blockIdx.x * vocab, vocab);
  if (threadIdx.x != 0) return;
  const bool none = p.bad || p.best == -INFINITY;
  out[2 * blockIdx.x] = none ? -1 : p.index;
  out[2 * blockIdx.x + 1] = __float_as_int(none ? 0.0f : -logf(p.sum));
}

// Vocab-parallel picks, one row per block: this rank's slot of parts [rows, tp, 3] gets (largest
// logit, its vocabulary id, sum of exp(x - largest)); id -1 for a NaN or +inf; the other slots 0.
__global__ void greedy_pick_part_kernel(const float* logits, int64_t cols, int64_t begin, int tp,
                                        int rank, float* parts) {
  pdl_wait();
  pdl_launch_dependents();
  const RowPick p = block_pick(logits + blockIdx.x * cols, cols);
  float* row = parts + blockIdx.x * tp * 3;
  for (int i = threadIdx.x; i < tp * 3; i += blockDim.x) {
    float v = 0.0f;
    if (i / 3 == rank) {
      const int k = i % 3;
      v = k == 0 ? p.best : k == 1 ? (p.bad ? -1.0f : static_cast<float>(begin + p.index)) : p.sum;
    }
    row[i] = v;
  }
}

// out[2 r], out[2 r + 1] as greedy_pick_kernel's from every rank's part of row r (parts summed
// over the ranks); tokens (when not null): the argmax, 0 for a bad row (as argmax_kernel).
__global__ void combine_picks_kernel(const float* parts, int64_t rows, int tp, int32_t* out,
                                     int32_t* tokens) {
  pdl_wait();
  pdl_launch_dependents();
  const int64_t r = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (r >= rows) return;
  const float* p = parts + r * tp * 3;
  float best = -INFINITY;
  int32_t id = -1;
  bool bad = false;
  for (int k = 0; k < tp; ++k) {  // ranks hold increasing ids: the first of equal maxima wins
    bad |= p[3 * k + 1] < 0.0f;
    if (p[3 * k] > best) {
      best = p[3 * k];
      id = static_cast<int32_t>(p[3 * k + 1]);
    }
  }
  bad |= best == -INFINITY;
  float sum = 0.0f;
  for (int k = 0; k < tp && !bad; ++k) {
    if (p[3 * k] != -INFINITY) sum += p[3 * k + 2] * __expf(p[3 * k] - best);
  }
  if (out != nullptr) {
    out[2 * r] = bad ? -1 : id;
    out[2 * r + 1] = __float_as_int(bad ? 0.0f : -logf(sum));
  }
  if (tokens != nullptr) tokens[r] = bad ? 0 : id;
}

// full [rows, vocab] = local [rows, cols] in columns [begin, begin + cols), 0 elsewhere.
__global__ void scatter_logits_kernel(const float* local, int64_t rows, int64_t cols,
                                      int64_t begin, int64_t vocab, float* full) {
  pdl_wait();
  pdl_launch_dependents();
  const int64_t n = rows * vocab;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t c = i % vocab - begin;
    full[i] = c >= 0 && c < cols ? local[i / vocab * cols + c] : 0.0f;
  }
}

__device__ __forceinline__ uint64_t splitmix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// Element (r, c) of a [rows, cols] part takes the value of element (row0 + r, col0 + c) of the
// whole [*, full_cols] tensor: a hash of the seed and that element's index.
__global__ void fill_uniform_kernel(bf16* w, int64_t rows, int64_t cols, uint64_t seed, float scale,
                                    int64_t row0, int64_t col0, int64_t full_cols) {
  const int64_t n = rows * cols;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t whole = (row0 + i / cols) * full_cols + col0 + i % cols;
    const uint64_t h = splitmix64(seed * 0x2545f4914f6cdd1dull + static_cast<uint64_t>(whole));
    const float u = static_cast<float>(h >> 40) * (1.0f / 16777216.0f);  // [0, 1)
    w[i] = __float2bfloat16((2.0f * u - 1.0f) * scale);
  }
}

__global__ void fill_f32_kernel(float* x, int64_t n, float value) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    x[i] = value;
  }
}

unsigned grid_for(int64_t n, int threads) {
  const int64_t blocks = (n + threads - 1) / threads;
  return static_cast<unsigned>(blocks < 65536 ? (blocks > 0 ? blocks : 1) : 65536);
}

// -1: not decided yet (on where the device has compute capability >= 9.0), 0 off, 1 on.
int g_programmatic_launch = -1;

}  // namespace

void set_programmatic_launch(bool on) { g_programmatic_launch = on ? -1 : 0; }

bool programmatic_launch() {
  if (g_programmatic_launch < 0) {
    int device = 0, major = 0;
    const bool hopper =
        cudaGetDevice(&device) == cudaSuccess &&
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) == cudaSuccess &&
        major >= 9;
    g_programmatic_launch = hopper ? 1 : 0;
  }
  return g_programmatic_launch == 1;
}

void launch_embed(const int32_t* tokens, const int32_t* positions, const bf16* tok_embd,
                  const bf16* pos_embd, int32_t pos_offset, int64_t num_tokens, int64_t hidden,
                  float* x, cudaStream_t stream) {
  if (num_tokens == 0) return;
  launch_kernel(embed_kernel, static_cast<unsigned>(num_tokens), 256, 0, stream, tokens, positions,
                tok_embd, pos_embd, pos_offset, hidden, x);
}

void launch_norm(float* x, const float* add_bias, const int32_t* row_index, const float* weight,
                 const float* bias, NormType type, float eps, int64_t rows, int64_t hidden, bf16* y,
                 cudaStream_t stream) {
  if (rows == 0) return;
  const unsigned grid = static_cast<unsigned>(rows);
  const int64_t per_thread = (hidden / 4 + kNormThreads - 1) / kNormThreads;  // float4 each
  if (hidden % 4 == 0 && per_thread <= 8) {
    if (per_thread <= 1) {
      launch_kernel(norm_vec_kernel<1>, grid, kNormThreads, 0, stream, x, add_bias, row_index,
                    weight, bias, type, eps, hidden, y);
    } else if (per_thread <= 2) {
      launch_kernel(norm_vec_kernel<2>, grid, kNormThreads, 0, stream, x, add_bias, row_index,
                    weight, bias, type, eps, hidden, y);
    } else if (per_thread <= 4) {
      launch_kernel(norm_vec_kernel<4>, grid, kNormThreads, 0, stream, x, add_bias, row_index,
                    weight, bias, type, eps, hidden, y);
    } else {
      launch_kernel(norm_vec_kernel<8>, grid, kNormThreads, 0, stream, x, add_bias, row_index,
                    weight, bias, type, eps, hidden, y);
    }
    return;
  }
  launch_kernel(norm_kernel, grid, kNormThreads, 0, stream, x, add_bias, row_index, weight, bias,
                type, eps, hidden, y);
}

void launch_qkv_rope_store(const float* qkv, const float* bq, const float* bk, const float* bv,
                           const int32_t* positions, const int32_t* slots, const float* inv_freq,
                           bool neox, int64_t num_tokens, int32_t num_heads, KvLayout kv,
                           int32_t layer, bf16* q_out, bf16* kv_cache, cudaStream_t stream) {
  if (num_tokens == 0) return;
  // Blocks per token: one pair (and one v element) per thread where that takes <= 16 blocks, so a
  // single decode token does not run its pairs one after another in one block.
  const int64_t pairs = static_cast<int64_t>(num_heads + kv.num_kv_heads) * (kv.head_dim / 2);
  const unsigned per_token = static_cast<unsigned>(std::min<int64_t>(16, (pairs + 255) / 256));
  launch_kernel(qkv_rope_store_kernel, dim3(static_cast<unsigned>(num_tokens), per_token), 256, 0,
                stream, qkv, bq, bk, bv, positions, slots, inv_freq, neox, num_heads, kv, layer,
                q_out, kv_cache);
}

void launch_silu_mul(const bf16* gate_up, int64_t num_tokens, int64_t ffn, bf16* out,
                     cudaStream_t stream) {
  const int64_t n = num_tokens * ffn;
  if (n == 0) return;
  if (ffn % 8 == 0) {
    launch_kernel(silu_mul_vec_kernel, grid_for(n / 8, 256), 256, 0, stream, gate_up, ffn / 8,
                  n / 8, out);
    return;
  }
  launch_kernel(silu_mul_kernel, grid_for(n, 256), 256, 0, stream, gate_up, ffn, n, out);
}

void launch_bias_relu(bf16* x, const float* bias, int64_t num_tokens, int64_t n,
                      cudaStream_t stream) {
  const int64_t total = num_tokens * n;
  if (total == 0) return;
  launch_kernel(bias_relu_kernel, grid_for(total, 256), 256, 0, stream, x, bias, n, total);
}

void launch_add_bias(float* x, const float* bias, int64_t num_tokens, int64_t n,
                     cudaStream_t stream) {
  const int64_t total = num_tokens * n;
  if (total == 0) return;
  launch_kernel(add_bias_kernel, grid_for(total, 256), 256, 0, stream, x, bias, n, total);
}

void launch_greedy_pick(const float* logits, int64_t rows, int64_t vocab, int32_t* out,
                        cudaStream_t stream) {
  if (rows == 0) return;
  launch_kernel(greedy_pick_kernel, static_cast<unsigned>(rows), 1024, 0, stream, logits, vocab,
                out);
}

void launch_greedy_pick_part(const float* logits, int64_t rows, int64_t cols, int64_t begin,
                             int tp, int rank, float* parts, cudaStream_t stream) {
  if (rows == 0) return;
  launch_kernel(greedy_pick_part_kernel, static_cast<unsigned>(rows), 1024, 0, stream, logits,
                cols, begin, tp, rank, parts);
}

void launch_combine_picks(const float* parts, int64_t rows, int tp, int32_t* picks,
                          int32_t* tokens, cudaStream_t stream) {
  if (rows == 0) return;
  launch_kernel(combine_picks_kernel, grid_for(rows, 128), 128, 0, stream, parts, rows, tp, picks,
                tokens);
}

void launch_scatter_logits(const float* local, int64_t rows, int64_t cols, int64_t begin,
                           int64_t vocab, float* full, cudaStream_t stream) {
  if (rows == 0) return;
  launch_kernel(scatter_logits_kernel, grid_for(rows * vocab, 256), 256, 0, stream, local, rows,
                cols, begin, vocab, full);
}

void launch_argmax(const float* logits, int64_t rows, int64_t vocab, int32_t* out,
                   cudaStream_t stream) {
  if (rows == 0) return;
  launch_kernel(argmax_kernel, static_cast<unsigned>(rows), 1024, 0, stream, logits, vocab, out);
}

void launch_fill_uniform(bf16* w, int64_t n, uint64_t seed, float scale, cudaStream_t stream) {
  launch_fill_uniform_part(w, 1, n, seed, scale, 0, 0, n, stream);
}

void launch_fill_uniform_part(bf16* w, int64_t rows, int64_t cols, uint64_t seed, float scale,
                              int64_t row0, int64_t col0, int64_t full_cols, cudaStream_t stream) {
  if (rows * cols == 0) return;
  fill_uniform_kernel<<<grid_for(rows * cols, 256), 256, 0, stream>>>(w, rows, cols, seed, scale,
                                                                       row0, col0, full_cols);
}

void launch_fill_f32(float* x, int64_t n, float value, cudaStream_t stream) {
  if (n == 0) return;
  fill_f32_kernel<<<grid_for(n, 256), 256, 0, stream>>>(x, n, value);
}

}  // namespace fs::cuda
