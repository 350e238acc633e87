// A trivial kernel so the CUDA toolchain path (nvcc, sm_90 code, cudart) is exercised by every build.
#include "backend/cuda/device_info.h"

#include <cuda_runtime.h>

namespace fs::cuda {
namespace {
__global__ void add_one(int* x) { *x += 1; }
}  // namespace

bool smoke_test() {
  int* d = nullptr;
  if (cudaMalloc(&d, sizeof(int)) != cudaSuccess) return false;
  int h = 41;
  bool ok = cudaMemcpy(d, &h, sizeof(int), cudaMemcpyHostToDevice) == cudaSuccess;
  add_one<<<1, 1>>>(d);
  ok = ok && cudaMemcpy(&h, d, sizeof(int), cudaMemcpyDeviceToHost) == cudaSuccess && h == 42;
  cudaFree(d);
  return ok;
}

}  // namespace fs::cuda
