// Weight-streaming matrix-vector products for small batches (decode): one warp per output row,
// 16-byte loads of the bf16 weight row, f32 accumulation. At batch 1-8 the product is bound by the
// weight bytes; this reaches a higher share of HBM bandwidth than the cuBLAS GEMM kernels that
// mixed bf16-in / f32-out products get at such shapes (docs/KERNELS.md).
#include <algorithm>

#include "backend/cuda/bf16_math.cuh"
#include "backend/cuda/kernels.h"
#include "backend/cuda/launch.cuh"
#include "backend/cuda/p2p_exchange.cuh"

namespace fs::cuda {
namespace {

constexpr int kGemvWarps = 8;

__device__ __forceinline__ void bf16x8_to_float(const uint4& v, float* f) {
  const __nv_bfloat162* p = reinterpret_cast<const __nv_bfloat162*>(&v);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 t = __bfloat1622float2(p[i]);
    f[2 * i] = t.x;
    f[2 * i + 1] = t.y;
  }
}

template <int T>
__device__ __forceinline__ void gemv_accumulate(const uint4& wv, const bf16* __restrict__ x,
                                                int64_t cols, int64_t chunk, float* acc) {
  float wf[8];
  bf16x8_to_float(wv, wf);
#pragma unroll
  for (int t = 0; t < T; ++t) {
    float xf[8];
    bf16x8_to_float(reinterpret_cast<const uint4*>(x + t * cols)[chunk], xf);
#pragma unroll
    for (int i = 0; i < 8; ++i) acc[t] = fmaf(wf[i], xf[i], acc[t]);
  }
}

// One warp's dot products of a weight row with the T inputs x ([T, cols] bf16, global or shared
// memory): four 16-byte loads per lane in flight (memory-level parallelism), the next four loading
// while these are used; then the tail. `next` holds the row's first four loads already when
// !load_first. acc: the sums, reduced over the warp. Used by gemv_kernel and the fused kernels.
template <int T>
__device__ __forceinline__ void warp_row_dot(const bf16* w_row, int64_t chunks, const bf16* x,
                                             int64_t cols, int lane, bool load_first,
                                             uint4 (&next)[4], float (&acc)[T]) {
  const uint4* wrow = reinterpret_cast<const uint4*>(w_row);
  int64_t c = lane;
  if (load_first && c + 96 < chunks) {
#pragma unroll
    for (int u = 0; u < 4; ++u) next[u] = __ldcs(wrow + c + 32 * u);
  }
#pragma unroll
  for (int t = 0; t < T; ++t) acc[t] = 0.0f;
  for (; c + 96 < chunks; c += 128) {
    uint4 wv[4];
#pragma unroll
    for (int u = 0; u < 4; ++u) wv[u] = next[u];
    if (c + 128 + 96 < chunks) {
#pragma unroll
      for (int u = 0; u < 4; ++u) next[u] = __ldcs(wrow + c + 128 + 32 * u);
    }
#pragma unroll
    for (int u = 0; u < 4; ++u) gemv_accumulate<T>(wv[u], x, cols, c + 32 * u, acc);
  }
  for (; c < chunks; c += 32) gemv_accumulate<T>(__ldcs(wrow + c), x, cols, c, acc);
#pragma unroll
  for (int t = 0; t < T; ++t) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) acc[t] += __shfl_xor_sync(0xffffffffu, acc[t], o);
  }
}

// Launched with PDL (launch.cuh): the first weight loads of each row are issued before pdl_wait(),
// while the kernel that writes x is still finishing; x is read only after it. send (size > 0):
// lane 0 also stores each f32 output into this rank's slot of every peer's exchange area
// (p2p_exchange.cuh) as it is made.
template <int T>
__global__ void __launch_bounds__(kGemvWarps * 32)
    gemv_kernel(const bf16* __restrict__ w, int64_t rows, int64_t cols, const bf16* __restrict__ x,
                void* y, bool y_f32, float beta, P2pExchange send) {
  const int lane = threadIdx.x % 32;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kGemvWarps + threadIdx.x / 32;
  const bool active = row < rows;
  const uint4* wrow = reinterpret_cast<const uint4*>(w + (active ? row : 0) * cols);
  const int64_t chunks = active ? cols / 8 : 0;  // 16-byte chunks of the row
  uint4 next[4];  // the row's first four loads per lane (warp_row_dot goes on from them)
  if (lane + 96 < chunks) {
#pragma unroll
    for (int u = 0; u < 4; ++u) next[u] = __ldcs(wrow + lane + 32 * u);  // streamed once
  }
  pdl_wait();
  pdl_launch_dependents();
  if (!active) return;
  float acc[T];
  warp_row_dot<T>(w + row * cols, chunks, x, cols, lane, /*load_first=*/false, next, acc);
  if (lane == 0) {
    const uint32_t phase = send.size > 0 ? exchange_begin(send).phase : 0;
#pragma unroll
    for (int t = 0; t < T; ++t) {
      if (y_f32) {
        float* out = static_cast<float*>(y) + t * rows + row;
        const float v = beta == 0.0f ? acc[t] : beta * *out + acc[t];
        *out = v;
        for (int p = 0; p < send.size; ++p) {
          if (p != send.rank) {
            exchange_slot<float>(send, phase, p, send.rank)[t * rows + row] = unempty(v);
          }
        }
      } else {
        bf16* out = static_cast<bf16*>(y) + t * rows + row;
        *out = __float2bfloat16(beta == 0.0f ? acc[t] : beta * __bfloat162float(*out) + acc[t]);
      }
    }
  }
}

template <int T>
void gemv_for(const bf16* w, int64_t rows, int64_t cols, const bf16* x, void* y, bool y_f32,
              float beta, cudaStream_t stream, const P2pExchange& send) {
  const unsigned blocks = static_cast<unsigned>((rows + kGemvWarps - 1) / kGemvWarps);
  launch_kernel(gemv_kernel<T>, blocks, kGemvWarps * 32, 0, stream, w, rows, cols, x, y, y_f32,
                beta, send);
}

// The fused decode GEMVs (kernels.h launch_gemv_rmsnorm / launch_gemv_silu_mul): each block first
// makes the bf16 input vector itself, in shared memory, from the previous kernel's output (the
// RMSNorm of the f32 residual row, or silu(gate) * up of the gate/up product), so the norm and the
// activation need no launch of their own; then its warps stream weight rows as gemv_kernel does,
// reading x from shared memory. The input is rebuilt by every block, so the grid is capped at one
// wave of resident blocks and each warp loops over rows (blockIdx.x * warps + warp, step gridDim.x
// * warps): at most num_sms * 8 rebuilds (each an L2 read of the source row) per product.
// kRmsNormSiluOut: the RMSNorm prologue, and the warps take (gate row r, up row r + rows) pairs of
// the stacked [Wg; Wu] and write silu(gate) * up: the norm and SwiGLU around the gate/up product.
enum class GemvPrologue { kRmsNorm, kSiluMul, kRmsNormSiluOut };

inline constexpr int kGemvThreads = kGemvWarps * 32;


template <int T, GemvPrologue P>
__global__ void __launch_bounds__(kGemvThreads)
    gemv_fused_kernel(const bf16* __restrict__ w, int64_t rows, int64_t cols,
                      const void* __restrict__ src, const float* __restrict__ norm_weight,
                      float eps, void* y, bool y_f32, float beta) {
  extern __shared__ uint4 x_smem[];  // [T, cols] bf16: this block's copy of the input
  __shared__ float scratch[kGemvWarps];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int64_t chunks = cols / 8;  // 16-byte chunks of a row
  const int64_t row_step = static_cast<int64_t>(gridDim.x) * kGemvWarps;
  int64_t row = static_cast<int64_t>(blockIdx.x) * kGemvWarps + warp;
  // The first row's first loads go out before the wait (weights: no earlier kernel writes them).
  uint4 next[4];
  if (row < rows && lane + 96 < chunks) {
    const uint4* wrow = reinterpret_cast<const uint4*>(w + row * cols);
#pragma unroll
    for (int u = 0; u < 4; ++u) next[u] = __ldcs(wrow + lane + 32 * u);
  }
  pdl_wait();
  pdl_launch_dependents();
  bf16* xs = reinterpret_cast<bf16*>(x_smem);
  if constexpr (P != GemvPrologue::kSiluMul) {
    // As norm_vec_kernel (kernels.cu) with 256 threads, RMS, no biases: per-thread sums of squares
    // over float4 i = tid + 256 k in that order, the same block sum, y = x * inv * w in bf16.
    const int64_t n4 = cols / 4;
    for (int t = 0; t < T; ++t) {
      const float4* xr = reinterpret_cast<const float4*>(static_cast<const float*>(src) + t * cols);
      float sum_sq = 0.0f;
#pragma unroll 4
      for (int64_t i = threadIdx.x; i < n4; i += kGemvThreads) {
        const float4 v = xr[i];
        sum_sq += (v.x * v.x + v.y * v.y) + (v.z * v.z + v.w * v.w);
      }
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) sum_sq += __shfl_xor_sync(0xffffffffu, sum_sq, o);
      __syncthreads();  // scratch may still be read for the previous token
      if (lane == 0) scratch[warp] = sum_sq;
      __syncthreads();
      float total = lane < kGemvWarps ? scratch[lane] : 0.0f;
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) total += __shfl_xor_sync(0xffffffffu, total, o);
      const float inv = rsqrtf(total / static_cast<float>(cols) + eps);
      uint2* out = reinterpret_cast<uint2*>(xs + t * cols);  // 4 bf16 per store
#pragma unroll 4
      for (int64_t i = threadIdx.x; i < n4; i += kGemvThreads) {
        const float4 v = xr[i];
        const float4 g = reinterpret_cast<const float4*>(norm_weight)[i];
        const __nv_bfloat162 lo = __floats2bfloat162_rn(v.x * inv * g.x, v.y * inv * g.y);
        const __nv_bfloat162 hi = __floats2bfloat162_rn(v.z * inv * g.z, v.w * inv * g.w);
        uint2 packed;
        packed.x = *reinterpret_cast<const uint32_t*>(&lo);
        packed.y = *reinterpret_cast<const uint32_t*>(&hi);
        out[i] = packed;
      }
    }
  } else {
    // As silu_mul_vec_kernel (kernels.cu): src = gate_up [T, 2 cols] bf16.
    const uint4* gate_up = static_cast<const uint4*>(src);
#pragma unroll 4
    for (int64_t idx = threadIdx.x; idx < T * chunks; idx += kGemvThreads) {
      const int64_t t = idx / chunks, i = idx - t * chunks;
      x_smem[idx] =
          silu_mul_bf16x8(gate_up[t * 2 * chunks + i], gate_up[t * 2 * chunks + chunks + i]);
    }
  }
  __syncthreads();
  for (bool first = true; row < rows; row += row_step, first = false) {
    float acc[T];
    warp_row_dot<T>(w + row * cols, chunks, xs, cols, lane, !first, next, acc);
    if constexpr (P == GemvPrologue::kRmsNormSiluOut) {
      // Row `row` is a gate row; its up row is row + rows: y = silu(gate) * up, rounded as the
      // separate path rounds (gate and up to bf16 first, then as silu_mul_vec_kernel).
      float up[T];
      warp_row_dot<T>(w + (row + rows) * cols, chunks, xs, cols, lane, true, next, up);
      if (lane == 0) {
#pragma unroll
        for (int t = 0; t < T; ++t) {
          const float g = __bfloat162float(__float2bfloat16(acc[t]));
          const float u = __bfloat162float(__float2bfloat16(up[t]));
          static_cast<bf16*>(y)[t * rows + row] = __float2bfloat16(g / (1.0f + __expf(-g)) * u);
        }
      }
    } else if (lane == 0) {
#pragma unroll
      for (int t = 0; t < T; ++t) {
        if (y_f32) {
          float* out = static_cast<float*>(y) + t * rows + row;
          *out = beta == 0.0f ? acc[t] : beta * *out + acc[t];
        } else {
          bf16* out = static_cast<bf16*>(y) + t * rows + row;
          *out = __float2bfloat16(beta == 0.0f ? acc[t] : beta * __bfloat162float(*out) + acc[t]);
        }
      }
    }
  }
}

int g_fused_gemv = kFuseGemvDefault;

// One wave of resident blocks of this kernel at this shared-memory size (cached per
// instantiation for the last size asked: a model asks for one size per instantiation).
template <int T, GemvPrologue P>
unsigned fused_grid(int64_t rows, size_t smem_bytes) {
  static unsigned wave = 0;
  static size_t wave_smem = 0;
  if (wave == 0 || wave_smem != smem_bytes) {
    wave_smem = smem_bytes;
    int device = 0, sms = 0, per_sm = 0;
    cudaGetDevice(&device);
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
    cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, gemv_fused_kernel<T, P>, kGemvThreads,
                                                  smem_bytes);
    wave = static_cast<unsigned>(std::max(1, sms) * std::max(1, per_sm));
  }
  const int64_t blocks = (rows + kGemvWarps - 1) / kGemvWarps;
  return static_cast<unsigned>(std::min<int64_t>(blocks, wave));
}

template <GemvPrologue P>
void gemv_fused_for(const bf16* w, int64_t rows, int64_t cols, const void* src,
                    const float* norm_weight, float eps, int64_t num_tokens, void* y, bool y_f32,
                    float beta, cudaStream_t stream) {
  if (rows == 0) return;
  const size_t smem = static_cast<size_t>(num_tokens * cols) * sizeof(bf16);
  auto go = [&](auto kernel, unsigned grid) {
    launch_kernel(kernel, grid, kGemvThreads, smem, stream, w, rows, cols, src, norm_weight, eps, y,
                  y_f32, beta);
  };
  switch (num_tokens) {
    case 1:
      return go(gemv_fused_kernel<1, P>, fused_grid<1, P>(rows, smem));
    case 2:
      return go(gemv_fused_kernel<2, P>, fused_grid<2, P>(rows, smem));
    case 3:
      return go(gemv_fused_kernel<3, P>, fused_grid<3, P>(rows, smem));
    case 4:
      return go(gemv_fused_kernel<4, P>, fused_grid<4, P>(rows, smem));
    default:
      return;  // callers check gemv_fused_supported
  }
}

}  // namespace

bool gemv_supported(int64_t num_tokens, int64_t cols) {
  return num_tokens >= 1 && num_tokens <= kMaxGemvTokens && cols % 8 == 0;
}

void launch_gemv(const bf16* w, int64_t rows, int64_t cols, const bf16* x, int64_t num_tokens,
                 void* y, bool y_f32, float beta, cudaStream_t stream, const P2pExchange& send) {
  switch (num_tokens) {
    case 1:
      return gemv_for<1>(w, rows, cols, x, y, y_f32, beta, stream, send);
    case 2:
      return gemv_for<2>(w, rows, cols, x, y, y_f32, beta, stream, send);
    case 3:
      return gemv_for<3>(w, rows, cols, x, y, y_f32, beta, stream, send);
    case 4:
      return gemv_for<4>(w, rows, cols, x, y, y_f32, beta, stream, send);
    case 5:
      return gemv_for<5>(w, rows, cols, x, y, y_f32, beta, stream, send);
    case 6:
      return gemv_for<6>(w, rows, cols, x, y, y_f32, beta, stream, send);
    case 7:
      return gemv_for<7>(w, rows, cols, x, y, y_f32, beta, stream, send);
    case 8:
      return gemv_for<8>(w, rows, cols, x, y, y_f32, beta, stream, send);
    default:
      return;  // callers check gemv_supported
  }
}

bool gemv_fused_supported(int64_t num_tokens, int64_t cols) {
  return num_tokens >= 1 && num_tokens <= kMaxFusedGemvTokens && cols % 8 == 0 &&
         num_tokens * cols * static_cast<int64_t>(sizeof(bf16)) <= kMaxFusedGemvSmemBytes;
}

void set_fused_gemv(int parts) { g_fused_gemv = parts; }
int fused_gemv() { return g_fused_gemv; }

void launch_gemv_rmsnorm(const bf16* w, int64_t rows, int64_t cols, const float* x,
                         const float* norm_weight, float eps, int64_t num_tokens, void* y,
                         bool y_f32, float beta, cudaStream_t stream) {
  gemv_fused_for<GemvPrologue::kRmsNorm>(w, rows, cols, x, norm_weight, eps, num_tokens, y, y_f32,
                                         beta, stream);
}

void launch_gemv_rmsnorm_silu(const bf16* w_gate_up, int64_t ffn, int64_t cols, const float* x,
                              const float* norm_weight, float eps, int64_t num_tokens, bf16* y,
                              cudaStream_t stream) {
  gemv_fused_for<GemvPrologue::kRmsNormSiluOut>(w_gate_up, ffn, cols, x, norm_weight, eps,
                                                num_tokens, y, false, 0.0f, stream);
}

void launch_gemv_silu_mul(const bf16* w, int64_t rows, int64_t cols, const bf16* gate_up,
                          int64_t num_tokens, void* y, bool y_f32, float beta,
                          cudaStream_t stream) {
  gemv_fused_for<GemvPrologue::kSiluMul>(w, rows, cols, gate_up, nullptr, 0.0f, num_tokens, y,
                                         y_f32, beta, stream);
}

}  // namespace fs::cuda
