// Device side of the peer-memory all-reduce (p2p_allreduce.h; kernels.h P2pExchange): the steps
// that launch_p2p_allreduce's kernel and the decode GEMV that sends its outputs (gemv.cu) share.
//
// One call = one step. Rank q's exchange area holds, per phase (step % 3), one slot per sender of
// max_floats. Every rank stores its values into its slot of every peer's area for this phase
// (exchange_send), then waits until each peer's values have landed in its own area (each element
// checked on its own: no flags, no fences: one trip over the link) and sums them in rank order
// (exchange_sum: bit-identical on every rank). It then empties its area of the step before
// (exchange_clear_before): no peer writes there now (a peer is at most one step ahead, writing the
// next phase; it reaches the phase after only once this rank has sent the next step's values,
// which it does in a later kernel). Work is split over the grid's blocks by
// exchange_first/exchange_stride; exchange_finish (every block, once) lets the last block of the
// call advance the state for the next call.
#pragma once

#include <cstdint>

#include "backend/cuda/kernels.h"

namespace fs::cuda {

// An exchange slot holds this bit pattern (-0.0f) until the sender's value lands in it; a sender
// sends -0.0 as +0.0 (the sum is the same), so a received value never looks like it.
inline constexpr uint32_t kExchangeEmpty = 0x80000000u;

__device__ __forceinline__ float unempty(float v) {
  return __float_as_uint(v) == kExchangeEmpty ? 0.0f : v;
}
__device__ __forceinline__ float4 unempty(float4 v) {
  return make_float4(unempty(v.x), unempty(v.y), unempty(v.z), unempty(v.w));
}
__device__ __forceinline__ bool landed(float v) { return __float_as_uint(v) != kExchangeEmpty; }
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

// The state of this call (read by every thread before exchange_finish).
struct ExchangeStep {
  uint32_t phase;
  int64_t last_n;  // the element count of the call before (its area is emptied here)
};
__device__ __forceinline__ ExchangeStep exchange_begin(const P2pExchange& ex) {
  return {ex.state[0], static_cast<int64_t>(ex.state[1])};
}
__device__ __forceinline__ int64_t exchange_first() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t exchange_stride() {
  return static_cast<int64_t>(gridDim.x) * blockDim.x;
}
// Rank `from`'s slot for this phase in rank `to`'s area, as T (float or float4).
template <typename T>
__device__ __forceinline__ T* exchange_slot(const P2pExchange& ex, uint32_t phase, int to,
                                            int from) {
  return reinterpret_cast<T*>(ex.recv[to] + (static_cast<int64_t>(phase) * ex.size + from) *
                                                ex.max_floats);
}

// This thread's share of x [m] (in T units) into every peer's slot (none when ex.sent).
template <typename T>
__device__ __forceinline__ void exchange_send(const P2pExchange& ex, uint32_t phase, const T* x,
                                              int64_t m) {
  if (ex.sent) return;
  for (int64_t i = exchange_first(); i < m; i += exchange_stride()) {
    const T v = unempty(x[i]);
    for (int p = 0; p < ex.size; ++p) {
      if (p != ex.rank) exchange_slot<T>(ex, phase, p, ex.rank)[i] = v;
    }
  }
}

// Element i of the sum over ranks (in rank order); mine = this rank's value. wait: poll until
// each peer's value has landed; without it the value must have been seen landed before by this
// thread (a second pass over the same elements).
template <typename T>
__device__ __forceinline__ T exchange_sum(const P2pExchange& ex, uint32_t phase, T mine,
                                          int64_t i, bool wait) {
  T acc{};
  for (int r = 0; r < ex.size; ++r) {
    T v;
    if (r == ex.rank) {
      v = unempty(mine);
    } else {
      const T* slot = exchange_slot<T>(ex, phase, ex.rank, r) + i;
      do {
        v = load_volatile(slot);
      } while (wait && !landed(v));
    }
    acc = r == 0 ? v : add(acc, v);
  }
  return acc;
}

// This thread's share of emptying the previous call's area (its last_n floats per peer).
__device__ __forceinline__ void exchange_clear_before(const P2pExchange& ex,
                                                      const ExchangeStep& step) {
  const uint32_t before = (step.phase + 2) % 3;
  for (int r = 0; r < ex.size; ++r) {
    if (r == ex.rank) continue;
    float* slot = exchange_slot<float>(ex, before, ex.rank, r);
    for (int64_t i = exchange_first(); i < step.last_n; i += exchange_stride()) {
      slot[i] = __uint_as_float(kExchangeEmpty);
    }
  }
}

// Every block once, after all of its threads are done with the exchange (state reads included):
// the last block of the call to get here moves the state on to the next call's phase.
__device__ __forceinline__ void exchange_finish(const P2pExchange& ex, const ExchangeStep& step,
                                                int64_t n) {
  __syncthreads();
  // No fence: this block's reads of the state are done (its stores depended on them), and the
  // next call is a later kernel, which sees the update. A fence here would wait for the stores
  // into the peers' memory to be acknowledged.
  if (threadIdx.x == 0) {
    if (atomicAdd(&ex.state[2], 1u) == gridDim.x - 1) {
      ex.state[0] = (step.phase + 1) % 3;
      ex.state[1] = static_cast<uint32_t>(n);
      ex.state[2] = 0;
    }
  }
}

}  // namespace fs::cuda
