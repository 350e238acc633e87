// Internal to the CUDA backend: the tensor-core decode attention kernel (attention_decode_mma.cu),
// which launch_attention_decode (attention.cu) picks where it applies. Same arguments and outputs
// as launch_attention_decode (kernels.h) without the merge; scale_log2 = scale * log2(e).
#pragma once

#include "backend/cuda/kernels.h"

namespace fs::cuda {

// GQA groups up to 16 fill the 16 rows of an mma fragment.
inline constexpr int32_t kMaxMmaDecodeGroup = 16;

// head_dim 64 or 128 and 1 <= group <= kMaxMmaDecodeGroup.
bool decode_mma_supported(int32_t head_dim, int32_t group);

// Warps per block: 4 (64-key ring stages, 3 blocks per SM at head_dim 128) or 3 (48-key stages,
// 4 blocks per SM), for a grid of num_blocks blocks of max_splits splits per token.
// set_decode_mma_warps(3 or 4) forces one (tests, benchmarks; 0: automatic). Not thread-safe.
void set_decode_mma_warps(int warps);
int decode_mma_warps(int32_t max_splits, int64_t num_blocks, int32_t num_sms);

// Enqueues the split-K decode kernel (one block per split, KV head and token); writes `out` for
// tokens with one split and `partials` for the others. Requires decode_mma_supported().
void launch_decode_mma(const bf16* q, const bf16* kv_cache, KvLayout kv, int32_t layer,
                       const DecodeDesc* descs, const int32_t* block_tables, int32_t num_tokens,
                       int32_t max_splits, int32_t split_len, int32_t num_heads, float scale_log2,
                       float* partials, bf16* out, cudaStream_t stream);

}  // namespace fs::cuda
