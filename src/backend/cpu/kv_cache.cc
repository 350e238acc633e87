#include "backend/cpu/kv_cache.h"

#include "core/check.h"

namespace fs::cpu {

KvCache::KvCache(const KvCacheShape& shape)
    : shape_(shape), elem_bytes_(kv_dtype_bytes(shape.dtype)) {
  FS_CHECK(shape.num_layers > 0 && shape.num_kv_heads > 0 && shape.head_dim > 0 &&
               shape.block_size > 0 && shape.num_blocks > 0,
           "KvCache: every dimension must be positive");
  data_.reset(static_cast<uint8_t*>(std::calloc(static_cast<size_t>(shape.num_blocks),
                                                static_cast<size_t>(shape.block_bytes()))));
  FS_CHECK(data_ != nullptr, "KvCache: cannot allocate {} blocks of {} bytes", shape.num_blocks,
           shape.block_bytes());
}

}  // namespace fs::cpu
