#include "model/forward_seq.h"

namespace fs {

Status validate_forward_seq(const ForwardSeq& s, size_t index, const ModelConfig& c,
                            int64_t block_size, int64_t num_blocks) {
  const int64_t n = static_cast<int64_t>(s.tokens.size());
  if (n == 0) return invalid_argument("sequence {} of the batch has no new tokens", index);
  for (int32_t t : s.tokens) {
    if (t < 0 || t >= c.vocab_size) {
      return invalid_argument("token id {} is outside the vocabulary [0, {})", t, c.vocab_size);
    }
  }
  if (s.num_past + n > c.max_position_embeddings) {
    return make_error(StatusCode::kOutOfRange, "{} tokens exceed the context length {}",
                      s.num_past + n, c.max_position_embeddings);
  }
  if (static_cast<int64_t>(s.block_table.size()) * block_size < s.num_past + n) {
    return invalid_argument("block table of sequence {} covers {} positions, needs {}", index,
                            s.block_table.size() * block_size, s.num_past + n);
  }
  for (int32_t b : s.block_table) {
    if (b < 0 || b >= num_blocks) {
      return invalid_argument("block id {} outside the cache's {} blocks", b, num_blocks);
    }
  }
  return Status::ok();
}

}  // namespace fs
