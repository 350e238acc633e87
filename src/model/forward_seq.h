// One sequence of a forward call, shared by every executor (CPU, CUDA, distributed).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "core/status.h"
#include "model/model_config.h"

namespace fs {

// `tokens` are new tokens at positions num_past .. num_past + n - 1; the sequence's KV for earlier
// positions is already in the blocks of block_table, which must cover all num_past + n positions
// (the caller allocates blocks; see kv/).
struct ForwardSeq {
  std::span<const int32_t> tokens;
  int64_t num_past = 0;
  std::span<const int32_t> block_table;
  bool all_logits = false;  // logits for every new token (prompt logprobs, tests), else the last only
};

// Checks sequence `index` of a batch before any work (every executor calls it, so every backend and
// every rank rejects the same batches alike): at least one new token, ids inside the vocabulary,
// positions inside the context, a block table covering every position with ids in [0, num_blocks).
// kInvalidArgument or kOutOfRange naming the problem.
Status validate_forward_seq(const ForwardSeq& seq, size_t index, const ModelConfig& config,
                            int64_t block_size, int64_t num_blocks);

}  // namespace fs
