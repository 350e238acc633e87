// Small device helpers on packed bf16 shared by the kernels (kernels.cu) and the fused GEMVs
// (gemv.cu).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

namespace fs::cuda {

// silu(gate) * up for 8 bf16 pairs in 16 bytes each (the SwiGLU activation), f32 arithmetic.
__device__ __forceinline__ uint4 silu_mul_bf16x8(uint4 gate, uint4 up) {
  const __nv_bfloat162* g2 = reinterpret_cast<const __nv_bfloat162*>(&gate);
  const __nv_bfloat162* u2 = reinterpret_cast<const __nv_bfloat162*>(&up);
  uint4 out;
  __nv_bfloat162* o2 = reinterpret_cast<__nv_bfloat162*>(&out);
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const float2 g = __bfloat1622float2(g2[j]), u = __bfloat1622float2(u2[j]);
    o2[j] = __floats2bfloat162_rn(g.x / (1.0f + __expf(-g.x)) * u.x,
                                  g.y / (1.0f + __expf(-g.y)) * u.y);
  }
  return out;
}

}  // namespace fs::cuda
