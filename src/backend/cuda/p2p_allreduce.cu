#include "backend/cuda/kernels.h"
#include "backend/cuda/launch.cuh"

namespace fs::cuda {
namespace {

constexpr int kThreads = 512;

struct Peers {
  float* data[kP2pMaxRanks];
  uint32_t* flags[kP2pMaxRanks];
};

__device__ __forceinline__ void store_release_sys(uint32_t* p, uint32_t v) {
  asm volatile("st.release.sys.global.u32 [%0], %1;" ::"l"(p), "r"(v) : "memory");
}

__device__ __forceinline__ uint32_t load_acquire_sys(const uint32_t* p) {
  uint32_t v;
  asm volatile("ld.acquire.sys.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
  return v;
}

// Block b handles elements b * kThreads + t + k * grid * kThreads; its flag in each rank's memory is
// flags[b][sender]. Step s (this block's counter + 1) uses data buffer s & 1.
__global__ void p2p_allreduce_kernel(float* x, int64_t n, int64_t max_floats, Peers peers,
                                     int rank, int size, uint32_t* counters) {
  // Programmatic dependent launch (launch.cuh): this kernel is resident before the projection that
  // feeds it ends, and the next kernel loads its weights while this one exchanges.
  pdl_wait();
  pdl_launch_dependents();
  const int b = blockIdx.x;
  const uint32_t step = counters[b] + 1;
  const int64_t half = (step & 1) * max_floats;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kThreads;
  float* mine = peers.data[rank] + half;
  for (int64_t i = static_cast<int64_t>(b) * kThreads + threadIdx.x; i < n; i += stride) {
    mine[i] = x[i];
  }
  __syncthreads();
  const int peer = threadIdx.x;
  if (peer < size && peer != rank) {
    __threadfence_system();
    store_release_sys(peers.flags[peer] + b * kP2pMaxRanks + rank, step);
    const uint32_t* flag = peers.flags[rank] + b * kP2pMaxRanks + peer;
    // A peer may already be one step ahead (it signals the next step before we read this one).
    while (static_cast<int32_t>(load_acquire_sys(flag) - step) < 0) {
    }
  }
  __syncthreads();
  for (int64_t i = static_cast<int64_t>(b) * kThreads + threadIdx.x; i < n; i += stride) {
    float acc = 0.0f;
    for (int r = 0; r < size; ++r) acc += r == rank ? x[i] : __ldcv(peers.data[r] + half + i);
    x[i] = acc;
  }
  if (threadIdx.x == 0) counters[b] = step;
}

}  // namespace

void launch_p2p_allreduce(float* x, int64_t n, int64_t max_floats, float* const* data,
                          uint32_t* const* flags, int rank, int size, uint32_t* counters,
                          cudaStream_t stream) {
  Peers peers{};
  for (int r = 0; r < size; ++r) {
    peers.data[r] = data[r];
    peers.flags[r] = flags[r];
  }
  // Always the same grid: element i belongs to the same block (and so to the same step counter
  // and buffer parity) in every call, which is what makes reusing a buffer two steps later safe.
  launch_kernel(p2p_allreduce_kernel, kP2pBlocks, kThreads, 0, stream, x, n, max_floats, peers,
                rank, size, counters);
}

}  // namespace fs::cuda
