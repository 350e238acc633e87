// Kernel launches with programmatic dependent launch (PDL, Hopper): a kernel launched through
// launch_kernel() may start while the kernel before it on the stream is still running, as soon as
// every block of that one has called pdl_launch_dependents(); it runs its prologue (a GEMV's first
// weight loads) and then blocks in pdl_wait() until the previous kernel has completed and its
// writes are visible. This hides the launch latency and the ramp-up of each of the ~300 kernels of
// a decode step, inside CUDA graphs too (stream capture turns it into programmatic graph edges).
//
// Contract for every kernel launched this way: call pdl_wait() before touching any memory that an
// earlier kernel writes, and before any early return (so the kernel never completes before the
// previous one: the chain stays ordered). Reading data no kernel writes (weights) before it is
// fine. Without the launch attribute (set_programmatic_launch(false), or older GPUs) both calls are
// no-ops.
#pragma once

#include <utility>

#include <cuda_runtime.h>

#include "backend/cuda/kernels.h"

namespace fs::cuda {

__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

__device__ __forceinline__ void pdl_launch_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// kernel<<<grid, block, smem_bytes, stream>>>(args...) with the PDL attribute when
// programmatic_launch() is on. Errors surface at the caller's next cudaGetLastError().
template <typename... Params, typename... Args>
void launch_kernel(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem_bytes,
                   cudaStream_t stream, Args&&... args) {
  cudaLaunchConfig_t config{};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = smem_bytes;
  config.stream = stream;
  cudaLaunchAttribute attr{};
  attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr.val.programmaticStreamSerializationAllowed = programmatic_launch() ? 1 : 0;
  config.attrs = &attr;
  config.numAttrs = 1;
  cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...);
}

}  // namespace fs::cuda
