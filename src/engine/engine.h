// The serving engine: one thread owns the scheduler, the KV pools and the model and runs the
// iteration loop (admit -> plan -> swaps -> forward -> sample -> stream -> finish). Callers on any
// thread submit requests and read their events through a RequestStream (STYLE.md habit 13: the server
// is a thin layer around this queue).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "core/status.h"
#include "backend/executor.h"
#include "engine/model_runtime.h"
#include "engine/sampler.h"

namespace fs {

struct EngineConfig {
  std::string policy = "skip-join-mlfq";  // skip-join-mlfq | mlfq | fcfs | vllm
  std::string kv_policy = "proactive";    // proactive | reactive | recompute
  int64_t kv_block_size = 16;             // tokens per KV block
  int64_t device_kv_blocks = 0;           // 0: 1 GiB worth of blocks, at most max_num_seqs contexts
  int64_t host_kv_blocks = 0;             // 0: as many as device blocks
  int32_t max_num_seqs = 16;              // batch limit (sequences per iteration)
  int32_t max_num_batched_tokens = 2048;  // token budget per iteration (chunked prefill)
  std::string cost_model_path;            // `fastserve profile` output; empty: built-in estimate
  int64_t max_queued_requests = 4096;     // submit() fails with kResourceExhausted beyond this
  bool preemption_hysteresis = true;      // (M)LFQ: sched::MlfqConfig::preemption_hysteresis

  // Tests only (fault injection; never set outside tests): called on the engine thread with each
  // job's logits row before it is sampled. It may corrupt the row (NaN, inf) or return an error,
  // which fails that request the way a sampler or detokenizer fault would.
  using FaultHook = std::function<Status(const std::string& request_id, int64_t num_output_tokens,
                                         std::span<float> logits)>;
  FaultHook test_fault_hook;

  Status validate() const;
};

// The KV pool sizes, in blocks of config.kv_block_size tokens, that Engine::create allocates on `ex`:
// config's when set, else the defaults: device, all the memory an executor with its own (a GPU)
// has left after weights and activations for max_num_batched_tokens, or on the CPU 1 GiB, at most
// max_num_seqs full contexts; host, as many as the device pool, at most 16 GiB. `fastserve profile`
// records the same sizes in the cost model. kResourceExhausted when config asks for more device
// blocks than fit.
struct KvPoolBlocks {
  int64_t device_blocks = 0;
  int64_t host_blocks = 0;
};
Result<KvPoolBlocks> kv_pool_blocks(const Executor& ex, const EngineConfig& config);

struct GenerationRequest {
  std::string request_id;                 // for logs
  std::vector<int32_t> prompt_tokens;
  int64_t max_tokens = 16;
  SamplingParams sampling;
  std::vector<std::string> stop;          // stop strings (not part of the output)
  std::vector<int32_t> stop_token_ids;    // besides the model's EOS
  bool ignore_eos = false;
  bool skip_special_tokens = true;
  // Choices (OpenAI `n`): n independent jobs over one stream, their events tagged with
  // GenerationEvent::index; choice i samples with seed + i when a seed is set.
  int32_t n = 1;
  // The request's `priority` (vLLM's meaning): lower is scheduled first, 0 by default; every
  // policy orders by it before its own key (docs/SCHEDULING.md "Client priorities").
  int32_t priority = 0;
};

struct GenerationEvent {
  enum class Kind { kToken, kFinished, kError };
  Kind kind = Kind::kToken;
  // kToken: one sampled token and the text it completes (may be empty mid-character; text held back
  // while it could still become a stop string).
  int32_t token = -1;
  std::string text;
  float logprob = 0.0f;
  std::vector<TokenLogprob> top_logprobs;
  // kFinished: "stop" | "length" | "abort". kError: the status.
  std::string finish_reason;
  Status error;
  int64_t num_prompt_tokens = 0;
  int64_t num_output_tokens = 0;
  int32_t index = 0;  // the choice this event belongs to (GenerationRequest::n)
};

class Engine;
struct SchedulerSnapshot;  // engine/scheduler_monitor.h

// The reader of one request's events. Thread-safe against the engine thread; one reader. Destroying
// it (or cancel()) aborts the request: the engine frees its KV at the next iteration. It may outlive
// the Engine (it then reads the final kError the engine queued when it stopped).
class RequestStream {
 public:
  ~RequestStream();
  // Blocks up to `timeout` for the next event; nullopt on timeout. Once every choice has had its
  // kFinished/kError, returns nullopt immediately.
  std::optional<GenerationEvent> next(std::chrono::milliseconds timeout);
  // For event loops (push instead of pull): `notify` is called when an event is queued into an
  // empty queue (edge-triggered: read with next(0ms) until it returns nullopt, then wait for the
  // next call). It runs on the engine thread with the stream's lock held, so it must be quick and
  // must not call into this stream (post to an executor instead). Called at once, on this thread,
  // when events are already waiting. Never called after cancel() or the destructor has returned.
  // Replaces an earlier notifier; an empty function removes it.
  void set_notifier(std::function<void()> notify);
  void cancel();
  const std::string& request_id() const { return request_id_; }

  // The state shared with the engine thread (engine-internal; callers use next() and cancel()).
  struct Shared {
    std::mutex mu;
    std::condition_variable cv;
    std::deque<GenerationEvent> events;
    int32_t num_open = 1;    // choices without a final event yet
    bool done = false;       // every choice's final event was queued
    bool cancelled = false;  // the reader went away
    std::function<void()> notify;  // set_notifier()
  };

 private:
  friend class Engine;
  RequestStream(std::string request_id, std::shared_ptr<Shared> shared)
      : request_id_(std::move(request_id)), shared_(std::move(shared)) {}
  std::string request_id_;
  std::shared_ptr<Shared> shared_;
  int32_t num_unfinished_ = 1;  // choices whose final event the reader has not read yet
};

// A Prometheus-style histogram: counts[i] = observations <= bounds[i] (not cumulative here; the
// exporter accumulates), counts.back() = above the last bound.
struct LatencyHistogram {
  std::vector<double> bounds_s = {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120};
  std::vector<int64_t> counts = std::vector<int64_t>(14, 0);
  double sum_s = 0;
  int64_t count = 0;
  void observe(double seconds);
};

struct EngineMetrics {
  int64_t num_requests_running = 0;
  int64_t num_requests_waiting = 0;
  int64_t num_requests_total = 0;
  int64_t num_preemptions_total = 0;
  int64_t num_demotions_total = 0;
  int64_t num_promotions_total = 0;
  int64_t prompt_tokens_total = 0;
  int64_t generation_tokens_total = 0;
  int64_t device_kv_blocks_used = 0, device_kv_blocks_total = 0;
  int64_t host_kv_blocks_used = 0, host_kv_blocks_total = 0;
  int64_t kv_bytes_swapped_out_total = 0, kv_bytes_swapped_in_total = 0;
  std::vector<int64_t> jobs_per_queue_level;
  int64_t num_iterations_total = 0;
  // Pipelining (Executor::pipeline_depth() > 1): the depth, and the most forwards (batches) that
  // were outstanding at once since the start.
  int64_t pipeline_depth = 1;
  int64_t batches_in_flight_max = 0;
  LatencyHistogram time_to_first_token;    // per finished request
  LatencyHistogram e2e_request_latency;    // arrival to last token
  LatencyHistogram time_per_output_token;  // (e2e - ttft) / (output tokens - 1)
};

class Engine {
 public:
  // Takes the loaded runtime and the executor that runs its forward passes (null: a CpuExecutor over
  // runtime.lm); allocates the KV pools; starts no thread until start().
  static Result<std::unique_ptr<Engine>> create(ModelRuntime runtime, const EngineConfig& config,
                                                std::unique_ptr<Executor> executor = nullptr);
  ~Engine();  // stops the loop; pending requests get a kError (kUnavailable)

  void start();
  // Stops accepting, aborts what is left, joins the loop thread. Idempotent.
  void stop();

  // Queues a request. Errors: kInvalidArgument (empty prompt, bad sampling, token id out of
  // vocabulary), kOutOfRange (prompt + max_tokens past the context), kResourceExhausted (queue full),
  // kUnavailable (stopping). Thread-safe.
  Result<std::unique_ptr<RequestStream>> submit(GenerationRequest request);

  const ModelRuntime& runtime() const;
  const ModelConfig& model_config() const;  // the executor's model
  const Executor& executor() const;
  const EngineConfig& config() const;
  EngineMetrics metrics() const;  // a snapshot; thread-safe
  // The latest scheduler snapshot for the dashboard (null until the engine's first publish); marks
  // a reader as active so the engine publishes every ~50 ms for the next 2 s. Thread-safe; never
  // waits for an iteration.
  std::shared_ptr<const SchedulerSnapshot> scheduler_snapshot() const;

 private:
  struct Impl;
  explicit Engine(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace fs
