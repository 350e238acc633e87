#include "kv/kv_pools.h"

#include "core/check.h"

namespace fs::kv {

const char* location_name(Location location) {
  switch (location) {
    case Location::kDevice:
      return "device";
    case Location::kHost:
      return "host";
  }
  return "?";
}

KvPools::KvPools(int32_t num_device_blocks, int32_t num_host_blocks, int32_t block_size_tokens)
    : block_size_tokens_(block_size_tokens),
      device_owner_(num_device_blocks, kNoJob),
      host_owner_(num_host_blocks, kNoJob) {
  FS_CHECK(num_device_blocks >= 0 && num_host_blocks >= 0 && block_size_tokens > 0);
  // Stacks popped from the back: hand out low ids first.
  for (BlockId b = num_device_blocks - 1; b >= 0; --b) device_free_.push_back(b);
  for (BlockId b = num_host_blocks - 1; b >= 0; --b) host_free_.push_back(b);
}

int32_t KvPools::blocks_for_tokens(int64_t num_tokens) const {
  return static_cast<int32_t>((num_tokens + block_size_tokens_ - 1) / block_size_tokens_);
}

const KvBlockTable& KvPools::table(JobId job) const {
  static const KvBlockTable kEmpty;
  auto it = tables_.find(job);
  return it == tables_.end() ? kEmpty : it->second;
}

Result<std::vector<BlockId>> KvPools::allocate(JobId job, int32_t num_blocks) {
  FS_CHECK(job != kNoJob && num_blocks >= 0);
  if (!can_allocate(num_blocks)) {
    return make_error(StatusCode::kResourceExhausted,
                      "job {}: {} device KV blocks requested, {} free", job, num_blocks,
                      num_free_device_blocks());
  }
  KvBlockTable& t = tables_[job];
  FS_CHECK(t.location == Location::kDevice, "job {} allocates while host-resident", job);
  std::vector<BlockId> fresh;
  fresh.reserve(num_blocks);
  for (int32_t i = 0; i < num_blocks; ++i) {
    const BlockId b = device_free_.back();
    device_free_.pop_back();
    device_owner_[b] = job;
    t.blocks.push_back(b);
    fresh.push_back(b);
  }
  return fresh;
}

void KvPools::free(JobId job) {
  auto it = tables_.find(job);
  if (it == tables_.end()) return;
  const bool on_device = it->second.location == Location::kDevice;
  auto& owner = on_device ? device_owner_ : host_owner_;
  auto& free_list = on_device ? device_free_ : host_free_;
  for (BlockId b : it->second.blocks) {
    FS_CHECK(owner[b] == job, "block {} of job {} owned by {}", b, job, owner[b]);
    owner[b] = kNoJob;
    free_list.push_back(b);
  }
  tables_.erase(it);
}

Result<std::vector<BlockMove>> KvPools::offload(JobId job) { return move(job, Location::kHost); }
Result<std::vector<BlockMove>> KvPools::upload(JobId job) { return move(job, Location::kDevice); }

Result<std::vector<BlockMove>> KvPools::move(JobId job, Location to) {
  auto it = tables_.find(job);
  FS_CHECK(it != tables_.end(), "job {} has no KV blocks to move", job);
  KvBlockTable& t = it->second;
  FS_CHECK(t.location != to, "job {} already on {}", job, location_name(to));
  const bool to_device = to == Location::kDevice;
  auto& src_owner = to_device ? host_owner_ : device_owner_;
  auto& src_free = to_device ? host_free_ : device_free_;
  auto& dst_owner = to_device ? device_owner_ : host_owner_;
  auto& dst_free = to_device ? device_free_ : host_free_;
  if (dst_free.size() < t.blocks.size()) {
    return make_error(StatusCode::kResourceExhausted, "job {}: {} blocks to move to {}, {} free",
                      job, t.blocks.size(), location_name(to), dst_free.size());
  }
  std::vector<BlockMove> moves;
  moves.reserve(t.blocks.size());
  for (BlockId& b : t.blocks) {
    const BlockId dst = dst_free.back();
    dst_free.pop_back();
    dst_owner[dst] = job;
    src_owner[b] = kNoJob;
    src_free.push_back(b);
    moves.push_back(BlockMove{job, b, dst});
    b = dst;
  }
  t.location = to;
  return moves;
}

void KvPools::check_integrity() const {
  std::vector<JobId> seen_device(device_owner_.size(), kNoJob);
  std::vector<JobId> seen_host(host_owner_.size(), kNoJob);
  size_t used_device = 0, used_host = 0;
  for (const auto& [job, t] : tables_) {
    const bool on_device = t.location == Location::kDevice;
    const auto& owner = on_device ? device_owner_ : host_owner_;
    auto& seen = on_device ? seen_device : seen_host;
    for (BlockId b : t.blocks) {
      FS_CHECK(b >= 0 && static_cast<size_t>(b) < owner.size(), "job {}: bad block {}", job, b);
      FS_CHECK(seen[b] == kNoJob, "block {} in tables of jobs {} and {}", b, seen[b], job);
      FS_CHECK(owner[b] == job, "block {} listed by job {}, owned by {}", b, job, owner[b]);
      seen[b] = job;
    }
    (on_device ? used_device : used_host) += t.blocks.size();
  }
  FS_CHECK(used_device + device_free_.size() == device_owner_.size(),
           "device: used {} + free {} != total {}", used_device, device_free_.size(),
           device_owner_.size());
  FS_CHECK(used_host + host_free_.size() == host_owner_.size(), "host: used {} + free {} != {}",
           used_host, host_free_.size(), host_owner_.size());
  for (BlockId b : device_free_) FS_CHECK(device_owner_[b] == kNoJob, "free block {} owned", b);
  for (BlockId b : host_free_) FS_CHECK(host_owner_[b] == kNoJob, "free host block {} owned", b);
}

}  // namespace fs::kv
