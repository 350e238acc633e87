#include "engine/scheduler_monitor.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "engine/engine.h"

namespace fs {
namespace {

const char* kv_location_of(const sched::Scheduler& scheduler, const sched::Job& job) {
  switch (job.state) {
    case sched::JobState::kDropped:
      return "dropped";
    case sched::JobState::kWaiting:
    case sched::JobState::kFinished:
      return "none";
    case sched::JobState::kRunning:
    case sched::JobState::kPreempted:
    case sched::JobState::kOffloaded:
      break;
  }
  if (!scheduler.pools().has_job(job.spec.id)) return "none";
  return kv::location_name(scheduler.pools().location(job.spec.id));
}

bool is_mlfq(const sched::Scheduler& scheduler) {
  const sched::PolicyKind kind = scheduler.config().policy;
  return kind == sched::PolicyKind::kSkipJoinMlfq || kind == sched::PolicyKind::kMlfq;
}

}  // namespace

void SchedulerMonitor::Ring::push(double v, size_t capacity) {
  if (values.size() < capacity) {
    values.push_back(v);
    return;
  }
  values[next] = v;
  next = (next + 1) % capacity;
}

LatencySummary SchedulerMonitor::summarize(const Ring& ring) {
  LatencySummary s;
  if (ring.values.empty()) return s;
  std::vector<double> v = ring.values;
  std::sort(v.begin(), v.end());
  s.count = static_cast<int64_t>(v.size());
  double sum = 0;
  for (double x : v) sum += x;
  s.mean_s = sum / static_cast<double>(v.size());
  // Nearest rank: the smallest value with at least p% of the values at or below it.
  auto rank = [&](double p) {
    const size_t k = static_cast<size_t>(std::ceil(p * static_cast<double>(v.size())));
    return v[std::clamp<size_t>(k, 1, v.size()) - 1];
  };
  s.p50_s = rank(0.50);
  s.p90_s = rank(0.90);
  s.p99_s = rank(0.99);
  return s;
}

std::shared_ptr<const SchedulerSnapshot> SchedulerMonitor::read(double now_s) {
  last_read_s_.store(now_s, std::memory_order_relaxed);
  std::lock_guard<std::mutex> lock(mu_);
  return latest_;
}

void SchedulerMonitor::observe_finished(double ttft_s, double tpot_s, double jct_s) {
  const size_t n = static_cast<size_t>(options_.latency_window);
  if (ttft_s >= 0) ttft_.push(ttft_s, n);
  if (tpot_s >= 0) tpot_.push(tpot_s, n);
  jct_.push(jct_s, n);
}

bool SchedulerMonitor::due(double now_s) const {
  if (now_s - last_point_s_ >= options_.series_interval_s) return true;
  const bool watched =
      now_s - last_read_s_.load(std::memory_order_relaxed) < options_.reader_active_s;
  return watched && now_s - last_build_s_ >= options_.min_build_interval_s;
}

void SchedulerMonitor::add_series_point(double now_s, const Inputs& in) {
  const EngineMetrics& m = in.metrics;
  const int64_t swap_bytes = m.kv_bytes_swapped_out_total + m.kv_bytes_swapped_in_total;
  SchedulerSeriesPoint p;
  p.t_s = now_s - origin_s_;
  p.num_running = m.num_requests_running;
  p.num_waiting = m.num_requests_waiting;
  p.device_kv_usage = m.device_kv_blocks_total > 0
                          ? static_cast<double>(m.device_kv_blocks_used) /
                                static_cast<double>(m.device_kv_blocks_total)
                          : 0;
  p.host_kv_usage = m.host_kv_blocks_total > 0 ? static_cast<double>(m.host_kv_blocks_used) /
                                                     static_cast<double>(m.host_kv_blocks_total)
                                               : 0;
  const double dt = now_s - last_point_s_;
  if (!series_.empty() && dt > 0) {
    p.generation_tokens_per_s =
        static_cast<double>(m.generation_tokens_total - last_point_generation_tokens_) / dt;
    p.prompt_tokens_per_s =
        static_cast<double>(m.prompt_tokens_total - last_point_prompt_tokens_) / dt;
    p.swap_bytes_per_s = static_cast<double>(swap_bytes - last_point_swap_bytes_) / dt;
  }
  last_point_s_ = now_s;
  last_point_generation_tokens_ = m.generation_tokens_total;
  last_point_prompt_tokens_ = m.prompt_tokens_total;
  last_point_swap_bytes_ = swap_bytes;
  series_.push_back(p);
  while (series_.size() > static_cast<size_t>(options_.series_points)) series_.pop_front();
}

void SchedulerMonitor::publish(double now_s, const Inputs& in) {
  if (origin_s_ < 0) origin_s_ = now_s;
  if (now_s - last_point_s_ >= options_.series_interval_s) add_series_point(now_s, in);
  last_build_s_ = now_s;

  const sched::Scheduler& sc = in.scheduler;
  const sched::SchedulerStats st = sc.stats();
  const EngineMetrics& m = in.metrics;
  auto snap = std::make_shared<SchedulerSnapshot>();
  snap->t_s = now_s - origin_s_;
  snap->policy = std::string(in.policy);
  snap->kv_policy = std::string(in.kv_policy);
  snap->num_iterations = st.num_iterations;
  if (in.plan != nullptr) last_iteration_s_ = in.iteration_s;
  snap->last_iteration_s = last_iteration_s_;
  snap->num_running = m.num_requests_running;
  snap->num_waiting = m.num_requests_waiting;
  snap->num_live_jobs = st.num_live_jobs;

  const bool mlfq = is_mlfq(sc);
  const sched::MlfqConfig& mc = sc.config().mlfq;
  // MLFQ: at least the first four levels, so the page shows the queues before jobs reach them.
  const size_t min_levels = mlfq ? static_cast<size_t>(std::clamp(mc.num_queues, 1, 4)) : 1;
  const size_t num_levels = std::max(min_levels, st.queue_lengths.size());
  snap->queues.resize(num_levels);
  for (size_t i = 0; i < num_levels; ++i) {
    SchedulerQueueView& q = snap->queues[i];
    q.level = static_cast<int32_t>(i);
    q.num_jobs = i < st.queue_lengths.size() ? st.queue_lengths[i] : 0;
    if (mlfq && static_cast<int32_t>(i) + 1 < mc.num_queues)
      q.quantum_s = mc.q1_s * std::pow(mc.ratio, i);
  }
  for (sched::JobId id : sc.priority_order()) {
    const sched::Job* job = sc.job(id);
    if (job == nullptr) continue;
    const size_t level =
        std::min<size_t>(static_cast<size_t>(std::max(job->level, 0)), num_levels - 1);
    SchedulerQueueView& q = snap->queues[level];
    if (q.jobs.size() >= static_cast<size_t>(options_.max_jobs_per_queue)) continue;
    SchedulerJobView v;
    v.job_id = id;
    if (in.request_id) v.request_id = in.request_id(id);
    v.state = sched::job_state_name(job->state);
    v.kv_location = kv_location_of(sc, *job);
    v.level = job->level;
    v.priority = job->spec.priority;
    v.num_kv_blocks = sc.pools().has_job(id) ? sc.pools().num_blocks(id) : 0;
    v.num_prompt_tokens = job->spec.num_prompt_tokens;
    v.num_generated_tokens = job->num_generated_tokens;
    v.max_new_tokens = job->spec.max_new_tokens;
    v.age_s = std::max(0.0, in.sched_now_s - job->spec.arrival_s);
    v.waiting_s = job->state == sched::JobState::kRunning
                      ? 0
                      : std::max(0.0, in.sched_now_s - job->idle_since_s);
    v.num_preemptions = job->num_preemptions;
    v.num_demotions = job->num_demotions;
    q.jobs.push_back(std::move(v));
  }

  if (in.plan != nullptr) {
    snap->batch.reserve(in.plan->batch.size());
    for (const sched::ScheduledJob& s : in.plan->batch) {
      SchedulerBatchView b;
      b.job_id = s.id;
      if (in.request_id) b.request_id = in.request_id(s.id);
      b.num_new_tokens = s.num_new_tokens;
      b.prefill = s.num_new_tokens > 1 || !s.samples_token;
      const sched::Job* job = sc.job(s.id);
      b.level = job != nullptr ? job->level : 0;
      snap->batch.push_back(std::move(b));
    }
  }

  snap->kv_block_size_tokens = sc.pools().block_size_tokens();
  snap->kv_block_bytes = in.kv_block_bytes;
  snap->device_kv_blocks_used = st.device_blocks_used;
  snap->device_kv_blocks_total = st.device_blocks_total;
  snap->host_kv_blocks_used = st.host_blocks_used;
  snap->host_kv_blocks_total = st.host_blocks_total;
  snap->kv_bytes_swapped_out_total = st.num_offloaded_blocks * in.kv_block_bytes;
  snap->kv_bytes_swapped_in_total = st.num_uploaded_blocks * in.kv_block_bytes;
  snap->num_drops_total = st.num_drops;
  snap->num_preemptions_total = st.num_preemptions;
  snap->num_demotions_total = st.num_demotions;
  snap->num_promotions_total = st.num_promotions;
  snap->num_finished_total = st.num_finished;
  snap->num_aborted_total = st.num_aborted;
  snap->prompt_tokens_total = m.prompt_tokens_total;
  snap->generation_tokens_total = m.generation_tokens_total;
  snap->ttft = summarize(ttft_);
  snap->tpot = summarize(tpot_);
  snap->jct = summarize(jct_);
  snap->series.assign(series_.begin(), series_.end());

  std::shared_ptr<const SchedulerSnapshot> old;
  {
    std::lock_guard<std::mutex> lock(mu_);
    old = std::exchange(latest_, std::move(snap));
  }
  // `old` is released here, outside the lock.
}

}  // namespace fs
