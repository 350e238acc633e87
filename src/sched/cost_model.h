// The cost model: how long an iteration and a swap take on one setup (model x GPU). Skip-join MLFQ
// reads it to predict a job's first-iteration time; the simulator reads it instead of running a
// model.
//
// JSON schema (written by `fastserve profile`, read by `fastserve sim --model-profile`; all times
// in seconds, documented in docs/SCHEDULING.md):
//   {
//     "name": "opt-13b fp16, 1x A100",          // free text
//     "source": "where the numbers come from",  // free text, optional
//     "block_size_tokens": 16,                  // KV block size the engine uses
//     "kv_bytes_per_token": 819200,             // K+V bytes of one token over all layers
//     "prefill": [[tokens, seconds], ...],      // one prompt of `tokens` tokens at batch size 1
//     "decode": [[batch_size, context_tokens, seconds], ...],  // one decode iteration; context =
//                                               //   sum over the batch of each job's KV length
//     "swap_bandwidth_bytes_per_s": 2.5e10,     // host<->device KV copies (batched)
//     "device_kv_bytes": 1.2e10,                // optional: default KV pool on the device
//     "host_kv_bytes": 6.4e10                   // optional: default KV pool in host memory
//   }
// prefill is interpolated piecewise-linearly in tokens (extrapolated linearly from the last two
// points); decode is the least-squares plane seconds = c0 + c1*batch_size + c2*context_tokens.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "core/status.h"
#include "sched/iteration_plan.h"

namespace fs::sched {

struct PrefillPoint {
  double tokens = 0;
  double seconds = 0;
};
struct DecodePoint {
  double batch_size = 0;
  double context_tokens = 0;
  double seconds = 0;
};

struct CostModelSpec {
  std::string name;
  std::string source;
  int32_t block_size_tokens = 16;
  double kv_bytes_per_token = 0;
  std::vector<PrefillPoint> prefill;  // sorted by tokens at load
  std::vector<DecodePoint> decode;
  double swap_bandwidth_bytes_per_s = 0;
  double device_kv_bytes = 0;  // 0: not given
  double host_kv_bytes = 0;

  Status validate() const;
};

class CostModel {
 public:
  // Validates the spec and fits the decode plane. kInvalidArgument naming the bad field.
  static Result<CostModel> from_spec(CostModelSpec spec);
  static Result<CostModel> from_json_text(const std::string& text);
  static Result<CostModel> load(const std::string& path);
  std::string to_json_text() const;

  const CostModelSpec& spec() const { return spec_; }
  double prefill_time_s(double num_tokens) const;
  double decode_time_s(double batch_size, double context_tokens) const;
  double swap_time_s(double num_bytes) const;
  double block_bytes() const { return spec_.kv_bytes_per_token * spec_.block_size_tokens; }
  // Forward time of a batch: decode entries (1 token on an existing context) follow the decode
  // plane; prefill and recompute chunks add prefill_time(sum of their tokens) minus the decode
  // intercept (weights are read once per iteration). 0 for an empty batch.
  double forward_time_s(const IterationPlan& plan) const;
  // Wall time of the whole plan: blocking swaps, then the forward overlapped with proactive swaps.
  double iteration_time_s(const IterationPlan& plan) const;
  // Decode-plane coefficients (c0, c1, c2), for reports.
  double decode_c0() const { return c_[0]; }
  double decode_c1() const { return c_[1]; }
  double decode_c2() const { return c_[2]; }

 private:
  CostModelSpec spec_;
  double c_[3] = {0, 0, 0};
};

}  // namespace fs::sched
