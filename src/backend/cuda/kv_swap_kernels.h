// Launchers for the KV swap kernels (kv_swap.cu). Internal to backend/cuda: plain C++ types only,
// so both nvcc (.cu) and g++ (kv_swap.cc) include it; no fmt, no Status.
#pragma once

#include <cstdint>

#include <cuda_runtime.h>

namespace fs::cuda {

// One block copy inside a phase: block indices into the phase's source and destination bases.
struct BlockPair {
  int32_t src = 0;
  int32_t dst = 0;
};

// Most pairs one launch takes (they travel as a kernel parameter: 8 B each, 32 KiB limit).
inline constexpr int kMaxPairsPerLaunch = 3072;

// Copies pairs[i]: block_bytes bytes from src_base + src * block_bytes to dst_base + dst *
// block_bytes, for i < num_pairs (<= kMaxPairsPerLaunch). Either base may be mapped pinned host
// memory (the SMs then read or write over PCIe: a gather/scatter without the copy engines).
// block_bytes must be a multiple of 16 and the bases 16-byte aligned. num_ctas caps the grid
// (the SMs it occupies). Returns the launch error.
cudaError_t launch_copy_blocks(const void* src_base, void* dst_base, int64_t block_bytes,
                               const BlockPair* pairs, int num_pairs, int num_ctas,
                               cudaStream_t stream);

// Test-only: a kernel that spins for about `ns` nanoseconds on `stream` (slows a copy stream down
// so tests can check who waits for whom).
cudaError_t launch_spin(int64_t ns, cudaStream_t stream);

}  // namespace fs::cuda
