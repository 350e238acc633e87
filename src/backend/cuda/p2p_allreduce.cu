#include "backend/cuda/kernels.h"
#include "backend/cuda/launch.cuh"

namespace fs::cuda {
namespace {

constexpr int kThreads = 256;
// An exchange slot holds this bit pattern (-0.0f) until the sender's value lands in it; a sender
// sends -0.0 as +0.0 (the sum is the same), so a received value never looks like it.
constexpr uint32_t kEmpty = 0x80000000u;

struct Peers {
  float* recv[kP2pMaxRanks];  // every rank's exchange area [3][size][max_floats]
};

__device__ __forceinline__ float unempty(float v) {
  return __float_as_uint(v) == kEmpty ? 0.0f : v;
}
__device__ __forceinline__ float4 unempty(float4 v) {
  return make_float4(unempty(v.x), unempty(v.y), unempty(v.z), unempty(v.w));
}
__device__ __forceinline__ bool landed(float v) { return __float_as_uint(v) != kEmpty; }
__device__ __forceinline__ bool landed(float4 v) {
  return landed(v.x) && landed(v.y) && landed(v.z) && landed(v.w);
}
__device__ __forceinline__ float add(float a, float b) { return a + b; }
__device__ __forceinline__ float4 add(float4 a, float4 b) {
  return make_float4(a.x + b.x, a.y + b.y, a.z + b.z, a.w + b.w);
}
// Loads that go to memory every time (a peer's stores land in this GPU's L2, not in L1).
__device__ __forceinline__ float load_volatile(const float* p) {
  float v;
  asm volatile("ld.volatile.global.f32 %0, [%1];" : "=f"(v) : "l"(p) : "memory");
  return v;
}
__device__ __forceinline__ float4 load_volatile(const float4* p) {
  float4 v;
  asm volatile("ld.volatile.global.v4.f32 {%0, %1, %2, %3}, [%4];"
               : "=f"(v.x), "=f"(v.y), "=f"(v.z), "=f"(v.w)
               : "l"(p)
               : "memory");
  return v;
}

// One call = one step. Rank q's exchange area holds, per phase (step % 3), one slot per sender of
// max_floats. Every rank stores its values into its slot of every peer's area for this phase, then
// waits until each peer's values have landed in its own area (each element checked on its own: no
// flags, no fences: one trip over the link) and sums them in rank order (bit-identical on every
// rank). It then empties its area of the step before: no peer writes there now (a peer is at most
// one step ahead, writing the next phase; it reaches the phase after only once this rank has sent
// the next step's values, which it does after this kernel). state [gridDim][2] (this rank's):
// the phase and the element count of the last call; every block keeps its own copy, and every
// block of a call sees the same values.
template <typename T>
__global__ void p2p_allreduce_kernel(float* x, int64_t n, int64_t max_floats, Peers peers,
                                     int rank, int size, uint32_t* state) {
  // Programmatic dependent launch (launch.cuh): this kernel is resident before the projection that
  // feeds it ends, and the next kernel loads its weights while this one exchanges.
  pdl_wait();
  pdl_launch_dependents();
  constexpr int kWidth = sizeof(T) / sizeof(float);
  const uint32_t phase = state[2 * blockIdx.x];
  const int64_t last_n = state[2 * blockIdx.x + 1];
  const int64_t area = static_cast<int64_t>(size) * max_floats;  // floats per phase
  const int64_t m = n / kWidth;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t first = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  T* xs = reinterpret_cast<T*>(x);
  for (int64_t i = first; i < m; i += stride) {
    const T v = unempty(xs[i]);
    for (int p = 0; p < size; ++p) {
      if (p == rank) continue;
      reinterpret_cast<T*>(peers.recv[p] + phase * area + rank * max_floats)[i] = v;
    }
  }
  float* mine = peers.recv[rank];
  for (int64_t i = first; i < m; i += stride) {
    T acc{};
    for (int r = 0; r < size; ++r) {
      T v;
      if (r == rank) {
        v = unempty(xs[i]);
      } else {
        const T* slot = reinterpret_cast<const T*>(mine + phase * area + r * max_floats) + i;
        do {
          v = load_volatile(slot);
        } while (!landed(v));
      }
      acc = r == 0 ? v : add(acc, v);
    }
    xs[i] = acc;
  }
  const uint32_t before = (phase + 2) % 3;
  for (int r = 0; r < size; ++r) {
    if (r == rank) continue;
    float* slot = mine + before * area + r * max_floats;
    for (int64_t i = first; i < last_n; i += stride) slot[i] = __uint_as_float(kEmpty);
  }
  if (threadIdx.x == 0) {
    state[2 * blockIdx.x] = (phase + 1) % 3;
    state[2 * blockIdx.x + 1] = static_cast<uint32_t>(n);
  }
}

}  // namespace

void launch_p2p_allreduce(float* x, int64_t n, int64_t max_floats, float* const* recv, int rank,
                          int size, uint32_t* state, int blocks, cudaStream_t stream) {
  Peers peers{};
  for (int r = 0; r < size; ++r) peers.recv[r] = recv[r];
  // Always the same grid: every block's state advances on every call.
  if (n % 4 == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0) {
    launch_kernel(p2p_allreduce_kernel<float4>, blocks, kThreads, 0, stream, x, n, max_floats,
                  peers, rank, size, state);
  } else {
    launch_kernel(p2p_allreduce_kernel<float>, blocks, kThreads, 0, stream, x, n, max_floats,
                  peers, rank, size, state);
  }
}

}  // namespace fs::cuda
