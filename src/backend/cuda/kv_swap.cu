// KV swap kernels: a gather/scatter block copy that works over mapped pinned host memory, and a
// test-only spin. Launchers in kv_swap_kernels.h; host logic in kv_swap.cc.
#include <algorithm>
#include <cstring>

#include "backend/cuda/kv_swap_kernels.h"

namespace fs::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kVecsPerThread = 4;                                // 16 B loads in flight per thread
constexpr int64_t kChunkBytes = kThreads * kVecsPerThread * 16;  // 16 KiB per CTA iteration

struct PairList {
  BlockPair pairs[kMaxPairsPerLaunch];
};

// Grid-stride over (pair, 16 KiB chunk). Each thread issues all its loads before any store, so a
// CTA keeps 16 KiB of PCIe reads in flight (reads of mapped host memory have ~1-2 us latency).
__global__ void __launch_bounds__(kThreads)
    copy_blocks_kernel(const uint4* __restrict__ src_base, uint4* __restrict__ dst_base,
                       int64_t block_vecs, int64_t chunks_per_block, int num_pairs,
                       const __grid_constant__ PairList list) {
  const int64_t total = chunks_per_block * num_pairs;
  for (int64_t c = blockIdx.x; c < total; c += gridDim.x) {
    const int p = static_cast<int>(c / chunks_per_block);
    const int64_t chunk = c - p * chunks_per_block;
    const uint4* src = src_base + list.pairs[p].src * block_vecs;
    uint4* dst = dst_base + list.pairs[p].dst * block_vecs;
    const int64_t first = chunk * (kThreads * kVecsPerThread) + threadIdx.x;
    uint4 v[kVecsPerThread];
#pragma unroll
    for (int k = 0; k < kVecsPerThread; ++k) {
      const int64_t i = first + k * kThreads;
      if (i < block_vecs) v[k] = src[i];
    }
#pragma unroll
    for (int k = 0; k < kVecsPerThread; ++k) {
      const int64_t i = first + k * kThreads;
      if (i < block_vecs) dst[i] = v[k];
    }
  }
}

__global__ void spin_kernel(int64_t ns) {
  uint64_t start = 0, now = 0;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(start));
  do {
    __nanosleep(1000);
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now));
  } while (static_cast<int64_t>(now - start) < ns);
}

}  // namespace

cudaError_t launch_copy_blocks(const void* src_base, void* dst_base, int64_t block_bytes,
                               const BlockPair* pairs, int num_pairs, int num_ctas,
                               cudaStream_t stream) {
  if (num_pairs <= 0) return cudaSuccess;
  if (num_pairs > kMaxPairsPerLaunch || block_bytes <= 0 || block_bytes % 16 != 0 ||
      num_ctas <= 0 || reinterpret_cast<uintptr_t>(src_base) % 16 != 0 ||
      reinterpret_cast<uintptr_t>(dst_base) % 16 != 0) {
    return cudaErrorInvalidValue;
  }
  PairList list{};
  std::memcpy(list.pairs, pairs, sizeof(BlockPair) * num_pairs);
  const int64_t chunks_per_block = (block_bytes + kChunkBytes - 1) / kChunkBytes;
  const int64_t total = chunks_per_block * num_pairs;
  const int grid = static_cast<int>(std::min<int64_t>(total, num_ctas));
  copy_blocks_kernel<<<grid, kThreads, 0, stream>>>(static_cast<const uint4*>(src_base),
                                                    static_cast<uint4*>(dst_base), block_bytes / 16,
                                                    chunks_per_block, num_pairs, list);
  return cudaGetLastError();
}

cudaError_t launch_spin(int64_t ns, cudaStream_t stream) {
  spin_kernel<<<1, 1, 0, stream>>>(ns);
  return cudaGetLastError();
}

}  // namespace fs::cuda
