#include "engine/engine.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <deque>
#include <unordered_map>

#include "engine/cpu_executor.h"
#include "engine/scheduler_monitor.h"
#include "core/log.h"
#include "core/timer.h"
#include "engine/stop_matcher.h"
#include "sched/scheduler.h"
#include "tokenizer/incremental_decoder.h"

namespace fs {

// ---------------------------------------------------------------------------------------------
// RequestStream

RequestStream::~RequestStream() { cancel(); }

void RequestStream::cancel() {
  std::lock_guard<std::mutex> lock(shared_->mu);
  shared_->cancelled = true;
  shared_->notify = nullptr;
}

void RequestStream::set_notifier(std::function<void()> notify) {
  std::lock_guard<std::mutex> lock(shared_->mu);
  if (shared_->cancelled) return;
  shared_->notify = std::move(notify);
  if (shared_->notify && !shared_->events.empty()) shared_->notify();
}

std::optional<GenerationEvent> RequestStream::next(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(shared_->mu);
  if (num_unfinished_ == 0) return std::nullopt;
  shared_->cv.wait_for(lock, timeout, [&] { return !shared_->events.empty(); });
  if (shared_->events.empty()) return std::nullopt;
  GenerationEvent e = std::move(shared_->events.front());
  shared_->events.pop_front();
  if (e.kind != GenerationEvent::Kind::kToken) --num_unfinished_;
  return e;
}

// ---------------------------------------------------------------------------------------------
// Engine

void LatencyHistogram::observe(double seconds) {
  size_t i = 0;
  while (i < bounds_s.size() && seconds > bounds_s[i]) ++i;
  ++counts[i];
  sum_s += seconds;
  ++count;
}

Status EngineConfig::validate() const {
  if (kv_block_size <= 0) return invalid_argument("kv block size must be positive");
  if (device_kv_blocks < 0 || host_kv_blocks < 0) return invalid_argument("KV block counts must be >= 0");
  if (max_num_seqs <= 0) return invalid_argument("max_num_seqs must be positive");
  if (max_num_batched_tokens <= 0) return invalid_argument("max_num_batched_tokens must be positive");
  if (max_queued_requests <= 0) return invalid_argument("max_queued_requests must be positive");
  FS_RETURN_IF_ERROR(sched::parse_policy(policy).status());
  FS_RETURN_IF_ERROR(sched::parse_kv_policy(kv_policy).status());
  return Status::ok();
}

namespace {

// One live request, owned by the engine thread.
struct LiveJob {
  GenerationRequest request;
  std::shared_ptr<RequestStream::Shared> shared;
  std::vector<int32_t> tokens;  // prompt + generated
  std::unique_ptr<Sampler> sampler;
  std::unique_ptr<IncrementalDecoder> decoder;
  StopMatcher stop_matcher;
  double arrival_s = 0, first_token_s = -1;
  int64_t num_output_tokens = 0;
  int32_t index = 0;  // choice index (GenerationRequest::n)

  std::span<const int32_t> prompt() const {
    return std::span(tokens).first(request.prompt_tokens.size());
  }
  std::span<const int32_t> output() const {
    return std::span(tokens).subspan(request.prompt_tokens.size());
  }
};

// Pushes an event; false when the reader is gone (the job should be aborted).
bool push_event(RequestStream::Shared& shared, GenerationEvent e) {
  std::lock_guard<std::mutex> lock(shared.mu);
  if (shared.cancelled) return false;
  if (e.kind != GenerationEvent::Kind::kToken && --shared.num_open == 0) shared.done = true;
  const bool was_empty = shared.events.empty();
  shared.events.push_back(std::move(e));
  shared.cv.notify_one();
  if (was_empty && shared.notify) shared.notify();
  return true;
}

bool is_cancelled(RequestStream::Shared& shared) {
  std::lock_guard<std::mutex> lock(shared.mu);
  return shared.cancelled;
}

// A rough cost model from the model's size and the executor's nominal speeds, used for skip-join
// placement when no profile (`fastserve profile`) is given: decode reads every weight once, prefill
// does 2 * params FLOPs per token.
sched::CostModelSpec estimated_cost_model(const Executor& ex, int64_t block_size) {
  const Executor::NominalSpeed speed = ex.nominal_speed();
  const double weight_bytes = static_cast<double>(ex.weight_bytes());
  const ModelConfig& c = ex.config();
  const double params = static_cast<double>(c.num_layers) *
                            (4.0 * c.hidden_size * c.hidden_size + 3.0 * c.hidden_size * c.intermediate_size) +
                        static_cast<double>(c.vocab_size) * c.hidden_size;
  const double read_s = weight_bytes / speed.memory_bytes_per_s;
  sched::CostModelSpec spec;
  spec.name = "estimate from the model size (no --cost-model given)";
  spec.block_size_tokens = static_cast<int32_t>(block_size);
  spec.kv_bytes_per_token = static_cast<double>(ex.kv_block_bytes(1));
  for (double n : {1.0, 64.0, 512.0, 2048.0}) spec.prefill.push_back({n, read_s + 2.0 * params * n / speed.flops});
  spec.decode = {{1, 64, read_s}, {16, 1024, read_s * 1.3}, {16, 16384, read_s * 2.0}};
  spec.swap_bandwidth_bytes_per_s = speed.swap_bytes_per_s;
  return spec;
}

}  // namespace

struct Engine::Impl {
  ModelRuntime runtime;
  EngineConfig config;
  std::unique_ptr<sched::Scheduler> scheduler;
  std::unique_ptr<Executor> executor;
  int64_t device_blocks = 0, host_blocks = 0;

  // Submission side (any thread).
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::pair<sched::JobId, LiveJob>> incoming;
  bool stopping = false;
  std::atomic<int64_t> next_job_id{1};
  std::atomic<int64_t> num_queued{0};  // submitted, not finished

  // Engine thread only.
  std::unordered_map<sched::JobId, LiveJob> jobs;
  std::thread thread;
  double start_s = monotonic_s();

  mutable std::mutex metrics_mu;
  EngineMetrics metrics;
  SchedulerMonitor monitor;  // the dashboard's snapshots (engine/scheduler_monitor.h)

  double now() const { return monotonic_s() - start_s; }
  void loop();
  bool admit();  // true when it aborted a job (its blocks are freed at the next schedule())
  bool run_iteration();
  // Pipelined (executor->pipeline_depth() > 1): submits plans until depth forwards are outstanding,
  // then completes the oldest. in_flight: the plans whose forward is outstanding, oldest first
  // (status: a swap that failed before the forward was submitted).
  bool run_pipelined_iteration();
  struct InFlight {
    sched::IterationPlan plan;
    double start_s = 0;
    Status status;
  };
  std::deque<InFlight> in_flight;
  int64_t batches_in_flight_max = 0;
  void drain_in_flight();
  void build_forward_seqs(const sched::IterationPlan& plan);
  bool picks_on_device(const LiveJob& job) const;
  // Samples the plan's tokens from its logits (or fails its jobs), streams them, updates the
  // scheduler, publishes metrics.
  void complete_iteration(const sched::IterationPlan& plan, double start,
                          const Result<std::span<const float>>& logits);
  Status carry_out_swaps(const sched::IterationPlan& plan);
  std::vector<BlockCopy> offloads, uploads;  // the plan's moves as the executor takes them, reused
  std::vector<ForwardSeq> forward_seqs;  // the batch as the model takes it, reused
  std::vector<float> logits_row;         // [vocab] one job's logits, scratch for its sampler
  void finish(sched::JobId id, LiveJob& job, const std::string& reason);
  void fail(LiveJob& job, Status status);
  void publish_metrics(int64_t num_prompt, int64_t num_generated);
  void publish_snapshot(const sched::IterationPlan* plan, double iteration_s);
};

Engine::Engine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Engine::~Engine() { stop(); }

Result<KvPoolBlocks> kv_pool_blocks(const Executor& ex, const EngineConfig& config) {
  const int64_t bs = config.kv_block_size;
  const int64_t block_bytes = ex.kv_block_bytes(bs);
  const int64_t ctx_blocks = (ex.config().max_position_embeddings + bs - 1) / bs;
  const int64_t fit = ex.max_device_blocks(bs, config.max_num_batched_tokens);
  KvPoolBlocks pools;
  if (config.device_kv_blocks > 0) {
    pools.device_blocks = config.device_kv_blocks;
  } else if (fit > 0) {  // a device with its own memory: all that is left after weights and activations
    pools.device_blocks = fit;
  } else {
    pools.device_blocks = std::min<int64_t>((int64_t{1} << 30) / block_bytes, ctx_blocks * config.max_num_seqs);
  }
  if (fit > 0 && pools.device_blocks > fit) {
    return make_error(StatusCode::kResourceExhausted, "{} device KV blocks asked for, only {} fit on {}",
                      pools.device_blocks, fit, ex.device_name());
  }
  // Host pool: as many blocks as the device pool, at most 16 GiB unless asked for.
  pools.host_blocks = config.host_kv_blocks > 0
                        ? config.host_kv_blocks
                        : std::min<int64_t>(pools.device_blocks, (int64_t{16} << 30) / block_bytes);
  return pools;
}

Result<std::unique_ptr<Engine>> Engine::create(ModelRuntime runtime, const EngineConfig& config,
                                               std::unique_ptr<Executor> executor) {
  FS_RETURN_IF_ERROR(config.validate());
  if (!executor) {
    if (!runtime.lm) return invalid_argument("the engine needs a model: no executor and no CPU model given");
    executor = std::make_unique<CpuExecutor>(*runtime.lm);
  }
  auto impl = std::make_unique<Impl>();
  impl->config = config;
  const Executor& ex = *executor;
  const int64_t bs = config.kv_block_size;
  const int64_t block_bytes = ex.kv_block_bytes(bs);
  FS_ASSIGN_OR_RETURN(const KvPoolBlocks pools, kv_pool_blocks(ex, config));
  impl->device_blocks = pools.device_blocks;
  impl->host_blocks = pools.host_blocks;

  sched::CostModelSpec spec = estimated_cost_model(ex, bs);
  Result<sched::CostModel> cost = config.cost_model_path.empty()
                                      ? sched::CostModel::from_spec(spec)
                                      : sched::CostModel::load(config.cost_model_path);
  FS_RETURN_IF_ERROR(cost.status());
  sched::SchedulerConfig sc;
  FS_ASSIGN_OR_RETURN(sc.policy, sched::parse_policy(config.policy));
  FS_ASSIGN_OR_RETURN(sc.kv_policy, sched::parse_kv_policy(config.kv_policy));
  sc.limits.max_seqs = config.max_num_seqs;
  sc.limits.max_tokens = config.max_num_batched_tokens;
  sc.mlfq.preemption_hysteresis = config.preemption_hysteresis;
  FS_RETURN_IF_ERROR(sc.validate());
  sched::KvPoolConfig kv{static_cast<int32_t>(impl->device_blocks), static_cast<int32_t>(impl->host_blocks),
                         static_cast<int32_t>(bs)};
  impl->scheduler = std::make_unique<sched::Scheduler>(sc, kv, *cost);
  if (executor->pipeline_depth() > 1) {
    impl->scheduler->set_max_plans_in_flight(executor->pipeline_depth());
    impl->metrics.pipeline_depth = executor->pipeline_depth();
  }
  FS_RETURN_IF_ERROR(executor->allocate_kv(bs, impl->device_blocks, impl->host_blocks));
  log_info("engine: {} policy {}, kv policy {}, KV blocks of {} tokens: {} device ({:.0f} MiB), {} host",
           ex.device_name(), config.policy, config.kv_policy, bs, impl->device_blocks,
           impl->device_blocks * block_bytes / 1048576.0, impl->host_blocks);
  impl->executor = std::move(executor);
  impl->runtime = std::move(runtime);
  return std::unique_ptr<Engine>(new Engine(std::move(impl)));
}

const ModelRuntime& Engine::runtime() const { return impl_->runtime; }
const ModelConfig& Engine::model_config() const { return impl_->executor->config(); }
const Executor& Engine::executor() const { return *impl_->executor; }
const EngineConfig& Engine::config() const { return impl_->config; }

std::shared_ptr<const SchedulerSnapshot> Engine::scheduler_snapshot() const {
  return impl_->monitor.read(monotonic_s());
}

EngineMetrics Engine::metrics() const {
  std::lock_guard<std::mutex> lock(impl_->metrics_mu);
  EngineMetrics m = impl_->metrics;
  // Submitted requests the engine thread has not admitted yet count as waiting.
  m.num_requests_waiting = std::max<int64_t>(0, impl_->num_queued.load() - m.num_requests_running);
  return m;
}

void Engine::start() {
  if (!impl_->thread.joinable()) impl_->thread = std::thread([this] { impl_->loop(); });
}

void Engine::stop() {
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->stopping = true;
  }
  impl_->cv.notify_all();
  if (impl_->thread.joinable()) impl_->thread.join();
  // Whatever is left (queued or live) ends with kUnavailable.
  const Status gone = make_error(StatusCode::kUnavailable, "the server is shutting down");
  for (auto& [id, job] : impl_->incoming) impl_->fail(job, gone);
  impl_->incoming.clear();
  for (auto& [id, job] : impl_->jobs) impl_->fail(job, gone);
  impl_->jobs.clear();
}

Result<std::unique_ptr<RequestStream>> Engine::submit(GenerationRequest request) {
  const ModelConfig& mc = impl_->executor->config();
  const int64_t vocab = mc.vocab_size, ctx = mc.max_position_embeddings;
  if (request.prompt_tokens.empty()) return invalid_argument("the prompt is empty");
  for (int32_t t : request.prompt_tokens) {
    if (t < 0 || t >= vocab) return invalid_argument("token id {} is outside the vocabulary [0, {})", t, vocab);
  }
  if (request.max_tokens <= 0) return invalid_argument("max_tokens must be at least 1, got {}", request.max_tokens);
  FS_RETURN_IF_ERROR(request.sampling.validate());
  const int64_t total = static_cast<int64_t>(request.prompt_tokens.size()) + request.max_tokens;
  if (total > ctx) {
    return make_error(StatusCode::kOutOfRange,
                      "this model's maximum context length is {} tokens; the prompt has {} and "
                      "max_tokens asks for {} more",
                      ctx, request.prompt_tokens.size(), request.max_tokens);
  }
  const int64_t bs = impl_->config.kv_block_size;
  if ((total + bs - 1) / bs > impl_->device_blocks) {
    return make_error(StatusCode::kOutOfRange,
                      "prompt + max_tokens ({} tokens) exceed the KV cache ({} tokens)", total,
                      impl_->device_blocks * bs);
  }
  if (impl_->num_queued.load() + std::max(request.n, 1) > impl_->config.max_queued_requests) {
    return make_error(StatusCode::kResourceExhausted, "{} requests are queued; try again later",
                      impl_->num_queued.load());
  }
  if (request.n < 1 || request.n > 128) return invalid_argument("n must be in [1, 128], got {}", request.n);
  const int32_t n = request.n;
  auto shared = std::make_shared<RequestStream::Shared>();
  shared->num_open = n;
  std::vector<LiveJob> choices(n);
  for (int32_t i = 0; i < n; ++i) {
    LiveJob& job = choices[i];
    job.shared = shared;
    job.index = i;
    job.request = request;
    if (job.request.sampling.seed) *job.request.sampling.seed += static_cast<uint64_t>(i);
    job.tokens = job.request.prompt_tokens;
    job.sampler = std::make_unique<Sampler>(job.request.sampling);
    if (impl_->runtime.tokenizer) {
      job.decoder = std::make_unique<IncrementalDecoder>(*impl_->runtime.tokenizer, job.request.skip_special_tokens);
    }
    job.stop_matcher = StopMatcher(job.request.stop);
    job.arrival_s = impl_->now();
  }
  auto stream = std::unique_ptr<RequestStream>(new RequestStream(choices[0].request.request_id, shared));
  stream->num_unfinished_ = n;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    if (impl_->stopping) return make_error(StatusCode::kUnavailable, "the server is shutting down");
    for (LiveJob& job : choices) {
      impl_->incoming.emplace_back(impl_->next_job_id++, std::move(job));
      impl_->num_queued++;
    }
  }
  impl_->cv.notify_all();
  return stream;
}

void Engine::Impl::fail(LiveJob& job, Status status) {
  GenerationEvent e;
  e.kind = GenerationEvent::Kind::kError;
  e.error = std::move(status);
  e.index = job.index;
  e.num_prompt_tokens = static_cast<int64_t>(job.request.prompt_tokens.size());
  e.num_output_tokens = job.num_output_tokens;
  num_queued--;  // before the event: a reader may submit again as soon as it sees it
  push_event(*job.shared, std::move(e));
}

void Engine::Impl::finish(sched::JobId id, LiveJob& job, const std::string& reason) {
  GenerationEvent e;
  e.kind = GenerationEvent::Kind::kFinished;
  e.finish_reason = reason;
  e.index = job.index;
  e.num_prompt_tokens = static_cast<int64_t>(job.request.prompt_tokens.size());
  e.num_output_tokens = job.num_output_tokens;
  num_queued--;  // before the event: a reader may submit again as soon as it sees it
  push_event(*job.shared, std::move(e));
  const double t = now();
  {
    std::lock_guard<std::mutex> lock(metrics_mu);
    if (job.first_token_s >= 0) {
      metrics.time_to_first_token.observe(job.first_token_s - job.arrival_s);
      if (job.num_output_tokens > 1) {
        metrics.time_per_output_token.observe((t - job.first_token_s) / (job.num_output_tokens - 1));
      }
    }
    metrics.e2e_request_latency.observe(t - job.arrival_s);
  }
  monitor.observe_finished(
      job.first_token_s >= 0 ? job.first_token_s - job.arrival_s : -1,
      job.num_output_tokens > 1 ? (t - job.first_token_s) / (job.num_output_tokens - 1) : -1,
      t - job.arrival_s);
  // The queue path: the level it joined at and where it ended, and how it moved between them.
  std::string path;
  if (const sched::Job* sj = scheduler->job(id)) {
    path = fmt::format(", queue L{} -> L{} ({} demotions, {} promotions, {} preemptions)",
                       sj->entry_level, sj->level, sj->num_demotions, sj->num_promotions,
                       sj->num_preemptions);
  }
  log_info("request {} (job {}): {} prompt + {} output tokens, ttft {:.3f} s, jct {:.3f} s, {}{}",
           job.request.request_id, id, job.request.prompt_tokens.size(), job.num_output_tokens,
           job.first_token_s - job.arrival_s, t - job.arrival_s, reason, path);
}

bool Engine::Impl::admit() {
  std::vector<std::pair<sched::JobId, LiveJob>> batch;
  {
    std::lock_guard<std::mutex> lock(mu);
    batch.swap(incoming);
  }
  for (auto& [id, job] : batch) {
    sched::JobSpec spec;
    spec.id = id;
    spec.arrival_s = job.arrival_s;
    spec.num_prompt_tokens = static_cast<int32_t>(job.request.prompt_tokens.size());
    spec.max_new_tokens = static_cast<int32_t>(job.request.max_tokens);
    spec.priority = job.request.priority;
    if (Status s = scheduler->add(spec, now()); !s.is_ok()) {
      fail(job, s);
      continue;
    }
    jobs.emplace(id, std::move(job));
  }
  // Readers that went away: abort (blocks are freed at the next schedule()).
  bool aborted = false;
  for (auto it = jobs.begin(); it != jobs.end();) {
    if (is_cancelled(*it->second.shared)) {
      aborted = true;
      scheduler->abort(it->first, now());
      log_info("request {} (job {}): aborted by the client after {} tokens",
               it->second.request.request_id, it->first, it->second.num_output_tokens);
      num_queued--;
      it = jobs.erase(it);
    } else {
      ++it;
    }
  }
  return aborted;
}

void Engine::Impl::loop() {
  publish_snapshot(nullptr, 0);  // the dashboard has a snapshot from the start
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu);
      cv.wait_for(lock, std::chrono::milliseconds(jobs.empty() && in_flight.empty() ? 100 : 0),
                  [&] { return stopping || !incoming.empty(); });
      if (stopping) {
        lock.unlock();
        drain_in_flight();
        return;
      }
    }
    // When the last jobs were aborted, one more (empty) iteration lets the scheduler free their blocks.
    if (!admit() && jobs.empty() && in_flight.empty()) {
      publish_metrics(0, 0);
      publish_snapshot(nullptr, 0);
      continue;
    }
    if (!run_iteration()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

// Hands the plan's block moves to the executor in two calls: first the blocking prefix of each list
// (moves this batch needs), then the proactive rest, which the executor overlaps with the forward
// (iteration_plan.h). The executor orders each call after the previous one, so a proactive move
// may reuse a block a blocking move freed.
Status Engine::Impl::carry_out_swaps(const sched::IterationPlan& plan) {
  auto issue = [&](size_t offload_begin, size_t offload_end, size_t upload_begin,
                   size_t upload_end) {
    offloads.clear();
    uploads.clear();
    for (size_t i = offload_begin; i < offload_end; ++i) {
      offloads.push_back({plan.offload[i].src, plan.offload[i].dst});
    }
    for (size_t i = upload_begin; i < upload_end; ++i) {
      uploads.push_back({plan.upload[i].src, plan.upload[i].dst});
    }
    return executor->swap(offloads, uploads);  // no-op when both are empty
  };
  const size_t blocking_offloads = static_cast<size_t>(plan.num_blocking_offload);
  const size_t blocking_uploads = static_cast<size_t>(plan.num_blocking_upload);
  FS_RETURN_IF_ERROR(issue(0, blocking_offloads, 0, blocking_uploads));
  return issue(blocking_offloads, plan.offload.size(), blocking_uploads, plan.upload.size());
}

void Engine::Impl::build_forward_seqs(const sched::IterationPlan& plan) {
  forward_seqs.clear();
  for (const sched::ScheduledJob& s : plan.batch) {
    const LiveJob& job = jobs.at(s.id);
    forward_seqs.push_back({std::span(job.tokens).subspan(s.num_computed_tokens, s.num_new_tokens),
                            s.num_computed_tokens, s.block_table, false, picks_on_device(job)});
  }
}

// Greedy requests without penalties or top logprobs take the executor's device pick (the row stays
// on the device); not while a test injects faults into rows.
bool Engine::Impl::picks_on_device(const LiveJob& job) const {
  return executor->supports_greedy_picks() && job.sampler->greedy_only() && !config.test_fault_hook;
}

bool Engine::Impl::run_iteration() {
  if (executor->pipeline_depth() > 1) return run_pipelined_iteration();
  const double start = now();
  sched::IterationPlan plan = scheduler->schedule(start);
  const Status swapped = carry_out_swaps(plan);
  if (plan.batch.empty()) {
    scheduler->update(plan, sched::IterationResult{start, now(), {}, {}});
    return !plan.empty();
  }
  build_forward_seqs(plan);
  batches_in_flight_max = 1;
  complete_iteration(plan, start,
                     swapped.is_ok() ? executor->forward(forward_seqs)
                                     : Result<std::span<const float>>(swapped));
  return true;
}

// The batches of the outstanding plans are disjoint and their blocks stay put (the scheduler's
// set_max_plans_in_flight): while batch k is in later pipeline stages, batch k + 1 runs in the
// first. A job aborted while in flight is gone from `jobs` when its plan completes; the scheduler
// frees it after that plan's update.
bool Engine::Impl::run_pipelined_iteration() {
  const size_t depth = static_cast<size_t>(executor->pipeline_depth());
  bool progressed = false;
  while (in_flight.size() < depth) {
    const double start = now();
    sched::IterationPlan plan = scheduler->schedule(start);
    Status swapped = carry_out_swaps(plan);
    if (plan.batch.empty()) {  // never outstanding: nothing (more) can run now
      scheduler->update(plan, sched::IterationResult{start, now(), {}, {}});
      progressed = progressed || !plan.empty();
      break;
    }
    if (swapped.is_ok()) {
      build_forward_seqs(plan);
      executor->forward_submit(forward_seqs);
    }
    in_flight.push_back({std::move(plan), start, std::move(swapped)});
    batches_in_flight_max = std::max(batches_in_flight_max, static_cast<int64_t>(in_flight.size()));
    progressed = true;
  }
  if (in_flight.empty()) return progressed;
  InFlight oldest = std::move(in_flight.front());
  in_flight.pop_front();
  complete_iteration(oldest.plan, oldest.start_s,
                     oldest.status.is_ok() ? executor->forward_wait()
                                           : Result<std::span<const float>>(oldest.status));
  return true;
}

// Stopping: the outstanding forwards finish (their results are dropped; stop() fails the jobs).
void Engine::Impl::drain_in_flight() {
  for (const InFlight& f : in_flight) {
    if (f.status.is_ok()) (void)executor->forward_wait();
  }
  in_flight.clear();
}

void Engine::Impl::complete_iteration(const sched::IterationPlan& plan, double start,
                                      const Result<std::span<const float>>& logits) {
  sched::IterationResult result;
  result.start_s = start;
  int64_t num_prompt = 0, num_generated = 0;
  const int64_t vocab = executor->config().vocab_size;
  std::vector<float>& row = logits_row;
  for (size_t i = 0; i < plan.batch.size(); ++i) {
    const sched::ScheduledJob& s = plan.batch[i];
    auto live = jobs.find(s.id);
    if (live == jobs.end()) continue;  // aborted while in flight (pipelining)
    LiveJob& job = live->second;
    if (s.num_computed_tokens < static_cast<int64_t>(job.request.prompt_tokens.size())) {
      num_prompt += s.num_new_tokens;
    }
    if (!logits.is_ok()) {  // every job of the batch fails, prefill chunks too (their KV is partial)
      result.outputs.push_back({s.id, -1, true});
      continue;
    }
    if (!s.samples_token) continue;
    const auto sample = [&]() -> Result<SampledToken> {
      if (picks_on_device(job)) {  // as build_forward_seqs marked it
        const std::span<const GreedyPick> picks = executor->greedy_picks();
        if (i < picks.size()) return Sampler::from_pick(picks[i]);
        return make_error(StatusCode::kInternal,
                          "the executor returned {} greedy picks for a batch of {}", picks.size(),
                          plan.batch.size());
      }
      row.assign(logits->begin() + i * vocab, logits->begin() + (i + 1) * vocab);
      Status fault = config.test_fault_hook
                         ? config.test_fault_hook(job.request.request_id, job.num_output_tokens, row)
                         : Status::ok();
      if (!fault.is_ok()) return fault;
      return job.sampler->sample(row, job.prompt(), job.output());
    };
    Result<SampledToken> sampled = sample();
    if (!sampled.is_ok()) {
      // A fault in this request's logits or sampling fails it alone: the error output makes the
      // scheduler free its blocks, the rest of the batch goes on.
      log_error("request {} (job {}): failed after {} tokens: {}", job.request.request_id, s.id,
                job.num_output_tokens, sampled.status().to_string());
      result.outputs.push_back({s.id, -1, true});
      fail(job, sampled.status());
      continue;
    }
    SampledToken& tok = *sampled;
    result.outputs.push_back({s.id, tok.token, false});
    job.tokens.push_back(tok.token);
    ++job.num_output_tokens;
    ++num_generated;
    if (job.first_token_s < 0) job.first_token_s = now();

    const auto& stops = job.request.stop_token_ids;
    const bool stop_token = (!job.request.ignore_eos &&
                             std::find(runtime.stop_token_ids.begin(), runtime.stop_token_ids.end(),
                                       tok.token) != runtime.stop_token_ids.end()) ||
                            std::find(stops.begin(), stops.end(), tok.token) != stops.end();
    std::string piece = (job.decoder && !stop_token) ? job.decoder->feed(tok.token) : std::string();
    const bool last = job.num_output_tokens >= job.request.max_tokens;
    if (last && job.decoder && !stop_token) piece += job.decoder->finish();
    StopMatcher::Step step = job.stop_matcher.feed(piece, /*flush=*/last || stop_token);
    GenerationEvent e;
    e.token = tok.token;
    e.text = std::move(step.text);
    e.logprob = tok.logprob;
    e.top_logprobs = std::move(tok.top);
    e.index = job.index;
    bool alive = push_event(*job.shared, std::move(e));
    if (step.stopped || stop_token) {
      result.finished.push_back(s.id);
      finish(s.id, job, "stop");
    } else if (last) {
      finish(s.id, job, "length");
    } else if (!alive) {
      result.finished.push_back(s.id);  // the reader went away: end it here
      num_queued--;
    }
  }
  if (!logits.is_ok()) {
    log_error("forward failed: {}", logits.status().to_string());
    for (const sched::ScheduledJob& s : plan.batch) {
      if (auto live = jobs.find(s.id); live != jobs.end()) fail(live->second, logits.status());
    }
  }
  result.end_s = now();
  scheduler->update(plan, result);
  for (const sched::JobOutput& o : result.outputs) {
    if (o.error || std::find(result.finished.begin(), result.finished.end(), o.id) != result.finished.end() ||
        jobs.at(o.id).num_output_tokens >= jobs.at(o.id).request.max_tokens) {
      jobs.erase(o.id);
    }
  }
  publish_metrics(num_prompt, num_generated);
  publish_snapshot(&plan, result.end_s - start);
}

// Cheap unless due (engine/scheduler_monitor.h): metrics is written only on this thread.
void Engine::Impl::publish_snapshot(const sched::IterationPlan* plan, double iteration_s) {
  const double t = monotonic_s();
  if (!monitor.due(t)) return;
  auto request_id = [this](sched::JobId id) {
    auto it = jobs.find(id);
    return it != jobs.end() ? it->second.request.request_id : std::string();
  };
  monitor.publish(t, {*scheduler, metrics, plan, iteration_s, now(),
                      executor->kv_block_bytes(config.kv_block_size), config.policy,
                      config.kv_policy, request_id});
}

void Engine::Impl::publish_metrics(int64_t num_prompt, int64_t num_generated) {
  const sched::SchedulerStats st = scheduler->stats();
  const int64_t block_bytes = executor->kv_block_bytes(config.kv_block_size);
  std::lock_guard<std::mutex> lock(metrics_mu);
  metrics.num_requests_running = st.num_jobs_by_state[static_cast<int>(sched::JobState::kRunning)];
  metrics.num_requests_waiting = static_cast<int64_t>(jobs.size()) - metrics.num_requests_running;
  metrics.num_requests_total = next_job_id.load() - 1;
  metrics.num_preemptions_total = st.num_preemptions;
  metrics.num_demotions_total = st.num_demotions;
  metrics.num_promotions_total = st.num_promotions;
  metrics.prompt_tokens_total += num_prompt;
  metrics.generation_tokens_total += num_generated;
  metrics.device_kv_blocks_used = st.device_blocks_used;
  metrics.device_kv_blocks_total = st.device_blocks_total;
  metrics.host_kv_blocks_used = st.host_blocks_used;
  metrics.host_kv_blocks_total = st.host_blocks_total;
  metrics.kv_bytes_swapped_out_total = st.num_offloaded_blocks * block_bytes;
  metrics.kv_bytes_swapped_in_total = st.num_uploaded_blocks * block_bytes;
  metrics.jobs_per_queue_level = st.queue_lengths;
  metrics.num_iterations_total = st.num_iterations;
  metrics.batches_in_flight_max = batches_in_flight_max;
}

}  // namespace fs
