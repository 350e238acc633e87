// The bytes of a paged KV cache on the CPU: an arena of fixed-size blocks. kv/ owns which job holds
// which block (bookkeeping); this class only stores and copies K/V rows. A block holds `block_size`
// token slots for every layer, so a swap or copy of a job's block moves all its layers at once:
//   block b: [num_layers][2 (K, V)][block_size][num_kv_heads][head_dim] of `dtype`, contiguous.
// dtype f32 (the default) or f16 (half the bytes per token; llama.cpp's default KV type): rows are
// rounded to f16 when written (write_kv) and widened in the attention kernels.
// Not thread-safe for concurrent writers to the same block; distinct blocks may be written
// concurrently.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <memory>

namespace fs::cpu {

enum class KvDtype { kF32, kF16 };

inline int64_t kv_dtype_bytes(KvDtype t) {
  switch (t) {
    case KvDtype::kF32:
      return 4;
    case KvDtype::kF16:
      return 2;
  }
  return 4;
}

struct KvCacheShape {
  int64_t num_layers = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t block_size = 16;  // token slots per block
  int64_t num_blocks = 0;
  KvDtype dtype = KvDtype::kF32;

  // Elements (floats or halves, per dtype) of one token's K or V row.
  int64_t row_floats() const { return num_kv_heads * head_dim; }
  // Elements of one block (all layers).
  int64_t block_floats() const { return num_layers * 2 * block_size * row_floats(); }
  int64_t block_bytes() const { return block_floats() * kv_dtype_bytes(dtype); }
};

class KvCache {
 public:
  explicit KvCache(const KvCacheShape& shape);

  const KvCacheShape& shape() const { return shape_; }

  // [num_kv_heads, head_dim] of the K (kv = 0) or V (kv = 1) row of `slot` in `block` for `layer`.
  // f32 pools only (row_f16 for f16 ones; row_data for either).
  float* row(int64_t block, int64_t layer, int kv, int64_t slot) {
    return reinterpret_cast<float*>(row_data(block, layer, kv, slot));
  }
  const float* row(int64_t block, int64_t layer, int kv, int64_t slot) const {
    return reinterpret_cast<const float*>(row_data(block, layer, kv, slot));
  }
  uint16_t* row_f16(int64_t block, int64_t layer, int kv, int64_t slot) {
    return reinterpret_cast<uint16_t*>(row_data(block, layer, kv, slot));
  }
  uint8_t* row_data(int64_t block, int64_t layer, int kv, int64_t slot) {
    return data_.get() +
           (block_offset(block, layer, kv) + slot * shape_.row_floats()) * elem_bytes_;
  }
  const uint8_t* row_data(int64_t block, int64_t layer, int kv, int64_t slot) const {
    return data_.get() +
           (block_offset(block, layer, kv) + slot * shape_.row_floats()) * elem_bytes_;
  }
  // Whole block (all layers): block_bytes() bytes. For swaps between pools.
  uint8_t* block_data(int64_t b) { return data_.get() + b * shape_.block_bytes(); }
  const uint8_t* block_data(int64_t b) const { return data_.get() + b * shape_.block_bytes(); }
  // The same as floats (f32 pools only): block_floats() floats.
  float* block(int64_t b) { return reinterpret_cast<float*>(block_data(b)); }
  const float* block(int64_t b) const { return reinterpret_cast<const float*>(block_data(b)); }

 private:
  int64_t block_offset(int64_t block, int64_t layer, int kv) const {
    return ((block * shape_.num_layers + layer) * 2 + kv) * shape_.block_size * shape_.row_floats();
  }

  struct FreeDeleter {
    void operator()(uint8_t* p) const { std::free(p); }
  };
  KvCacheShape shape_;
  int64_t elem_bytes_;
  // [num_blocks, block_bytes()], zeroed by calloc: large pools come from fresh zero pages that the
  // kernel maps on first touch, so creating a big pool costs nothing until it is used.
  std::unique_ptr<uint8_t, FreeDeleter> data_;
};

}  // namespace fs::cpu
