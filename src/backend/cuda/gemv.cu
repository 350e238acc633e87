// Weight-streaming matrix-vector products for small batches (decode): one warp per output row,
// 16-byte loads of the bf16 weight row, f32 accumulation. At batch 1-8 the product is bound by the
// weight bytes; this reaches a higher share of HBM bandwidth than the cuBLAS GEMM kernels that
// mixed bf16-in / f32-out products get at such shapes (docs/KERNELS.md).
#include "backend/cuda/kernels.h"
#include "backend/cuda/launch.cuh"

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

// Launched with PDL (launch.cuh): the first weight loads of each row are issued before pdl_wait(),
// while the kernel that writes x is still finishing; x is read only after it.
template <int T>
__global__ void __launch_bounds__(kGemvWarps * 32)
    gemv_kernel(const bf16* __restrict__ w, int64_t rows, int64_t cols, const bf16* __restrict__ x,
                void* y, bool y_f32, float beta) {
  const int lane = threadIdx.x % 32;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kGemvWarps + threadIdx.x / 32;
  const bool active = row < rows;
  const uint4* wrow = reinterpret_cast<const uint4*>(w + (active ? row : 0) * cols);
  const int64_t chunks = active ? cols / 8 : 0;  // 16-byte chunks of the row
  // Four chunks in flight per lane per step (memory-level parallelism), the next four loading
  // while these are used; then the tail.
  int64_t c = lane;
  uint4 next[4];
  if (c + 96 < chunks) {
#pragma unroll
    for (int u = 0; u < 4; ++u) next[u] = __ldcs(wrow + c + 32 * u);  // streamed once
  }
  pdl_wait();
  pdl_launch_dependents();
  if (!active) return;
  float acc[T];
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
  if (lane == 0) {
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

template <int T>
void gemv_for(const bf16* w, int64_t rows, int64_t cols, const bf16* x, void* y, bool y_f32,
              float beta, cudaStream_t stream) {
  const unsigned blocks = static_cast<unsigned>((rows + kGemvWarps - 1) / kGemvWarps);
  launch_kernel(gemv_kernel<T>, blocks, kGemvWarps * 32, 0, stream, w, rows, cols, x, y, y_f32,
                beta);
}

}  // namespace

bool gemv_supported(int64_t num_tokens, int64_t cols) {
  return num_tokens >= 1 && num_tokens <= kMaxGemvTokens && cols % 8 == 0;
}

void launch_gemv(const bf16* w, int64_t rows, int64_t cols, const bf16* x, int64_t num_tokens,
                 void* y, bool y_f32, float beta, cudaStream_t stream) {
  switch (num_tokens) {
    case 1:
      return gemv_for<1>(w, rows, cols, x, y, y_f32, beta, stream);
    case 2:
      return gemv_for<2>(w, rows, cols, x, y, y_f32, beta, stream);
    case 3:
      return gemv_for<3>(w, rows, cols, x, y, y_f32, beta, stream);
    case 4:
      return gemv_for<4>(w, rows, cols, x, y, y_f32, beta, stream);
    case 5:
      return gemv_for<5>(w, rows, cols, x, y, y_f32, beta, stream);
    case 6:
      return gemv_for<6>(w, rows, cols, x, y, y_f32, beta, stream);
    case 7:
      return gemv_for<7>(w, rows, cols, x, y, y_f32, beta, stream);
    case 8:
      return gemv_for<8>(w, rows, cols, x, y, y_f32, beta, stream);
    default:
      return;  // callers check gemv_supported
  }
}

}  // namespace fs::cuda
