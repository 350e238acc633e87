#include "sim/simulator.h"

#include <algorithm>
#include <cmath>

#include "core/check.h"

namespace fs::sim {

sched::KvPoolConfig kv_pools_for(const sched::CostModel& cost_model, double device_kv_bytes,
                                 double host_kv_bytes) {
  sched::KvPoolConfig kv;
  kv.block_size_tokens = cost_model.spec().block_size_tokens;
  kv.num_device_blocks =
      static_cast<int32_t>(std::floor(device_kv_bytes / cost_model.block_bytes()));
  kv.num_host_blocks = static_cast<int32_t>(std::floor(host_kv_bytes / cost_model.block_bytes()));
  return kv;
}

Result<SimResult> simulate(const SimConfig& config, const sched::CostModel& cost_model,
                           const std::vector<TraceRequest>& requests,
                           const std::vector<double>& arrivals_s) {
  FS_CHECK(requests.size() == arrivals_s.size());
  FS_RETURN_IF_ERROR(config.scheduler.validate());
  sched::Scheduler scheduler(config.scheduler, config.kv, cost_model);
  SimResult out;
  out.records.resize(requests.size());
  LatencyHistogram itl;
  const int64_t n = static_cast<int64_t>(requests.size());
  int64_t next = 0, num_done = 0, num_batched = 0;
  double now = n > 0 ? arrivals_s[0] : 0.0, busy_s = 0;
  const double start_s = now;
  while (num_done < n) {
    for (; next < n && arrivals_s[next] <= now; ++next) {
      const TraceRequest& r = requests[next];
      sched::JobSpec spec;
      spec.id = next;
      spec.arrival_s = arrivals_s[next];
      spec.num_prompt_tokens = r.num_prompt_tokens;
      spec.max_new_tokens = r.num_output_tokens;  // output length forced, as in the paper
      if (config.tell_oracle) spec.oracle_output_tokens = r.num_output_tokens;
      FS_RETURN_IF_ERROR(scheduler.add(spec, arrivals_s[next]));
      RequestRecord& rec = out.records[next];
      rec.arrival_s = arrivals_s[next];
      rec.num_prompt_tokens = r.num_prompt_tokens;
      rec.num_output_tokens = r.num_output_tokens;
    }
    sched::IterationPlan plan = scheduler.schedule(now);
    if (plan.empty()) {
      FS_CHECK(next < n, "no progress with {} live jobs at t={}", scheduler.num_live_jobs(), now);
      now = std::max(now, arrivals_s[next]);
      continue;
    }
    const double dt = cost_model.iteration_time_s(plan);
    const double end = now + dt;
    busy_s += dt;
    num_batched += static_cast<int64_t>(plan.batch.size());
    for (const sched::ScheduledJob& s : plan.batch) {
      if (!s.samples_token) {
        out.num_prefill_tokens += s.num_new_tokens;
        continue;
      }
      if (s.num_new_tokens > 1 || s.num_computed_tokens == 0)
        out.num_prefill_tokens += s.num_new_tokens;
      RequestRecord& rec = out.records[s.id];
      if (rec.first_token_s < 0) {
        rec.first_token_s = end;
      } else {
        itl.add(end - rec.last_token_s);
      }
      rec.last_token_s = end;
      ++rec.num_generated_tokens;
      ++out.num_generated_tokens;
      if (rec.num_generated_tokens == rec.num_output_tokens) {
        rec.finish_s = end;
        ++num_done;
      }
    }
    sched::IterationResult result;
    result.start_s = now;
    result.end_s = end;
    scheduler.update(plan, result);
    if (config.check_integrity) scheduler.pools().check_integrity();
    now = end;
  }
  FS_CHECK(scheduler.num_live_jobs() == 0, "{} jobs left after all finished",
           scheduler.num_live_jobs());
  out.stats = scheduler.stats();
  SummaryInputs in;
  in.records = &out.records;
  in.itl = &itl;
  in.stats = out.stats;
  in.block_bytes = cost_model.block_bytes();
  in.duration_s = now - start_s;
  in.busy_s = busy_s;
  in.num_batched_jobs = num_batched;
  in.slo_normalized_latency_s = config.slo_normalized_latency_s;
  out.summary = summarize(in);
  return out;
}

}  // namespace fs::sim
