#include "sched/scheduler.h"

#include <algorithm>
#include <unordered_set>

#include "core/check.h"

namespace fs::sched {

Scheduler::Scheduler(const SchedulerConfig& config, const KvPoolConfig& kv_config,
                     const CostModel& cost_model)
    : config_(config),
      cost_model_(cost_model),
      pools_(kv_config.num_device_blocks, kv_config.num_host_blocks, kv_config.block_size_tokens),
      policy_(make_policy(config, &cost_model_)),
      planner_(config.kv_policy, &pools_),
      swap_credit_s_(config.swap_credit_max_s) {
  const Status s = config.validate();
  FS_CHECK(s.is_ok(), "{}", s.to_string());
}

bool Scheduler::swap_budget_on() const {
  return config_.swap_budget_fraction > 0 && config_.kv_policy != KvPolicy::kRecompute;
}

Scheduler::Entry& Scheduler::entry(JobId id) {
  auto it = jobs_.find(id);
  FS_CHECK(it != jobs_.end(), "unknown job {}", id);
  return it->second;
}

const Job* Scheduler::job(JobId id) const {
  auto it = jobs_.find(id);
  return it == jobs_.end() ? nullptr : &it->second.job;
}

bool Scheduler::resident(JobId id) const {
  return pools_.has_job(id) && pools_.location(id) == kv::Location::kDevice;
}

void Scheduler::index(Entry& e) {
  e.key = policy_->key(e.job);
  order_.insert(e.key);
  if (resident(e.job.spec.id)) resident_.insert(e.key);
  if (e.job.started) started_.insert(e.key);
  if (policy_->uses_starvation_prevention()) {
    e.starve_at_s = policy_->starvation_deadline_s(e.job);
    idle_order_.insert({e.starve_at_s, e.job.spec.id});
  }
}

void Scheduler::unindex(Entry& e) {
  order_.erase(e.key);
  resident_.erase(e.key);
  started_.erase(e.key);
  idle_order_.erase({e.starve_at_s, e.job.spec.id});
}

void Scheduler::sync_state(Job& job) const {
  const JobId id = job.spec.id;
  if (job.in_batch || job.in_flight) {
    job.state = JobState::kRunning;
  } else if (pools_.has_job(id)) {
    job.state =
        pools_.location(id) == kv::Location::kDevice ? JobState::kPreempted : JobState::kOffloaded;
  } else {
    job.state = job.started ? JobState::kDropped : JobState::kWaiting;
  }
}

Status Scheduler::add(const JobSpec& spec, double now_s) {
  if (jobs_.count(spec.id) != 0) return invalid_argument("job {} already exists", spec.id);
  if (spec.num_prompt_tokens < 1 || spec.max_new_tokens < 1) {
    return invalid_argument("job {}: prompt ({}) and max_new_tokens ({}) must be >= 1", spec.id,
                            spec.num_prompt_tokens, spec.max_new_tokens);
  }
  const int64_t max_tokens = int64_t{spec.num_prompt_tokens} + spec.max_new_tokens;
  if (pools_.blocks_for_tokens(max_tokens) > pools_.num_device_blocks()) {
    return make_error(StatusCode::kOutOfRange,
                      "job {}: {} tokens need {} KV blocks, the device pool has {}", spec.id,
                      max_tokens, pools_.blocks_for_tokens(max_tokens), pools_.num_device_blocks());
  }
  Entry& e = jobs_[spec.id];
  e.job.spec = spec;
  e.job.num_tokens = spec.num_prompt_tokens;
  e.job.idle_since_s = now_s;
  policy_->on_arrival(e.job);
  index(e);
  return Status::ok();
}

void Scheduler::abort(JobId id, double /*now_s*/) {
  if (jobs_.count(id) != 0) pending_aborts_.push_back(id);
}

void Scheduler::finish_job(JobId id, bool aborted) {
  auto it = jobs_.find(id);
  if (it == jobs_.end()) return;
  unindex(it->second);
  pools_.free(id);
  jobs_.erase(it);
  ++(aborted ? counters_.num_aborted : counters_.num_finished);
}

void Scheduler::promote_starved(double now_s) {
  // A job starves when it has been idle (since arrival, or the end of its last service or
  // promotion) past its deadline: MlfqPolicy::starvation_deadline_s. Measuring from arrival keeps a
  // never-run job at its skip-join level until it has really waited (the official code compared
  // against a last-run time that never-run jobs lack, and promoted them at once).
  int32_t num_promoted = 0;
  while (!idle_order_.empty() && idle_order_.begin()->first < now_s &&
         num_promoted < config_.mlfq.max_promotions_per_check) {
    Entry& e = entry(idle_order_.begin()->second);
    unindex(e);
    if (e.job.level != 0) {
      ++e.job.num_promotions;
      ++counters_.num_promotions;
      ++num_promoted;
    }
    e.job.level = 0;
    e.job.attained_in_level_s = 0;
    e.job.idle_since_s = now_s;
    index(e);
  }
}

std::vector<JobId> Scheduler::collect_victims(const PriorityKey& key,
                                              int32_t deficit_blocks) const {
  std::vector<JobId> victims;
  int32_t freed = 0;
  for (auto it = resident_.rbegin(); it != resident_.rend() && freed < deficit_blocks; ++it) {
    if (!(key < *it)) break;  // only lower-priority jobs
    const Job& j = jobs_.at(it->id).job;
    if (j.in_batch || j.in_flight || holds_seat(it->id)) continue;
    victims.push_back(it->id);
    freed += pools_.num_blocks(it->id);
  }
  if (freed < deficit_blocks) victims.clear();
  return victims;
}

void Scheduler::evict(JobId victim, IterationPlan& plan) {
  Entry& e = entry(victim);
  resident_.erase(e.key);
  evicted_in_plan_.push_back(victim);
  const Eviction ev = planner_.evict(victim, plan);
  switch (ev) {
    case Eviction::kOffloaded:
      break;
    case Eviction::kDropped:
      counters_.num_recomputed_tokens += e.job.num_computed_tokens;
      e.job.num_computed_tokens = 0;
      break;
  }
  sync_state(e.job);
}

bool Scheduler::may_start_new_job() const {
  if (pools_.num_host_blocks() == 0 || config_.kv_policy == KvPolicy::kRecompute) return true;
  const double host_used = 1.0 - double(pools_.num_free_host_blocks()) / pools_.num_host_blocks();
  return host_used <= config_.admit_max_host_usage;
}

bool Scheduler::victims_fit_on_host(const std::vector<JobId>& victims) const {
  if (config_.kv_policy == KvPolicy::kRecompute) return true;
  int64_t blocks = 0;
  for (JobId v : victims) blocks += pools_.num_blocks(v);
  return blocks <= pools_.num_free_host_blocks();
}

void Scheduler::select_batch(IterationPlan& plan) {
  // Over the swap budget, jobs that need moves wait, except the first of the batch (the highest
  // priority job that can run), so priorities still hold at the top; if nothing at all can run, the
  // batch is chosen again ignoring the budget (skipped jobs changed nothing): it never stalls.
  bool skipped_for_budget = false;
  fill_batch(plan, /*enforce_swap_budget=*/true, skipped_for_budget);
  if (plan.batch.empty() && skipped_for_budget) fill_batch(plan, false, skipped_for_budget);
  if (skipped_for_budget) fill_free_seats(plan);
  plan.num_blocking_offload = static_cast<int32_t>(plan.offload.size());
  plan.num_blocking_upload = static_cast<int32_t>(plan.upload.size());
}

bool Scheduler::hysteresis_on() const {
  return config_.mlfq.preemption_hysteresis &&
         (config_.policy == PolicyKind::kSkipJoinMlfq || config_.policy == PolicyKind::kMlfq);
}

void Scheduler::hold_incumbent_seats() {
  // Least-attained-service reorders the top of the queue at every arrival and demotion; under
  // overload each reorder of a full batch is a preemption that may cost a swap (Azure code at 1.2x
  // fcfs's saturation: 5,351 preemptions and 895 GB swapped for 3,000 jobs; docs/SCHEDULING.md
  // "Preemption hysteresis"). With the hysteresis the jobs that just ran keep their seats unless
  // may_take_held_seat() lets a waiting job have one.
  held_.clear();
  if (!hysteresis_on()) return;
  for (JobId id : pipelined() ? served_ : last_batch_) {
    auto it = jobs_.find(id);
    if (it == jobs_.end()) continue;
    const Job& j = it->second.job;
    if (j.in_batch || j.in_flight || !resident(id)) continue;
    if (std::find(evicted_in_plan_.begin(), evicted_in_plan_.end(), id) != evicted_in_plan_.end()) {
      continue;
    }
    held_.push_back(it->second.key);
  }
  std::sort(held_.begin(), held_.end());
}

bool Scheduler::holds_seat(JobId id) const {
  return std::any_of(held_.begin(), held_.end(), [id](const PriorityKey& k) { return k.id == id; });
}

bool Scheduler::release_hold(JobId id) {
  auto it =
      std::find_if(held_.begin(), held_.end(), [id](const PriorityKey& k) { return k.id == id; });
  if (it == held_.end()) return false;
  held_.erase(it);
  return true;
}

bool Scheduler::may_take_held_seat(const PriorityKey& key, int32_t need_blocks) {
  const PriorityKey& lowest = held_.back();
  if (key.priority < lowest.priority) {
    // Client priority classes stay strict: holders of worse classes compete as without the
    // hysteresis.
    held_.erase(std::remove_if(held_.begin(), held_.end(),
                               [&](const PriorityKey& k) { return k.priority > key.priority; }),
                held_.end());
    return true;
  }
  return key.priority == lowest.priority && key.major < lowest.major &&
         pools_.can_allocate(need_blocks);
}

int32_t Scheduler::max_seqs_this_plan(const std::set<PriorityKey>& candidates) const {
  if (!pipelined()) return config_.limits.max_seqs;
  // In-flight jobs have started, so they are among the candidates either way.
  const int64_t runnable = static_cast<int64_t>(candidates.size()) - num_in_flight_jobs_;
  const int64_t slots = max_plans_in_flight_ - static_cast<int64_t>(in_flight_plans_.size());
  const int64_t share = (runnable + slots - 1) / slots;
  return static_cast<int32_t>(std::clamp<int64_t>(share, 1, config_.limits.max_seqs));
}

void Scheduler::fill_batch(IterationPlan& plan, bool enforce_swap_budget, bool& skipped_for_budget,
                           bool hold_seats) {
  int32_t tokens_left = config_.limits.max_tokens;
  for (const ScheduledJob& b : plan.batch) tokens_left -= b.num_new_tokens;
  int32_t num_scanned = 0;
  // While new jobs may not start, walk only the started ones: under overload thousands of new jobs
  // would otherwise fill the scan budget and leave the batch empty.
  const std::set<PriorityKey>& candidates = may_start_new_job() ? order_ : started_;
  const int32_t max_seqs = max_seqs_this_plan(candidates);
  if (hold_seats) {
    hold_incumbent_seats();
  } else {
    held_.clear();
  }
  // Decode steps (one token each) of jobs within the batch's reach: a prefill chunk ahead of them
  // in the order leaves each a token of the budget, so a long prompt's chunk does not push running
  // decodes out of the iteration (decode stalls under chunked prefill; vLLM schedules decodes
  // first). Jobs holding seats (hysteresis) are within reach wherever they are in the order.
  int32_t decodes_pending = 0;
  {
    int32_t n = 0;
    const PriorityKey* last_counted = nullptr;
    for (auto it = candidates.begin(); it != candidates.end() && n < max_seqs; ++it) {
      const Job& j = entry(it->id).job;
      if (j.in_flight || j.in_batch) continue;
      ++n;
      last_counted = &*it;
      if (j.num_tokens - j.num_computed_tokens == 1) ++decodes_pending;
    }
    for (const PriorityKey& k : held_) {
      const Job& j = entry(k.id).job;
      if (n >= max_seqs && *last_counted < k && j.num_tokens - j.num_computed_tokens == 1) {
        ++decodes_pending;
      }
    }
  }
  std::vector<JobId> holders_reached;
  // Held seats taken in this call and the tokens their takers run (max_seat_takeover_tokens).
  int32_t num_takeovers = 0, takeover_tokens = 0;
  for (auto it = candidates.begin(); it != candidates.end(); ++it) {
    if (entry(it->id).job.in_flight) continue;  // its previous step is still running (pipelining)
    if (static_cast<int32_t>(plan.batch.size()) >= max_seqs || tokens_left <= 0) break;
    if (num_scanned++ >= config_.max_scan_jobs) {
      // Past the scan limit only the jobs holding seats (hysteresis) are still placed.
      if (held_.empty()) break;
      it = candidates.find(held_.front());
      FS_CHECK(it != candidates.end(), "job {} holds a seat but is not a candidate",
               held_.front().id);
    }
    const JobId id = it->id;
    Job& job = entry(id).job;
    if (job.in_batch) continue;  // placed before this call (hold_seats = false)
    const bool holder = release_hold(id);
    if (holder) holders_reached.push_back(id);
    // A job evicted for a higher-priority one in this plan does not come back in the same plan.
    if (std::find(evicted_in_plan_.begin(), evicted_in_plan_.end(), id) != evicted_in_plan_.end()) {
      continue;
    }
    const int64_t remaining = job.num_tokens - job.num_computed_tokens;
    FS_CHECK(remaining >= 1, "job {} has nothing to compute", id);
    if (remaining == 1 && decodes_pending > 0) --decodes_pending;
    const int32_t seats_after = max_seqs - static_cast<int32_t>(plan.batch.size()) - 1;
    const int32_t reserve = remaining > 1 ? std::max(0, std::min({decodes_pending, seats_after, tokens_left - 1})) : 0;
    const int32_t chunk = static_cast<int32_t>(std::min<int64_t>(remaining, tokens_left - reserve));
    int64_t kv_tokens = job.num_computed_tokens + chunk;
    if (policy_->run_to_completion()) {
      // Orca reserves the whole sequence: prompt + max_new_tokens, or a fixed maximum length
      // when the engine does not trust max_new_tokens (fcfs_reserve_tokens).
      const int64_t whole = int64_t{job.spec.num_prompt_tokens} + job.spec.max_new_tokens;
      kv_tokens = std::max<int64_t>(
          {kv_tokens, whole,
           std::min<int64_t>(config_.fcfs_reserve_tokens,
                             pools_.num_device_blocks() * int64_t{pools_.block_size_tokens()})});
    }
    const int32_t target_blocks = pools_.blocks_for_tokens(kv_tokens);
    const bool on_host = pools_.has_job(id) && pools_.location(id) == kv::Location::kHost;
    const int32_t need_blocks =
        std::max(0, on_host ? target_blocks : target_blocks - pools_.num_blocks(id));
    if (!job.started && !may_start_new_job()) {
      if (policy_->stops_at_unfit_job()) break;
      continue;
    }
    // Every seat left is held (hysteresis): this job may take the lowest holder's only by
    // may_take_held_seat()'s rule. (Only MLFQ policies hold seats; they skip unfit jobs.)
    bool takes_held_seat = false;
    if (!holder && !held_.empty() &&
        static_cast<int32_t>(plan.batch.size() + held_.size()) >= max_seqs) {
      const int32_t max_takeover_tokens = config_.mlfq.max_seat_takeover_tokens;
      if (max_takeover_tokens >= 0 && num_takeovers > 0 &&
          takeover_tokens + chunk > max_takeover_tokens &&
          it->priority >= held_.back().priority) {
        continue;  // a better client priority class is never held back (may_take_held_seat)
      }
      if (!may_take_held_seat(*it, need_blocks)) continue;
      ++num_takeovers;
      takeover_tokens += chunk;
      takes_held_seat = static_cast<int32_t>(plan.batch.size() + held_.size()) >= max_seqs;
    }
    std::vector<JobId> victims;
    if (!pools_.can_allocate(need_blocks)) {
      // Preempt lower-priority resident jobs for this one, unless the policy runs jobs to
      // completion, or (vLLM) the job has never run: vLLM admits new jobs only into free memory.
      const bool may_evict =
          !policy_->run_to_completion() && (policy_->kind() != PolicyKind::kVllm ||
                                            pools_.has_job(id) || job.num_generated_tokens > 0);
      if (may_evict) {
        victims = collect_victims(*it, need_blocks - pools_.num_free_device_blocks());
      }
      if (!job.started && !victims_fit_on_host(victims)) victims.clear();
      if (victims.empty()) {
        if (policy_->stops_at_unfit_job()) break;
        continue;
      }
    }
    if (swap_budget_on() && (on_host || !victims.empty())) {
      // The moves this job needs block the forward: charge them to the swap budget.
      int64_t blocks = on_host ? pools_.num_blocks(id) : 0;
      for (JobId v : victims) blocks += pools_.num_blocks(v);
      if (swap_credit_s_ <= 0 && enforce_swap_budget && !plan.batch.empty()) {
        skipped_for_budget = true;
        if (policy_->stops_at_unfit_job()) break;
        continue;
      }
      swap_credit_s_ -= cost_model_.swap_time_s(static_cast<double>(blocks) * cost_model_.block_bytes());
    }
    for (JobId v : victims) evict(v, plan);
    add_to_batch(*it, job, chunk, target_blocks, on_host, plan);
    tokens_left -= chunk;
    if (takes_held_seat) held_.pop_back();  // the lowest holder is preempted
  }
  held_.clear();  // holders not reached (token budget) compete as usual from here on
  // A holder that could not run (no block for its next token without evicting another holder)
  // held a seat that jobs before it were denied: fill what is left without holds, so the batch is
  // never left short while something could run.
  if (std::any_of(holders_reached.begin(), holders_reached.end(),
                  [&](JobId h) { return !entry(h).job.in_batch; })) {
    fill_batch(plan, enforce_swap_budget, skipped_for_budget, /*hold_seats=*/false);
  }
}

void Scheduler::add_to_batch(const PriorityKey& key, Job& job, int32_t chunk,
                             int32_t target_blocks, bool on_host, IterationPlan& plan) {
  const JobId id = key.id;
  if (on_host) planner_.upload(id, plan);
  const int32_t fresh_blocks = target_blocks - pools_.num_blocks(id);
  if (fresh_blocks > 0) {
    auto fresh = pools_.allocate(id, fresh_blocks);
    FS_CHECK(fresh.is_ok(), "{}", fresh.status().to_string());
    for (kv::BlockId b : *fresh) plan.newly_allocated.push_back({id, -1, b});
  }
  resident_.insert(key);
  if (!job.started) started_.insert(key);
  job.started = true;
  job.in_batch = true;
  const int64_t remaining = job.num_tokens - job.num_computed_tokens;
  plan.batch.push_back(ScheduledJob{id, job.num_computed_tokens, chunk, chunk == remaining, {}});
}

void Scheduler::fill_free_seats(IterationPlan& plan) {
  // Seats the swap budget left empty: jobs whose KV is on the host waited for the budget, and the
  // batch ran short of jobs. Under overload that is most iterations (Azure code at 1.2x fcfs's
  // saturation: 10.9 jobs per iteration against fcfs's 14.8, with ~40% of the device pool free
  // while ~90 started jobs waited on the host; docs/SCHEDULING.md "Filling the batch under
  // overload"). The budget guards against reshuffling, where moves evict one job for another; an
  // upload into free device memory for a seat that would otherwise stay empty evicts nobody, so it
  // is not charged: host-resident started jobs, in priority order, whose KV fits in the free blocks
  // above the headroom.
  const std::set<PriorityKey>& candidates = may_start_new_job() ? order_ : started_;
  const int32_t max_seqs = max_seqs_this_plan(candidates);
  int32_t tokens_left = config_.limits.max_tokens;
  for (const ScheduledJob& b : plan.batch) tokens_left -= b.num_new_tokens;
  int32_t num_scanned = 0;
  for (auto it = started_.begin(); it != started_.end(); ++it) {
    if (static_cast<int32_t>(plan.batch.size()) >= max_seqs || tokens_left <= 0 ||
        num_scanned++ >= config_.max_scan_jobs) {
      break;
    }
    const JobId id = it->id;
    Job& job = entry(id).job;
    if (job.in_batch || job.in_flight) continue;
    if (!pools_.has_job(id) || pools_.location(id) != kv::Location::kHost) continue;
    const auto& evicted = evicted_in_plan_;
    if (std::find(evicted.begin(), evicted.end(), id) != evicted.end()) continue;
    const int64_t remaining = job.num_tokens - job.num_computed_tokens;
    const int32_t chunk = static_cast<int32_t>(std::min<int64_t>(remaining, tokens_left));
    const int32_t target_blocks =
        std::max(pools_.num_blocks(id), pools_.blocks_for_tokens(job.num_computed_tokens + chunk));
    if (pools_.num_free_device_blocks() - target_blocks < config_.headroom_blocks()) continue;
    add_to_batch(*it, job, chunk, target_blocks, /*on_host=*/true, plan);
    tokens_left -= chunk;
  }
}

void Scheduler::plan_ahead(IterationPlan& plan) {
  // The window: the next upload_lookahead_jobs jobs after the batch in priority order. They are
  // uploaded ahead of their turn and never chosen as proactive victims: the official code could
  // upload a job and offload it again the next iteration (ping-pong), since it took victims from
  // the tail of the queues including the jobs it had just prefetched.
  const int32_t headroom = config_.headroom_blocks();
  // Proactive moves are free only while the forward hides them.
  const double bb = cost_model_.block_bytes();
  double hidden_s = swap_budget_on() ? cost_model_.forward_time_s(plan) -
                                           cost_model_.swap_time_s(bb * (plan.offload.size() + plan.upload.size() -
                                                                         plan.num_blocking_offload -
                                                                         plan.num_blocking_upload))
                                     : 1e300;
  // While new jobs may not start (host pool over the admission threshold), they hold no KV and
  // cannot run: the window is taken from the started jobs, else under overload it fills with
  // waiting new jobs and the host-resident jobs that could run are never uploaded.
  const std::set<PriorityKey>& ahead = may_start_new_job() ? order_ : started_;
  std::vector<JobId> window;
  for (auto it = ahead.begin();
       it != ahead.end() && static_cast<int32_t>(window.size()) < config_.upload_lookahead_jobs();
       ++it) {
    const Job& j = jobs_.at(it->id).job;
    if (!j.in_batch && !j.in_flight) window.push_back(it->id);
  }
  if (pools_.num_free_device_blocks() < headroom) {
    std::vector<JobId> victims;
    int32_t freed = 0;
    for (auto it = resident_.rbegin();
         it != resident_.rend() && pools_.num_free_device_blocks() + freed < headroom; ++it) {
      const Job& j = jobs_.at(it->id).job;
      if (j.in_batch || j.in_flight) continue;
      if (std::find(window.begin(), window.end(), it->id) != window.end()) continue;
      const double t = cost_model_.swap_time_s(bb * pools_.num_blocks(it->id));
      if (t > hidden_s) break;
      hidden_s -= t;
      victims.push_back(it->id);
      freed += pools_.num_blocks(it->id);
    }
    for (JobId v : victims) evict(v, plan);
    return;
  }
  for (JobId id : window) {
    if (!pools_.has_job(id) || pools_.location(id) != kv::Location::kHost) continue;
    if (pools_.num_free_device_blocks() - pools_.num_blocks(id) < headroom) break;
    const double t = cost_model_.swap_time_s(bb * pools_.num_blocks(id));
    if (t > hidden_s) break;
    hidden_s -= t;
    Entry& e = entry(id);
    planner_.upload(id, plan);
    resident_.insert(e.key);
    sync_state(e.job);
  }
}

void Scheduler::set_max_plans_in_flight(int32_t n) {
  FS_CHECK(n >= 1, "max_plans_in_flight must be >= 1, got {}", n);
  FS_CHECK(in_flight_plans_.empty(), "set_max_plans_in_flight with plans outstanding");
  max_plans_in_flight_ = n;
}

IterationPlan Scheduler::schedule(double now_s) {
  IterationPlan plan;
  const bool pipelined = this->pipelined();
  FS_CHECK(!pipelined || static_cast<int32_t>(in_flight_plans_.size()) < max_plans_in_flight_,
           "schedule() with {} plans outstanding (at most {})", in_flight_plans_.size(),
           max_plans_in_flight_);
  ++counters_.num_iterations;
  // An in-flight job's blocks are in use by a forward: its abort waits for its plan's update().
  size_t num_deferred = 0;
  for (JobId id : pending_aborts_) {
    auto it = jobs_.find(id);
    if (it != jobs_.end() && it->second.job.in_flight) {
      pending_aborts_[num_deferred++] = id;
    } else {
      finish_job(id, /*aborted=*/true);
    }
  }
  pending_aborts_.resize(num_deferred);
  for (JobId id : last_batch_) {
    auto it = jobs_.find(id);
    if (it != jobs_.end()) it->second.job.in_batch = false;
  }
  if (policy_->uses_starvation_prevention() &&
      counters_.num_iterations % config_.mlfq.starvation_check_interval_iterations == 0) {
    promote_starved(now_s);
  }
  evicted_in_plan_.clear();
  select_batch(plan);
  if (planner_.proactive()) plan_ahead(plan);

  // Pipelined, the jobs that ran before are those whose plans were updated since the last
  // schedule(); the latest plan's jobs may still be in flight.
  for (JobId id : pipelined ? served_ : last_batch_) {
    auto it = jobs_.find(id);
    if (it == jobs_.end()) continue;
    Job& j = it->second.job;
    if (!j.in_batch && !j.in_flight) {
      plan.preempted.push_back(id);
      ++j.num_preemptions;
      ++counters_.num_preemptions;
    }
    sync_state(j);
  }
  if (pipelined) {
    for (JobId id : last_batch_) {
      if (auto it = jobs_.find(id); it != jobs_.end()) sync_state(it->second.job);
    }
    served_.clear();
  }
  last_batch_.clear();
  for (ScheduledJob& s : plan.batch) {
    last_batch_.push_back(s.id);
    s.block_table = pools_.table(s.id).blocks;
    Job& j = entry(s.id).job;
    if (pipelined) j.in_flight = true;
    sync_state(j);
  }
  if (pipelined && !plan.batch.empty()) {
    in_flight_plans_.push_back(last_batch_);
    num_in_flight_jobs_ += static_cast<int64_t>(plan.batch.size());
  }
  return plan;
}

void Scheduler::update(const IterationPlan& plan, const IterationResult& result) {
  const double duration_s = result.end_s - result.start_s;
  FS_CHECK(duration_s >= 0, "iteration ends before it starts");
  if (pipelined() && !plan.batch.empty()) {
    FS_CHECK(!in_flight_plans_.empty(), "update() of a plan that is not outstanding");
    const std::vector<JobId>& oldest = in_flight_plans_.front();
    FS_CHECK(oldest.size() == plan.batch.size() &&
                 std::equal(oldest.begin(), oldest.end(), plan.batch.begin(),
                            [](JobId id, const ScheduledJob& s) { return id == s.id; }),
             "update() out of order: outstanding plans are updated oldest first");
    for (JobId id : oldest) {
      Job& j = entry(id).job;  // in-flight jobs are never freed (aborts wait)
      j.in_flight = false;
      served_.push_back(id);
    }
    num_in_flight_jobs_ -= static_cast<int64_t>(oldest.size());
    in_flight_plans_.pop_front();
  }
  if (swap_budget_on()) {
    swap_credit_s_ = std::min(config_.swap_credit_max_s,
                              swap_credit_s_ + config_.swap_budget_fraction * duration_s);
  }
  std::unordered_set<JobId> stopped(result.finished.begin(), result.finished.end());
  for (const JobOutput& o : result.outputs) {
    if (o.error) stopped.insert(o.id);
  }
  for (const ScheduledJob& s : plan.batch) {
    auto it = jobs_.find(s.id);
    if (it == jobs_.end()) continue;  // aborted meanwhile
    Entry& e = it->second;
    Job& job = e.job;
    unindex(e);
    job.num_computed_tokens += s.num_new_tokens;
    FS_CHECK(job.num_computed_tokens <= job.num_tokens, "job {} computed past its tokens", s.id);
    if (s.samples_token) {
      ++job.num_tokens;
      ++job.num_generated_tokens;
      if (job.first_token_s < 0) job.first_token_s = result.end_s;
    }
    if (policy_->on_served(job, duration_s)) ++counters_.num_demotions;
    job.idle_since_s = result.end_s;
    if (job.num_generated_tokens >= job.spec.max_new_tokens || stopped.count(s.id) != 0) {
      index(e);
      finish_job(s.id, /*aborted=*/false);
      continue;
    }
    index(e);
  }
}

std::vector<JobId> Scheduler::priority_order() const {
  std::vector<JobId> ids;
  ids.reserve(order_.size());
  for (const PriorityKey& k : order_) ids.push_back(k.id);
  return ids;
}

SchedulerStats Scheduler::stats() const {
  SchedulerStats s = counters_;
  s.num_live_jobs = num_live_jobs();
  s.num_offloaded_blocks = planner_.num_offloaded_blocks();
  s.num_uploaded_blocks = planner_.num_uploaded_blocks();
  s.num_drops = planner_.num_drops();
  for (const auto& [id, e] : jobs_) {
    ++s.num_jobs_by_state[static_cast<int>(e.job.state)];
    if (static_cast<size_t>(e.job.level) >= s.queue_lengths.size()) {
      s.queue_lengths.resize(e.job.level + 1, 0);
    }
    ++s.queue_lengths[e.job.level];
  }
  s.device_blocks_total = pools_.num_device_blocks();
  s.device_blocks_used = s.device_blocks_total - pools_.num_free_device_blocks();
  s.host_blocks_total = pools_.num_host_blocks();
  s.host_blocks_used = s.host_blocks_total - pools_.num_free_host_blocks();
  return s;
}

}  // namespace fs::sched
