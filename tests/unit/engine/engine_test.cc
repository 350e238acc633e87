#include "engine/engine.h"

#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include <gtest/gtest.h>

#include "engine_test_util.h"

#include "engine/cpu_executor.h"
#include "engine/generate.h"
#include "engine/stop_matcher.h"

namespace fs {
namespace {

using testing::Collected;
using testing::collect;
using testing::kTinyLlama;

std::vector<int32_t> reference_tokens(const std::vector<int32_t>& prompt, int64_t max_tokens) {
  Result<std::unique_ptr<CausalLm>> lm = CausalLm::load(kTinyLlama);
  EXPECT_TRUE(lm.is_ok());
  GenerateOptions options;
  options.max_tokens = max_tokens;
  options.sampling.temperature = 0;
  Result<GenerateResult> r = generate(**lm, prompt, options);
  EXPECT_TRUE(r.is_ok());
  return r->tokens;
}

// copy_delay > 0: a CpuExecutor whose copy thread is slowed that much per swap call.
std::unique_ptr<Engine> make_engine(EngineConfig config, std::chrono::microseconds copy_delay = {}) {
  Result<ModelRuntime> rt = load_model_runtime(kTinyLlama);
  EXPECT_TRUE(rt.is_ok()) << rt.status().to_string();
  std::unique_ptr<Executor> executor;
  if (copy_delay.count() > 0) {
    executor = std::make_unique<CpuExecutor>(
        *rt->lm, CpuExecutor::Options{.test_copy_delay = copy_delay});
  }
  Result<std::unique_ptr<Engine>> engine =
      Engine::create(std::move(*rt), config, std::move(executor));
  EXPECT_TRUE(engine.is_ok()) << engine.status().to_string();
  (*engine)->start();
  return std::move(*engine);
}

GenerationRequest greedy_request(std::vector<int32_t> prompt, int64_t max_tokens) {
  GenerationRequest r;
  r.prompt_tokens = std::move(prompt);
  r.max_tokens = max_tokens;
  r.sampling.temperature = 0;
  r.ignore_eos = true;
  return r;
}

std::vector<std::vector<int32_t>> prompts() {
  std::vector<std::vector<int32_t>> out;
  for (int i = 0; i < 12; ++i) {
    std::vector<int32_t> p = {1};
    for (int j = 0; j < 3 + 7 * (i % 4); ++j) p.push_back((17 * i + 5 * j) % 300 + 3);
    out.push_back(p);
  }
  return out;
}

void expect_concurrent_requests_match_reference(EngineConfig config, bool expect_swaps,
                                                 std::chrono::microseconds copy_delay = {}) {
  const auto ps = prompts();
  // References first: the kernels' thread pool serves one caller at a time (the engine thread).
  std::vector<std::vector<int32_t>> expected;
  for (size_t i = 0; i < ps.size(); ++i) expected.push_back(reference_tokens(ps[i], 10 + 3 * (i % 5)));
  std::unique_ptr<Engine> engine = make_engine(config, copy_delay);
  std::vector<std::unique_ptr<RequestStream>> streams;
  for (size_t i = 0; i < ps.size(); ++i) {
    Result<std::unique_ptr<RequestStream>> s = engine->submit(greedy_request(ps[i], 10 + 3 * (i % 5)));
    ASSERT_TRUE(s.is_ok()) << s.status().to_string();
    streams.push_back(std::move(*s));
  }
  for (size_t i = 0; i < ps.size(); ++i) {
    Collected c = collect(*streams[i]);
    ASSERT_TRUE(c.error.is_ok()) << c.error.to_string();
    EXPECT_EQ(c.finish_reason, "length");
    EXPECT_EQ(c.tokens, expected[i]) << "request " << i;
  }
  // The engine thread publishes metrics after the iteration that finished the last job.
  EngineMetrics m;
  for (int i = 0; i < 200; ++i) {
    m = engine->metrics();
    if (m.device_kv_blocks_used == 0 && m.num_requests_running == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(m.device_kv_blocks_used, 0);
  EXPECT_EQ(m.host_kv_blocks_used, 0);
  if (expect_swaps) {
    EXPECT_GT(m.kv_bytes_swapped_out_total + m.num_preemptions_total, 0);
  }
}

TEST(EngineTest, ConcurrentGreedyRequestsGiveTheSingleSequenceTokens) {
  for (const char* policy : {"skip-join-mlfq", "fcfs", "vllm", "mlfq"}) {
    SCOPED_TRACE(policy);
    EngineConfig config;
    config.policy = policy;
    config.max_num_seqs = 4;
    config.kv_block_size = 4;
    expect_concurrent_requests_match_reference(config, false);
  }
}

TEST(EngineTest, SmallDevicePoolForcesOffloadingAndOutputsStayTheSame) {
  for (const char* kv_policy : {"proactive", "reactive", "recompute"}) {
    SCOPED_TRACE(kv_policy);
    EngineConfig config;
    config.kv_policy = kv_policy;
    config.max_num_seqs = 4;
    config.kv_block_size = 4;
    config.device_kv_blocks = 24;  // a few sequences' worth: the rest must wait on the host
    config.host_kv_blocks = 200;
    expect_concurrent_requests_match_reference(config, true);
  }
}

// The same with the CPU copy thread slowed (2 ms per swap call): a job whose upload is slow waits for
// it (else its tokens would differ). Proactive moves are few here (1-5 forwards of a run overlap
// one, some runs none), so their overlap is asserted in cpu_executor_test.cc instead.
TEST(EngineTest, SlowedCopyThreadKeepsTheOutputsOfASmallDevicePool) {
  for (const char* kv_policy : {"proactive", "reactive"}) {
    SCOPED_TRACE(kv_policy);
    EngineConfig config;
    config.kv_policy = kv_policy;
    config.max_num_seqs = 4;
    config.kv_block_size = 4;
    config.device_kv_blocks = 24;
    config.host_kv_blocks = 200;
    expect_concurrent_requests_match_reference(config, true, std::chrono::milliseconds(2));
  }
}

TEST(EngineTest, CancelledRequestsReleaseTheirBlocks) {
  EngineConfig config;
  config.kv_block_size = 4;
  std::unique_ptr<Engine> engine = make_engine(config);
  std::vector<std::unique_ptr<RequestStream>> streams;
  for (int i = 0; i < 6; ++i) {
    Result<std::unique_ptr<RequestStream>> s = engine->submit(greedy_request({1, 5, 9, 13}, 200));
    ASSERT_TRUE(s.is_ok());
    streams.push_back(std::move(*s));
  }
  for (int i = 0; i < 6; i += 2) ASSERT_TRUE(streams[i]->next(std::chrono::seconds(30)));
  for (int i = 0; i < 6; i += 2) streams[i].reset();  // the client went away
  for (int i = 1; i < 6; i += 2) {
    Collected c = collect(*streams[i]);
    EXPECT_EQ(c.tokens.size(), 200u);
  }
  EngineMetrics m;
  for (int i = 0; i < 200; ++i) {
    m = engine->metrics();
    if (m.device_kv_blocks_used == 0 && m.num_requests_running == 0 && m.num_requests_waiting == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(m.device_kv_blocks_used, 0);
  EXPECT_EQ(m.num_requests_waiting, 0);
}

// An event-loop reader: wakes only on the notifier, drains with next(0), and gets every token.
TEST(EngineTest, NotifierWakesAnEventLoopReaderForEveryEvent) {
  const std::vector<int32_t> prompt = {1, 7, 11, 19};
  const std::vector<int32_t> expected = reference_tokens(prompt, 24);
  std::unique_ptr<Engine> engine = make_engine(EngineConfig{});
  Result<std::unique_ptr<RequestStream>> s = engine->submit(greedy_request(prompt, 24));
  ASSERT_TRUE(s.is_ok());
  std::mutex mu;
  std::condition_variable cv;
  int num_wakeups = 0;
  (*s)->set_notifier([&] {
    std::lock_guard<std::mutex> lock(mu);
    ++num_wakeups;
    cv.notify_one();
  });
  std::vector<int32_t> tokens;
  bool finished = false;
  int num_seen = 0;
  while (!finished) {
    {
      std::unique_lock<std::mutex> lock(mu);
      ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(60), [&] { return num_wakeups > num_seen; }));
      num_seen = num_wakeups;
    }
    while (std::optional<GenerationEvent> e = (*s)->next(std::chrono::milliseconds(0))) {
      if (e->kind == GenerationEvent::Kind::kToken) {
        tokens.push_back(e->token);
      } else {
        EXPECT_EQ(e->finish_reason, "length");
        finished = true;
      }
    }
  }
  EXPECT_EQ(tokens, expected);
  EXPECT_GE(num_seen, 1);
}

TEST(EngineTest, NotifierIsNotCalledAfterCancel) {
  std::unique_ptr<Engine> engine = make_engine(EngineConfig{});
  Result<std::unique_ptr<RequestStream>> s = engine->submit(greedy_request({1, 2, 3}, 200));
  ASSERT_TRUE(s.is_ok());
  std::atomic<int> num_calls{0};
  std::atomic<bool> cancelled{false};
  std::atomic<int> num_after_cancel{0};
  (*s)->set_notifier([&] {
    ++num_calls;
    if (cancelled) ++num_after_cancel;
  });
  for (int i = 0; i < 2000 && num_calls == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  ASSERT_GT(num_calls.load(), 0);
  (*s)->cancel();
  cancelled = true;
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_EQ(num_after_cancel.load(), 0);
  // Events already queued: setting a notifier calls it at once (on this thread).
  Result<std::unique_ptr<RequestStream>> t = engine->submit(greedy_request({1, 2, 3}, 2));
  ASSERT_TRUE(t.is_ok());
  for (int i = 0; i < 2000 && engine->metrics().num_requests_waiting + engine->metrics().num_requests_running > 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  bool called = false;
  (*t)->set_notifier([&] { called = true; });
  EXPECT_TRUE(called);
}

TEST(EngineTest, BlocksAreFreedWhenEveryReaderGoesAway) {
  EngineConfig config;
  config.kv_block_size = 4;
  std::unique_ptr<Engine> engine = make_engine(config);
  std::vector<std::unique_ptr<RequestStream>> streams;
  for (int i = 0; i < 4; ++i) {
    Result<std::unique_ptr<RequestStream>> s = engine->submit(greedy_request({1, 5, 9, 13, 17}, 200));
    ASSERT_TRUE(s.is_ok());
    streams.push_back(std::move(*s));
  }
  for (auto& s : streams) ASSERT_TRUE(s->next(std::chrono::seconds(30)));
  streams.clear();  // every client went away: no job is left to drive another schedule()
  EngineMetrics m;
  for (int i = 0; i < 500; ++i) {
    m = engine->metrics();
    if (m.device_kv_blocks_used == 0 && m.host_kv_blocks_used == 0 && m.num_requests_waiting == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(m.device_kv_blocks_used, 0);
  EXPECT_EQ(m.host_kv_blocks_used, 0);
  EXPECT_EQ(m.num_requests_waiting, 0);
}

TEST(EngineTest, RejectsBadRequestsWithClearErrors) {
  std::unique_ptr<Engine> engine = make_engine(EngineConfig{});
  EXPECT_EQ(engine->submit(greedy_request({}, 4)).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(engine->submit(greedy_request({1, 99999}, 4)).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(engine->submit(greedy_request({1, 2}, 100000)).status().code(), StatusCode::kOutOfRange);
  GenerationRequest bad = greedy_request({1, 2}, 4);
  bad.sampling.top_p = 2;
  EXPECT_EQ(engine->submit(bad).status().code(), StatusCode::kInvalidArgument);
  // The engine still serves.
  Result<std::unique_ptr<RequestStream>> s = engine->submit(greedy_request({1, 2, 3}, 3));
  ASSERT_TRUE(s.is_ok());
  EXPECT_EQ(collect(**s).tokens.size(), 3u);
}

TEST(EngineTest, StopEndsPendingStreamsWithUnavailable) {
  std::unique_ptr<Engine> engine = make_engine(EngineConfig{});
  Result<std::unique_ptr<RequestStream>> s = engine->submit(greedy_request({1, 2, 3}, 250));
  ASSERT_TRUE(s.is_ok());
  engine->stop();
  Collected c = collect(**s);
  EXPECT_TRUE(c.finish_reason == "length" || c.error.code() == StatusCode::kUnavailable);
  EXPECT_EQ(engine->submit(greedy_request({1, 2, 3}, 3)).status().code(), StatusCode::kUnavailable);
}

// A pipelined executor over a CpuExecutor (depth forwards outstanding; each runs at submit and
// its logits wait in a queue) that checks what the engine promises it: the outstanding batches
// use disjoint blocks, and no swap moves a block of an outstanding batch.
class PipelinedTestExecutor final : public Executor {
 public:
  PipelinedTestExecutor(CausalLm& lm, int depth) : cpu_(lm), depth_(depth) {}
  const ModelConfig& config() const override { return cpu_.config(); }
  std::string device_name() const override { return "cpu (pipelined test)"; }
  int64_t weight_bytes() const override { return cpu_.weight_bytes(); }
  NominalSpeed nominal_speed() const override { return cpu_.nominal_speed(); }
  int64_t kv_block_bytes(int64_t block_size) const override { return cpu_.kv_block_bytes(block_size); }
  int64_t max_device_blocks(int64_t bs, int64_t tokens) const override {
    return cpu_.max_device_blocks(bs, tokens);
  }
  Status allocate_kv(int64_t block_size, int64_t device_blocks, int64_t host_blocks) override {
    return cpu_.allocate_kv(block_size, device_blocks, host_blocks);
  }
  Status swap(std::span<const BlockCopy> offloads, std::span<const BlockCopy> uploads) override {
    for (const BlockCopy& m : offloads) EXPECT_FALSE(busy(m.src)) << "offload of a busy block";
    for (const BlockCopy& m : uploads) EXPECT_FALSE(busy(m.dst)) << "upload into a busy block";
    return cpu_.swap(offloads, uploads);
  }
  Result<std::span<const float>> forward(std::span<const ForwardSeq> seqs) override {
    EXPECT_TRUE(outstanding_.empty());
    return cpu_.forward(seqs);
  }
  int pipeline_depth() const override { return depth_; }
  void forward_submit(std::span<const ForwardSeq> seqs) override {
    EXPECT_LT(static_cast<int>(outstanding_.size()), depth_);
    Outstanding o;
    for (const ForwardSeq& s : seqs) {
      for (int32_t b : s.block_table) {
        EXPECT_FALSE(busy(b)) << "block " << b << " in two outstanding batches";
        o.blocks.push_back(b);
      }
    }
    Result<std::span<const float>> r = cpu_.forward(seqs);
    if (r.is_ok()) {
      o.logits.assign(r->begin(), r->end());
    } else {
      o.status = r.status();
    }
    outstanding_.push_back(std::move(o));
    max_outstanding_ = std::max(max_outstanding_, static_cast<int>(outstanding_.size()));
  }
  Result<std::span<const float>> forward_wait() override {
    EXPECT_FALSE(outstanding_.empty());
    current_ = std::move(outstanding_.front());
    outstanding_.pop_front();
    if (!current_.status.is_ok()) return current_.status;
    return std::span<const float>(current_.logits);
  }

 private:
  struct Outstanding {
    std::vector<int32_t> blocks;
    std::vector<float> logits;
    Status status;
  };
  bool busy(int32_t block) const {
    for (const Outstanding& o : outstanding_) {
      if (std::find(o.blocks.begin(), o.blocks.end(), block) != o.blocks.end()) return true;
    }
    return false;
  }
  CpuExecutor cpu_;
  int depth_;
  std::deque<Outstanding> outstanding_;
  Outstanding current_;
  int max_outstanding_ = 0;
};

// Several batches in flight (pipeline parallelism): the same greedy tokens, also when a small
// device pool forces swaps, and the pipeline really fills.
TEST(EnginePipelineTest, PipelinedBatchesGiveTheSingleSequenceTokens) {
  const auto ps = prompts();
  std::vector<std::vector<int32_t>> expected;
  for (size_t i = 0; i < ps.size(); ++i) expected.push_back(reference_tokens(ps[i], 10 + 3 * (i % 5)));
  for (int depth : {2, 3}) {
    for (int32_t device_blocks : {0, 24}) {
      SCOPED_TRACE(::testing::Message() << "depth " << depth << " device blocks " << device_blocks);
      Result<ModelRuntime> rt = load_model_runtime(kTinyLlama);
      ASSERT_TRUE(rt.is_ok()) << rt.status().to_string();
      auto executor = std::make_unique<PipelinedTestExecutor>(*rt->lm, depth);
      EngineConfig config;
      config.max_num_seqs = 4;
      config.kv_block_size = 4;
      config.device_kv_blocks = device_blocks;
      config.host_kv_blocks = device_blocks > 0 ? 200 : 0;
      Result<std::unique_ptr<Engine>> engine =
          Engine::create(std::move(*rt), config, std::move(executor));
      ASSERT_TRUE(engine.is_ok()) << engine.status().to_string();
      std::vector<std::unique_ptr<RequestStream>> streams;
      for (size_t i = 0; i < ps.size(); ++i) {
        Result<std::unique_ptr<RequestStream>> s =
            (*engine)->submit(greedy_request(ps[i], 10 + 3 * (i % 5)));
        ASSERT_TRUE(s.is_ok()) << s.status().to_string();
        streams.push_back(std::move(*s));
      }
      // Started after every request is queued, so the first iterations see all 12 jobs and the
      // pipeline fills however slowly the submitting thread runs (under ASan on a loaded machine
      // the requests trickled in and depth 3 reached only 2 batches in flight).
      (*engine)->start();
      for (size_t i = 0; i < ps.size(); ++i) {
        Collected c = collect(*streams[i]);
        ASSERT_TRUE(c.error.is_ok()) << c.error.to_string();
        EXPECT_EQ(c.tokens, expected[i]) << "request " << i;
      }
      // Wait for the pools to drain (a job's host blocks can be freed an iteration after its last
      // token: under ASan the loop saw the device pool empty and the host not yet).
      EngineMetrics m;
      for (int i = 0; i < 200; ++i) {
        m = (*engine)->metrics();
        if (m.device_kv_blocks_used == 0 && m.host_kv_blocks_used == 0 &&
            m.num_requests_running == 0) {
          break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
      EXPECT_EQ(m.device_kv_blocks_used, 0);
      EXPECT_EQ(m.host_kv_blocks_used, 0);
      EXPECT_EQ(m.pipeline_depth, depth);
      if (device_blocks > 0) {
        // 24 device blocks hold about 4 jobs: whether a third plan finds jobs whose KV fits depends
        // on how far the others got (timing; under ASan depth 3 often reached only 2 in flight).
        EXPECT_GE(m.batches_in_flight_max, 2);
        EXPECT_LE(m.batches_in_flight_max, depth);
        EXPECT_GT(m.kv_bytes_swapped_out_total, 0);
      } else {
        EXPECT_EQ(m.batches_in_flight_max, depth);
      }
    }
  }
}

// Readers that go away while their jobs are in flight: the engine skips their results and the
// scheduler frees their blocks after the batch completes.
TEST(EnginePipelineTest, CancelledRequestsInFlightReleaseTheirBlocks) {
  Result<ModelRuntime> rt = load_model_runtime(kTinyLlama);
  ASSERT_TRUE(rt.is_ok()) << rt.status().to_string();
  auto executor = std::make_unique<PipelinedTestExecutor>(*rt->lm, 2);
  EngineConfig config;
  config.kv_block_size = 4;
  Result<std::unique_ptr<Engine>> engine = Engine::create(std::move(*rt), config, std::move(executor));
  ASSERT_TRUE(engine.is_ok()) << engine.status().to_string();
  (*engine)->start();
  std::vector<std::unique_ptr<RequestStream>> streams;
  for (int i = 0; i < 6; ++i) {
    Result<std::unique_ptr<RequestStream>> s = (*engine)->submit(greedy_request({1, 5, 9, 13}, 200));
    ASSERT_TRUE(s.is_ok());
    streams.push_back(std::move(*s));
  }
  for (int i = 0; i < 6; i += 2) ASSERT_TRUE(streams[i]->next(std::chrono::seconds(30)));
  for (int i = 0; i < 6; i += 2) streams[i].reset();
  for (int i = 1; i < 6; i += 2) EXPECT_EQ(collect(*streams[i]).tokens.size(), 200u);
  EngineMetrics m;
  for (int i = 0; i < 200; ++i) {
    m = (*engine)->metrics();
    if (m.device_kv_blocks_used == 0 && m.num_requests_running == 0 && m.num_requests_waiting == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(m.device_kv_blocks_used, 0);
  EXPECT_EQ(m.num_requests_waiting, 0);
  EXPECT_EQ(m.batches_in_flight_max, 2);
}

TEST(StopMatcherTest, HoldsBackPossibleStopPrefixesAndCutsAtTheStop) {
  StopMatcher m({"</s>", "STOP"});
  EXPECT_EQ(m.feed("Hello <", false).text, "Hello ");
  StopMatcher::Step s = m.feed("/x", false);
  EXPECT_EQ(s.text, "</x");
  EXPECT_FALSE(s.stopped);
  s = m.feed(" and ST", false);
  EXPECT_EQ(s.text, " and ");
  s = m.feed("OP more", false);
  EXPECT_TRUE(s.stopped);
  EXPECT_EQ(s.text, "");
  EXPECT_TRUE(m.feed("x", true).stopped);
}

TEST(StopMatcherTest, FlushReleasesEverythingWithoutAStop) {
  StopMatcher m({"abc"});
  EXPECT_EQ(m.feed("xxab", false).text, "xx");
  EXPECT_EQ(m.feed("", true).text, "ab");
  StopMatcher none(std::vector<std::string>{});
  EXPECT_EQ(none.feed("anything", false).text, "anything");
}

}  // namespace
}  // namespace fs

namespace fs {
namespace {

TEST(LatencyHistogramTest, CountsIntoTheFirstBucketThatHoldsTheValue) {
  LatencyHistogram h;
  h.observe(0.005);
  h.observe(0.01);
  h.observe(0.3);
  h.observe(1000);
  EXPECT_EQ(h.counts[0], 2);
  EXPECT_EQ(h.counts[5], 1);  // 0.25 < 0.3 <= 0.5
  EXPECT_EQ(h.counts.back(), 1);
  EXPECT_EQ(h.count, 4);
  EXPECT_NEAR(h.sum_s, 1000.315, 1e-9);
}

}  // namespace
}  // namespace fs

namespace fs {
namespace {

// OpenAI `n`: n choices of one request over one stream. Greedy choices all equal the reference;
// seeded sampling gives choice i the tokens of a single request with seed + i.
TEST(EngineChoicesTest, NChoicesShareOneStreamWithSeedPerChoice) {
  std::unique_ptr<Engine> engine = make_engine(EngineConfig{});
  const std::vector<int32_t> prompt = prompts()[5];
  GenerationRequest greedy = greedy_request(prompt, 6);
  greedy.n = 3;
  auto stream = engine->submit(greedy);
  ASSERT_TRUE(stream.is_ok());
  std::vector<std::vector<int32_t>> tokens(3);
  std::vector<int> finals(3, 0);
  for (;;) {
    std::optional<GenerationEvent> e = (*stream)->next(std::chrono::seconds(60));
    if (!e) break;
    ASSERT_GE(e->index, 0);
    ASSERT_LT(e->index, 3);
    if (e->kind == GenerationEvent::Kind::kToken) {
      EXPECT_EQ(finals[e->index], 0) << "token after the choice's final event";
      tokens[e->index].push_back(e->token);
    } else {
      EXPECT_EQ(e->finish_reason, "length");
      ++finals[e->index];
    }
  }
  EXPECT_EQ(finals, std::vector<int>({1, 1, 1}));
  const std::vector<int32_t> want = reference_tokens(prompt, 6);
  for (const auto& t : tokens) EXPECT_EQ(t, want);

  GenerationRequest sampled = greedy_request(prompt, 8);
  sampled.sampling.temperature = 1.5;
  sampled.sampling.seed = 100;
  sampled.n = 2;
  auto both = engine->submit(sampled);
  ASSERT_TRUE(both.is_ok());
  std::vector<std::vector<int32_t>> got(2);
  while (std::optional<GenerationEvent> e = (*both)->next(std::chrono::seconds(60))) {
    if (e->kind == GenerationEvent::Kind::kToken) got[e->index].push_back(e->token);
  }
  for (int i = 0; i < 2; ++i) {
    GenerationRequest single = sampled;
    single.n = 1;
    single.sampling.seed = 100 + i;
    auto s = engine->submit(single);
    ASSERT_TRUE(s.is_ok());
    EXPECT_EQ(collect(**s).tokens, got[i]) << "choice " << i;
  }
  EXPECT_NE(got[0], got[1]);
  GenerationRequest bad = greedy;
  bad.n = 0;
  EXPECT_EQ(engine->submit(bad).status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace fs
