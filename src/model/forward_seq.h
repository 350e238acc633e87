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
  // Only the argmax of this sequence's logits row and its log-softmax are needed (greedy sampling
  // with no penalties and no top logprobs; not with all_logits). An executor that picks on the
  // device (Executor::supports_greedy_picks) then returns a GreedyPick for the row instead of the
  // row itself; others ignore the flag.
  bool greedy = false;
};

// The greedy choice of one logits row, computed where the logits are: the argmax token (lowest id
// among ties) and its log-softmax. token -1: the row holds a NaN or +inf (a fault in the model's
// output, which fails that request). Layout fixed (8 bytes: token, then logprob): copied as is
// between devices and ranks.
struct GreedyPick {
  int32_t token = -1;
  float logprob = 0.0f;
};
static_assert(sizeof(GreedyPick) == 8);

// Checks sequence `index` of a batch before any work (every executor calls it, so every backend and
// every rank rejects the same batches alike): at least one new token, ids inside the vocabulary,
// positions inside the context, a block table covering every position with ids in [0, num_blocks).
// kInvalidArgument or kOutOfRange naming the problem.
Status validate_forward_seq(const ForwardSeq& seq, size_t index, const ModelConfig& config,
                            int64_t block_size, int64_t num_blocks);

}  // namespace fs
