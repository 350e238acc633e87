// One sequence of a forward call, shared by every executor (CPU, CUDA, distributed).
#pragma once

#include <cstdint>
#include <span>

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

}  // namespace fs
