// Crash safety: a fault in one request (NaN or inf logits, a sampler or detokenizer error) fails
// that request with an error event and frees its KV blocks; the engine goes on serving the others
// with unchanged output. Faults are injected through EngineConfig::test_fault_hook.
#include <chrono>
#include <cmath>
#include <limits>
#include <map>
#include <thread>

#include <gtest/gtest.h>

#include "engine_test_util.h"

#include "engine/cpu_executor.h"
#include "engine/engine.h"
#include "engine/generate.h"

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

GenerationRequest greedy_request(std::string id, std::vector<int32_t> prompt, int64_t max_tokens) {
  GenerationRequest r;
  r.request_id = std::move(id);
  r.prompt_tokens = std::move(prompt);
  r.max_tokens = max_tokens;
  r.sampling.temperature = 0;
  r.ignore_eos = true;
  return r;
}

std::unique_ptr<Engine> make_engine(EngineConfig config) {
  Result<ModelRuntime> rt = load_model_runtime(kTinyLlama);
  EXPECT_TRUE(rt.is_ok()) << rt.status().to_string();
  Result<std::unique_ptr<Engine>> engine = Engine::create(std::move(*rt), config);
  EXPECT_TRUE(engine.is_ok()) << engine.status().to_string();
  (*engine)->start();
  return std::move(*engine);
}

EngineMetrics idle_metrics(const Engine& engine) {
  EngineMetrics m;
  for (int i = 0; i < 300; ++i) {
    m = engine.metrics();
    if (m.device_kv_blocks_used == 0 && m.num_requests_running == 0 && m.num_requests_waiting == 0)
      break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return m;
}

// Runs requests "good0".."good3" and "bad" together under `hook`; "bad" must fail with `code` after
// `bad_tokens` tokens, the others must give the single-sequence greedy tokens, and no block may
// stay in use afterwards.
void expect_only_the_faulty_request_fails(EngineConfig::FaultHook hook, StatusCode code,
                                          size_t bad_tokens) {
  const std::vector<std::vector<int32_t>> prompts = {
      {1, 5, 9}, {1, 22, 7, 31, 4}, {1, 8}, {1, 40, 41, 42, 43, 44, 45}};
  std::vector<std::vector<int32_t>> expected;
  for (const auto& p : prompts) expected.push_back(reference_tokens(p, 12));
  EngineConfig config;
  config.kv_block_size = 4;
  config.max_num_seqs = 4;
  config.test_fault_hook = std::move(hook);
  std::unique_ptr<Engine> engine = make_engine(config);
  std::vector<std::unique_ptr<RequestStream>> good;
  for (size_t i = 0; i < prompts.size(); ++i) {
    Result<std::unique_ptr<RequestStream>> s =
        engine->submit(greedy_request("good" + std::to_string(i), prompts[i], 12));
    ASSERT_TRUE(s.is_ok()) << s.status().to_string();
    good.push_back(std::move(*s));
    if (i == 1) {  // the faulty one shares batches with the others
      Result<std::unique_ptr<RequestStream>> b =
          engine->submit(greedy_request("bad", {1, 3, 5, 7}, 12));
      ASSERT_TRUE(b.is_ok());
      good.push_back(std::move(*b));
    }
  }
  for (size_t i = 0, g = 0; i < good.size(); ++i) {
    Collected c = collect(*good[i]);
    if (i == 2) {
      EXPECT_EQ(c.error.code(), code) << c.error.to_string();
      EXPECT_EQ(c.tokens.size(), bad_tokens);
      continue;
    }
    ASSERT_TRUE(c.error.is_ok()) << c.error.to_string();
    EXPECT_EQ(c.finish_reason, "length");
    EXPECT_EQ(c.tokens, expected[g]) << "request good" << g;
    ++g;
  }
  EngineMetrics m = idle_metrics(*engine);
  EXPECT_EQ(m.device_kv_blocks_used, 0);
  EXPECT_EQ(m.host_kv_blocks_used, 0);
  EXPECT_EQ(m.num_requests_waiting, 0);
  // The engine still serves.
  Result<std::unique_ptr<RequestStream>> after =
      engine->submit(greedy_request("after", prompts[0], 12));
  ASSERT_TRUE(after.is_ok());
  Collected c = collect(**after);
  ASSERT_TRUE(c.error.is_ok()) << c.error.to_string();
  EXPECT_EQ(c.tokens, expected[0]);
}

TEST(EngineFaultTest, NanLogitsFailOnlyThatRequest) {
  expect_only_the_faulty_request_fails(
      [](const std::string& id, int64_t, std::span<float> logits) {
        if (id == "bad") logits[logits.size() / 2] = std::numeric_limits<float>::quiet_NaN();
        return Status::ok();
      },
      StatusCode::kInternal, 0);
}

TEST(EngineFaultTest, InfiniteLogitsLaterInTheRunFailOnlyThatRequest) {
  expect_only_the_faulty_request_fails(
      [](const std::string& id, int64_t num_output_tokens, std::span<float> logits) {
        if (id == "bad" && num_output_tokens == 3)
          logits[0] = std::numeric_limits<float>::infinity();
        return Status::ok();
      },
      StatusCode::kInternal, 3);
}

TEST(EngineFaultTest, SamplerOrDecoderErrorFailsOnlyThatRequest) {
  expect_only_the_faulty_request_fails(
      [](const std::string& id, int64_t num_output_tokens, std::span<float>) {
        if (id == "bad" && num_output_tokens == 5) {
          return make_error(StatusCode::kInternal, "injected detokenizer failure");
        }
        return Status::ok();
      },
      StatusCode::kInternal, 5);
}

// A CpuExecutor whose forward pass number `fail_call` (1-based) fails, as a device error would.
// A CpuExecutor behind the Executor interface, for test executors that change one call.
class WrappedCpuExecutor : public Executor {
 public:
  explicit WrappedCpuExecutor(CausalLm& lm) : inner_(lm) {}
  const ModelConfig& config() const override { return inner_.config(); }
  std::string device_name() const override { return "wrapped-cpu"; }
  int64_t weight_bytes() const override { return inner_.weight_bytes(); }
  NominalSpeed nominal_speed() const override { return inner_.nominal_speed(); }
  int64_t kv_block_bytes(int64_t block_size) const override {
    return inner_.kv_block_bytes(block_size);
  }
  int64_t max_device_blocks(int64_t bs, int64_t tokens) const override {
    return inner_.max_device_blocks(bs, tokens);
  }
  Status allocate_kv(int64_t block_size, int64_t device_blocks, int64_t host_blocks) override {
    return inner_.allocate_kv(block_size, device_blocks, host_blocks);
  }
  Status swap(std::span<const BlockCopy> offloads, std::span<const BlockCopy> uploads) override {
    return inner_.swap(offloads, uploads);
  }
  Result<std::span<const float>> forward(std::span<const ForwardSeq> seqs) override {
    return inner_.forward(seqs);
  }

 protected:
  CpuExecutor inner_;
};

class FlakyExecutor final : public WrappedCpuExecutor {
 public:
  FlakyExecutor(CausalLm& lm, int fail_call) : WrappedCpuExecutor(lm), fail_call_(fail_call) {}
  Result<std::span<const float>> forward(std::span<const ForwardSeq> seqs) override {
    if (++num_calls_ == fail_call_)
      return make_error(StatusCode::kInternal, "injected device error");
    return inner_.forward(seqs);
  }

 private:
  int fail_call_;
  int num_calls_ = 0;
};

// A failed forward fails every job of its batch, also one in the middle of a chunked prefill (whose
// KV would otherwise stay incomplete and give wrong tokens later); the engine then serves on.
TEST(EngineFaultTest, FailedForwardFailsEveryJobOfTheBatchIncludingPrefillChunks) {
  std::vector<int32_t> long_prompt = {1};
  for (int i = 0; i < 29; ++i) long_prompt.push_back(3 + (7 * i) % 300);
  const std::vector<int32_t> expected = reference_tokens(long_prompt, 6);
  Result<ModelRuntime> rt = load_model_runtime(kTinyLlama);
  ASSERT_TRUE(rt.is_ok()) << rt.status().to_string();
  EngineConfig config;
  config.kv_block_size = 4;
  config.max_num_seqs = 2;
  config.max_num_batched_tokens = 8;  // the 30-token prompt takes 4 forward passes
  auto executor = std::make_unique<FlakyExecutor>(*rt->lm, /*fail_call=*/2);
  Result<std::unique_ptr<Engine>> created =
      Engine::create(std::move(*rt), config, std::move(executor));
  ASSERT_TRUE(created.is_ok()) << created.status().to_string();
  std::unique_ptr<Engine> engine = std::move(*created);
  engine->start();

  Result<std::unique_ptr<RequestStream>> s =
      engine->submit(greedy_request("chunked", long_prompt, 6));
  ASSERT_TRUE(s.is_ok());
  Collected c = collect(**s);
  EXPECT_EQ(c.error.code(), StatusCode::kInternal) << c.error.to_string() << " " << c.finish_reason;
  EXPECT_TRUE(c.tokens.empty());
  EXPECT_EQ(idle_metrics(*engine).device_kv_blocks_used, 0);

  Result<std::unique_ptr<RequestStream>> again =
      engine->submit(greedy_request("again", long_prompt, 6));
  ASSERT_TRUE(again.is_ok());
  c = collect(**again);
  ASSERT_TRUE(c.error.is_ok()) << c.error.to_string();
  EXPECT_EQ(c.tokens, expected);
  EXPECT_EQ(idle_metrics(*engine).device_kv_blocks_used, 0);
}

// An executor that picks greedy rows (as the GPU does) and reports the 4th pick of the sequence
// whose prompt is {1, 3, 5, 7} as a faulty row (token -1, what the device kernel returns for NaN or
// inf logits).
class BadPickExecutor final : public WrappedCpuExecutor {
 public:
  explicit BadPickExecutor(CausalLm& lm) : WrappedCpuExecutor(lm) {}
  Result<std::span<const float>> forward(std::span<const ForwardSeq> seqs) override {
    FS_ASSIGN_OR_RETURN(std::span<const float> logits, inner_.forward(seqs));
    const std::span<const GreedyPick> picks = inner_.greedy_picks();
    picks_.assign(picks.begin(), picks.end());
    for (size_t i = 0; i < seqs.size() && !picks_.empty(); ++i) {
      const ForwardSeq& s = seqs[i];
      EXPECT_TRUE(s.greedy) << "every request of this test is plain greedy";
      if (s.num_past == 0 && std::vector<int32_t>(s.tokens.begin(), s.tokens.end()) ==
                                 std::vector<int32_t>{1, 3, 5, 7}) {
        bad_block_ = s.block_table[0];
      }
      if (bad_block_ >= 0 && !s.block_table.empty() && s.block_table[0] == bad_block_ &&
          ++bad_picks_ == 4) {
        picks_[i].token = -1;
        bad_block_ = -1;  // once: its blocks go back to the pool
      }
    }
    return logits;
  }
  bool supports_greedy_picks() const override { return true; }
  std::span<const GreedyPick> greedy_picks() const override { return picks_; }

 private:
  std::vector<GreedyPick> picks_;
  int32_t bad_block_ = -1;
  int bad_picks_ = 0;
};

// A faulty device pick fails that request alone, after the tokens it had; the others, picked on the
// "device" too, give the single-sequence greedy tokens.
TEST(EngineFaultTest, FaultyGreedyPickFailsOnlyThatRequest) {
  const std::vector<std::vector<int32_t>> prompts = {{1, 5, 9}, {1, 22, 7, 31, 4}};
  Result<ModelRuntime> rt = load_model_runtime(kTinyLlama);
  ASSERT_TRUE(rt.is_ok()) << rt.status().to_string();
  EngineConfig config;
  config.kv_block_size = 4;
  config.max_num_seqs = 4;
  auto executor = std::make_unique<BadPickExecutor>(*rt->lm);
  Result<std::unique_ptr<Engine>> created =
      Engine::create(std::move(*rt), config, std::move(executor));
  ASSERT_TRUE(created.is_ok()) << created.status().to_string();
  std::unique_ptr<Engine> engine = std::move(*created);
  engine->start();
  std::vector<std::unique_ptr<RequestStream>> streams;
  const auto submit = [&](GenerationRequest r) {
    Result<std::unique_ptr<RequestStream>> s = engine->submit(std::move(r));
    EXPECT_TRUE(s.is_ok()) << s.status().to_string();
    streams.push_back(std::move(*s));
  };
  for (const auto& p : prompts) submit(greedy_request("good", p, 12));
  submit(greedy_request("bad", {1, 3, 5, 7}, 12));
  for (size_t i = 0; i < prompts.size(); ++i) {
    Collected c = collect(*streams[i]);
    ASSERT_TRUE(c.error.is_ok()) << c.error.to_string();
    EXPECT_EQ(c.tokens, reference_tokens(prompts[i], 12)) << "request " << i;
  }
  Collected bad = collect(*streams.back());
  EXPECT_EQ(bad.error.code(), StatusCode::kInternal) << bad.error.to_string();
  EXPECT_NE(bad.error.message().find("greedy pick"), std::string::npos) << bad.error.message();
  EXPECT_EQ(bad.tokens.size(), 3u);
  EXPECT_EQ(idle_metrics(*engine).device_kv_blocks_used, 0);
}

}  // namespace
}  // namespace fs
