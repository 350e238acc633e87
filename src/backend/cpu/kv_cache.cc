#include "backend/cpu/kv_cache.h"

#include "core/check.h"

namespace fs::cpu {

KvCache::KvCache(const KvCacheShape& shape) : shape_(shape) {
  FS_CHECK(shape.num_layers > 0 && shape.num_kv_heads > 0 && shape.head_dim > 0 &&
               shape.block_size > 0 && shape.num_blocks > 0,
           "KvCache: every dimension must be positive");
  data_.assign(static_cast<size_t>(shape.num_blocks * shape.block_floats()), 0.0f);
}

}  // namespace fs::cpu
