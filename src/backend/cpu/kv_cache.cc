#include "backend/cpu/kv_cache.h"

#include "core/check.h"

namespace fs::cpu {

KvCache::KvCache(const KvCacheShape& shape) : shape_(shape) {
  FS_CHECK(shape.num_layers > 0 && shape.num_kv_heads > 0 && shape.head_dim > 0 &&
               shape.block_size > 0 && shape.num_blocks > 0,
           "KvCache: every dimension must be positive");
  data_.reset(static_cast<float*>(
      std::calloc(static_cast<size_t>(shape.num_blocks * shape.block_floats()), sizeof(float))));
  FS_CHECK(data_ != nullptr, "KvCache: cannot allocate {} blocks of {} bytes", shape.num_blocks,
           shape.block_bytes());
}

}  // namespace fs::cpu
