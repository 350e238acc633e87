// KV cache bookkeeping: block ids, owners and location (device pool / host pool), per-job block
// tables. No pointers and no bytes: the backend owns the arenas and carries out the copy plans this
// class returns (STYLE.md habit 5). Not thread-safe: one engine thread owns it.
#pragma once

#include <cstdint>
#include <unordered_map>
#include <vector>

#include "core/status.h"

namespace fs::kv {

using JobId = int64_t;
using BlockId = int32_t;  // index into one pool: [0, num_device_blocks) or [0, num_host_blocks)

inline constexpr JobId kNoJob = -1;

enum class Location { kDevice, kHost };
const char* location_name(Location location);

// One block copy between pools: src in the pool the job leaves, dst in the pool it joins.
struct BlockMove {
  JobId job = kNoJob;
  BlockId src = 0;
  BlockId dst = 0;
};

// A job's KV blocks in token order. All blocks of a job live in one pool at a time.
struct KvBlockTable {
  Location location = Location::kDevice;
  std::vector<BlockId> blocks;
};

class KvPools {
 public:
  KvPools(int32_t num_device_blocks, int32_t num_host_blocks, int32_t block_size_tokens);

  int32_t block_size_tokens() const { return block_size_tokens_; }
  int32_t num_device_blocks() const { return static_cast<int32_t>(device_owner_.size()); }
  int32_t num_host_blocks() const { return static_cast<int32_t>(host_owner_.size()); }
  int32_t num_free_device_blocks() const { return static_cast<int32_t>(device_free_.size()); }
  int32_t num_free_host_blocks() const { return static_cast<int32_t>(host_free_.size()); }
  // Blocks needed to hold num_tokens tokens (ceil).
  int32_t blocks_for_tokens(int64_t num_tokens) const;

  bool can_allocate(int32_t num_device_blocks) const {
    return num_device_blocks <= num_free_device_blocks();
  }
  // Appends num_blocks fresh device blocks to the job's table (creating it). The job must not be
  // host-resident. Returns the new ids, or kResourceExhausted (state unchanged) when they do not
  // fit.
  Result<std::vector<BlockId>> allocate(JobId job, int32_t num_blocks);
  // Releases all blocks of the job, in either pool; no-op for an unknown job.
  void free(JobId job);

  // Plans and books the copy of all the job's blocks device -> host (offload) or host -> device
  // (upload). The returned moves are what the backend must copy; the bookkeeping already reflects
  // them (src blocks are free for reuse once the copies complete, which the engine orders).
  // kResourceExhausted (state unchanged) if the destination pool lacks room.
  Result<std::vector<BlockMove>> offload(JobId job);
  Result<std::vector<BlockMove>> upload(JobId job);

  bool has_job(JobId job) const { return tables_.count(job) != 0; }
  // The job's table; empty device table for an unknown job.
  const KvBlockTable& table(JobId job) const;
  int32_t num_blocks(JobId job) const { return static_cast<int32_t>(table(job).blocks.size()); }
  Location location(JobId job) const { return table(job).location; }
  int64_t num_jobs() const { return static_cast<int64_t>(tables_.size()); }

  // Aborts (FS_CHECK) unless free + used = total in each pool, every table's blocks are owned by
  // its job in its pool, and no block is owned twice.
  void check_integrity() const;

 private:
  Result<std::vector<BlockMove>> move(JobId job, Location to);

  int32_t block_size_tokens_;
  std::vector<JobId> device_owner_;   // [num_device_blocks], kNoJob when free
  std::vector<JobId> host_owner_;     // [num_host_blocks]
  std::vector<BlockId> device_free_;  // stack of free ids
  std::vector<BlockId> host_free_;
  std::unordered_map<JobId, KvBlockTable> tables_;
};

}  // namespace fs::kv
