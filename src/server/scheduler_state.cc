#include "server/scheduler_state.h"

namespace fs::server {
namespace {

using nlohmann::json;

json latency_json(const LatencySummary& s) {
  return {{"count", s.count},
          {"mean_s", s.mean_s},
          {"p50_s", s.p50_s},
          {"p90_s", s.p90_s},
          {"p99_s", s.p99_s}};
}

json pool_json(int64_t used, int64_t total) {
  return {{"used_blocks", used},
          {"total_blocks", total},
          {"usage", total > 0 ? static_cast<double>(used) / static_cast<double>(total) : 0.0}};
}

json job_json(const SchedulerJobView& j) {
  return {{"id", j.job_id},
          {"request_id", j.request_id},
          {"state", j.state},
          {"kv", j.kv_location},
          {"kv_blocks", j.num_kv_blocks},
          {"level", j.level},
          {"priority", j.priority},
          {"prompt_tokens", j.num_prompt_tokens},
          {"generated_tokens", j.num_generated_tokens},
          {"max_tokens", j.max_new_tokens},
          {"waiting_s", j.waiting_s},
          {"age_s", j.age_s},
          {"preemptions", j.num_preemptions},
          {"demotions", j.num_demotions}};
}

json series_json(const std::vector<SchedulerSeriesPoint>& points) {
  json t = json::array(), running = json::array(), waiting = json::array(), device = json::array(),
       host = json::array(), gen = json::array(), prompt = json::array(), swap = json::array();
  for (const SchedulerSeriesPoint& p : points) {
    t.push_back(p.t_s);
    running.push_back(p.num_running);
    waiting.push_back(p.num_waiting);
    device.push_back(p.device_kv_usage);
    host.push_back(p.host_kv_usage);
    gen.push_back(p.generation_tokens_per_s);
    prompt.push_back(p.prompt_tokens_per_s);
    swap.push_back(p.swap_bytes_per_s);
  }
  return {{"t_s", t},
          {"running", running},
          {"waiting", waiting},
          {"device_kv_usage", device},
          {"host_kv_usage", host},
          {"generation_tokens_per_s", gen},
          {"prompt_tokens_per_s", prompt},
          {"swap_bytes_per_s", swap}};
}

}  // namespace

json scheduler_state_json(const SchedulerSnapshot* snapshot) {
  static const SchedulerSnapshot kEmpty;
  const SchedulerSnapshot& s = snapshot != nullptr ? *snapshot : kEmpty;
  json queues = json::array();
  for (const SchedulerQueueView& q : s.queues) {
    json jobs = json::array();
    for (const SchedulerJobView& j : q.jobs) jobs.push_back(job_json(j));
    queues.push_back({{"level", q.level},
                      {"quantum_s", q.quantum_s >= 0 ? json(q.quantum_s) : json(nullptr)},
                      {"num_jobs", q.num_jobs},
                      {"jobs", std::move(jobs)}});
  }
  json batch = json::array();
  for (const SchedulerBatchView& b : s.batch) {
    batch.push_back({{"id", b.job_id},
                     {"request_id", b.request_id},
                     {"new_tokens", b.num_new_tokens},
                     {"prefill", b.prefill},
                     {"level", b.level}});
  }
  return {{"object", "scheduler.state"},
          {"ready", snapshot != nullptr},
          {"t_s", s.t_s},
          {"policy", s.policy},
          {"kv_policy", s.kv_policy},
          {"iterations", {{"total", s.num_iterations}, {"last_s", s.last_iteration_s}}},
          {"requests",
           {{"running", s.num_running}, {"waiting", s.num_waiting}, {"live", s.num_live_jobs}}},
          {"queues", std::move(queues)},
          {"batch", std::move(batch)},
          {"kv",
           {{"block_size_tokens", s.kv_block_size_tokens},
            {"block_bytes", s.kv_block_bytes},
            {"device", pool_json(s.device_kv_blocks_used, s.device_kv_blocks_total)},
            {"host", pool_json(s.host_kv_blocks_used, s.host_kv_blocks_total)}}},
          {"swap",
           {{"bytes_out_total", s.kv_bytes_swapped_out_total},
            {"bytes_in_total", s.kv_bytes_swapped_in_total},
            {"drops_total", s.num_drops_total}}},
          {"counters",
           {{"preemptions", s.num_preemptions_total},
            {"demotions", s.num_demotions_total},
            {"promotions", s.num_promotions_total},
            {"finished", s.num_finished_total},
            {"aborted", s.num_aborted_total},
            {"prompt_tokens", s.prompt_tokens_total},
            {"generation_tokens", s.generation_tokens_total}}},
          {"latency",
           {{"ttft", latency_json(s.ttft)},
            {"tpot", latency_json(s.tpot)},
            {"jct", latency_json(s.jct)}}},
          {"series", series_json(s.series)}};
}

}  // namespace fs::server
