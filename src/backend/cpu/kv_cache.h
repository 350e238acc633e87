// The bytes of a paged KV cache on the CPU: an arena of fixed-size blocks. kv/ owns which job holds
// which block (bookkeeping); this class only stores and copies K/V rows. A block holds `block_size`
// token slots for every layer, so a swap or copy of a job's block moves all its layers at once:
//   block b: [num_layers][2 (K, V)][block_size][num_kv_heads][head_dim] f32, contiguous.
// Not thread-safe for concurrent writers to the same block; distinct blocks may be written concurrently.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <memory>

namespace fs::cpu {

struct KvCacheShape {
  int64_t num_layers = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t block_size = 16;  // token slots per block
  int64_t num_blocks = 0;

  int64_t row_floats() const { return num_kv_heads * head_dim; }          // one token, K or V
  int64_t block_floats() const { return num_layers * 2 * block_size * row_floats(); }
  int64_t block_bytes() const { return block_floats() * static_cast<int64_t>(sizeof(float)); }
};

class KvCache {
 public:
  explicit KvCache(const KvCacheShape& shape);

  const KvCacheShape& shape() const { return shape_; }

  // [num_kv_heads, head_dim] of the K (kv = 0) or V (kv = 1) row of `slot` in `block` for `layer`.
  float* row(int64_t block, int64_t layer, int kv, int64_t slot) {
    return data_.get() + block_offset(block, layer, kv) + slot * shape_.row_floats();
  }
  const float* row(int64_t block, int64_t layer, int kv, int64_t slot) const {
    return data_.get() + block_offset(block, layer, kv) + slot * shape_.row_floats();
  }
  // Whole block (all layers): block_floats() floats. For swaps between pools.
  float* block(int64_t b) { return data_.get() + b * shape_.block_floats(); }
  const float* block(int64_t b) const { return data_.get() + b * shape_.block_floats(); }

 private:
  int64_t block_offset(int64_t block, int64_t layer, int kv) const {
    return ((block * shape_.num_layers + layer) * 2 + kv) * shape_.block_size * shape_.row_floats();
  }

  struct FreeDeleter {
    void operator()(float* p) const { std::free(p); }
  };
  KvCacheShape shape_;
  // [num_blocks, block_floats()], zeroed by calloc: large pools come from fresh zero pages that the
  // kernel maps on first touch, so creating a big pool costs nothing until it is used.
  std::unique_ptr<float, FreeDeleter> data_;
};

}  // namespace fs::cpu
