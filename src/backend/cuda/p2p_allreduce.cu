#include "backend/cuda/kernels.h"
#include "backend/cuda/launch.cuh"
#include "backend/cuda/p2p_exchange.cuh"

namespace fs::cuda {
namespace {

constexpr int kThreads = 256;

// x [n] = the sum over ranks of x (p2p_exchange.cuh has the steps), x read as T (float or float4).
template <typename T>
__global__ void p2p_allreduce_kernel(float* x, int64_t n, P2pExchange ex) {
  // Programmatic dependent launch (launch.cuh): this kernel is resident before the projection that
  // feeds it ends, and the next kernel loads its weights while this one exchanges.
  pdl_wait();
  pdl_launch_dependents();
  const ExchangeStep step = exchange_begin(ex);
  const int64_t m = n / (sizeof(T) / sizeof(float));
  T* xs = reinterpret_cast<T*>(x);
  exchange_send<T>(ex, step.phase, xs, m);
  for (int64_t i = exchange_first(); i < m; i += exchange_stride()) {
    xs[i] = exchange_sum<T>(ex, step.phase, xs[i], i, /*wait=*/true);
  }
  exchange_clear_before(ex, step);
  exchange_finish(ex, step, n);
}

}  // namespace

void launch_p2p_allreduce(float* x, int64_t n, const P2pExchange& ex, int blocks,
                          cudaStream_t stream) {
  if (n % 4 == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0) {
    launch_kernel(p2p_allreduce_kernel<float4>, blocks, kThreads, 0, stream, x, n, ex);
  } else {
    launch_kernel(p2p_allreduce_kernel<float>, blocks, kThreads, 0, stream, x, n, ex);
  }
}

}  // namespace fs::cuda
