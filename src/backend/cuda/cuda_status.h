// CUDA and cuBLAS errors as Status (STYLE.md habit 6: CUDA calls become a Status in the executor).
// Host code only (.cc files): uses fmt through core/status.h.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "core/status.h"

namespace fs::cuda {

// kResourceExhausted for out-of-memory, kInternal otherwise; the message names the call.
inline Status cuda_status(cudaError_t err, const char* what) {
  const StatusCode code =
      err == cudaErrorMemoryAllocation ? StatusCode::kResourceExhausted : StatusCode::kInternal;
  return make_error(code, "cuda: {} failed: {}", what, cudaGetErrorString(err));
}

inline Status cublas_status(cublasStatus_t err, const char* what) {
  return make_error(StatusCode::kInternal, "cublas: {} failed: {}", what,
                    cublasGetStatusString(err));
}

}  // namespace fs::cuda

#define FS_CUDA_OK(expr)                                                                        \
  do {                                                                                          \
    const cudaError_t fs_cuda_ok_err_ = (expr);                                                 \
    if (fs_cuda_ok_err_ != cudaSuccess) return ::fs::cuda::cuda_status(fs_cuda_ok_err_, #expr); \
  } while (0)

#define FS_CUBLAS_OK(expr)                                        \
  do {                                                            \
    const cublasStatus_t fs_cublas_ok_err_ = (expr);              \
    if (fs_cublas_ok_err_ != CUBLAS_STATUS_SUCCESS) {             \
      return ::fs::cuda::cublas_status(fs_cublas_ok_err_, #expr); \
    }                                                             \
  } while (0)
