// Paged causal attention over a ragged batch: several sequences, each with some new tokens (a prefill
// chunk or one decode token) appended after `num_past` tokens already in its KV blocks.
#pragma once

#include <cstdint>
#include <span>

#include "backend/cpu/kv_cache.h"
#include "core/thread_pool.h"

namespace fs::cpu {

// One sequence of the batch. Its new tokens are rows [token_begin, token_begin + num_new) of the
// batch's activations; they sit at positions num_past .. num_past + num_new - 1. Position p lives in
// block block_table[p / block_size], slot p % block_size.
struct AttentionSeq {
  int64_t token_begin = 0;
  int64_t num_new = 0;
  int64_t num_past = 0;
  std::span<const int32_t> block_table;  // must cover num_past + num_new positions
};

// Stores the new tokens' K and V rows of `layer` into their slots.
// k, v: [num_tokens, num_kv_heads, head_dim] (batch rows).
void write_kv(KvCache& cache, int64_t layer, std::span<const AttentionSeq> seqs, const float* k,
              const float* v);

// out[t, h, :] = softmax(q[t, h, :] . K[0..pos_t] * scale) V for each new token t at position pos_t,
// with KV head h / (num_heads / num_kv_heads) (GQA). q: [num_tokens, num_heads, head_dim];
// out: [num_tokens, num_heads * head_dim]. Reads K/V (including this step's) from the cache, so call
// write_kv for the layer first. Threaded over (token, head).
void paged_attention(const KvCache& cache, int64_t layer, std::span<const AttentionSeq> seqs,
                     const float* q, int64_t num_heads, float scale, float* out, ThreadPool& pool);

// The same, computed token by token with no threading and double accumulation: the test reference.
void paged_attention_reference(const KvCache& cache, int64_t layer,
                               std::span<const AttentionSeq> seqs, const float* q,
                               int64_t num_heads, float scale, float* out);

}  // namespace fs::cpu
