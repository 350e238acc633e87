// The forward pass against transformers' logits (fixtures from scripts/make_model_fixtures.py), and
// ragged batching against single-sequence runs.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <numeric>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "engine/generate.h"
#include "model/causal_lm.h"

namespace fs {
namespace {

const std::string kRoot = FASTSERVE_SOURCE_DIR;

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << path;
  return nlohmann::json::parse(in);
}

std::unique_ptr<CausalLm> load(const std::string& rel) {
  Result<std::unique_ptr<CausalLm>> lm = CausalLm::load(kRoot + "/" + rel);
  EXPECT_TRUE(lm.is_ok()) << lm.status().to_string();
  return lm.is_ok() ? std::move(*lm) : nullptr;
}

// All-position logits of one prompt, run in chunks of `chunk` tokens over scattered blocks.
std::vector<float> prompt_logits(CausalLm& lm, const std::vector<int32_t>& ids, int64_t chunk) {
  const int64_t bs = 4, num_blocks = 64;
  cpu::KvCache cache(lm.kv_shape(num_blocks, bs));
  std::vector<int32_t> table((ids.size() + bs - 1) / bs);
  for (size_t i = 0; i < table.size(); ++i) table[i] = static_cast<int32_t>(num_blocks - 1 - 3 * i);
  std::vector<float> out;
  for (size_t done = 0; done < ids.size(); done += chunk) {
    const size_t n = std::min<size_t>(chunk, ids.size() - done);
    ForwardSeq seq{std::span(ids).subspan(done, n), static_cast<int64_t>(done), table, true};
    Result<std::span<const float>> logits = lm.forward(std::span(&seq, 1), cache);
    EXPECT_TRUE(logits.is_ok()) << logits.status().to_string();
    if (!logits.is_ok()) return {};
    out.insert(out.end(), logits->begin(), logits->end());
  }
  return out;
}

class TinyModelTest : public ::testing::TestWithParam<std::string> {};

TEST_P(TinyModelTest, LogitsAndGreedyTokensMatchTransformers) {
  const nlohmann::json fixture = read_json(kRoot + "/tests/fixtures/logits/" + GetParam() + ".json");
  std::unique_ptr<CausalLm> lm = load(fixture["model"]);
  ASSERT_TRUE(lm);
  for (const auto& c : fixture["cases"]) {
    const std::vector<int32_t> ids = c["prompt_ids"];
    const std::vector<std::vector<float>> expected = c["logits"];
    for (int64_t chunk : {int64_t{1000}, int64_t{3}}) {
      const std::vector<float> got = prompt_logits(*lm, ids, chunk);
      ASSERT_EQ(got.size(), expected.size() * expected[0].size());
      double max_err = 0;
      for (size_t t = 0; t < expected.size(); ++t) {
        for (size_t v = 0; v < expected[t].size(); ++v) {
          max_err = std::max<double>(max_err, std::abs(got[t * expected[t].size() + v] - expected[t][v]));
        }
      }
      EXPECT_LT(max_err, 2e-4) << GetParam() << " chunk " << chunk;
    }
    GenerateOptions options;
    options.max_tokens = 16;
    options.sampling.temperature = 0;
    Result<GenerateResult> gen = generate(*lm, ids, options);
    ASSERT_TRUE(gen.is_ok()) << gen.status().to_string();
    EXPECT_EQ(gen->tokens, c["greedy_16"].get<std::vector<int32_t>>()) << GetParam();
  }
}

INSTANTIATE_TEST_SUITE_P(Models, TinyModelTest,
                         ::testing::Values("tiny-llama", "tiny-llama-gguf", "tiny-llama3-bf16-sharded",
                                           "tiny-qwen2", "tiny-opt"));

TEST(RaggedBatchTest, SequenceLogitsAreTheSameAloneOrBatched) {
  std::unique_ptr<CausalLm> lm = load("tests/fixtures/models/tiny-qwen2");
  ASSERT_TRUE(lm);
  // Three sequences: a prefill of 7, a decode after 5 cached tokens, a prefill chunk after 3.
  const std::vector<std::vector<int32_t>> seqs = {{1, 9, 8, 7, 6, 5, 4}, {1, 2, 3, 4, 5, 60},
                                                  {1, 100, 101, 102, 103, 104}};
  const std::vector<int64_t> past = {0, 5, 3};
  const int64_t bs = 2, num_blocks = 32;
  cpu::KvCache cache(lm->kv_shape(num_blocks, bs));
  std::vector<std::vector<int32_t>> tables = {{31, 3, 17, 9}, {0, 22, 5}, {30, 1, 12}};
  // Fill the cached parts sequence by sequence, then run the new parts as one batch.
  for (size_t i = 0; i < seqs.size(); ++i) {
    if (past[i] == 0) continue;
    ForwardSeq s{std::span(seqs[i]).first(past[i]), 0, tables[i], false};
    ASSERT_TRUE(lm->forward(std::span(&s, 1), cache).is_ok());
  }
  std::vector<ForwardSeq> batch;
  for (size_t i = 0; i < seqs.size(); ++i) {
    batch.push_back({std::span(seqs[i]).subspan(past[i]), past[i], tables[i], true});
  }
  Result<std::span<const float>> batched = lm->forward(batch, cache);
  ASSERT_TRUE(batched.is_ok());
  const std::vector<float> got(batched->begin(), batched->end());
  const int64_t vocab = lm->config().vocab_size;
  size_t row = 0;
  for (size_t i = 0; i < seqs.size(); ++i) {
    const std::vector<float> alone = prompt_logits(*lm, seqs[i], 1000);
    for (size_t t = past[i]; t < seqs[i].size(); ++t, ++row) {
      for (int64_t v = 0; v < vocab; ++v) {
        ASSERT_NEAR(got[row * vocab + v], alone[t * vocab + v], 1e-4) << "seq " << i << " t " << t;
      }
    }
  }
}

TEST(CausalLmTest, RejectsBadInputWithAMessage) {
  std::unique_ptr<CausalLm> lm = load("tests/fixtures/models/tiny-llama");
  ASSERT_TRUE(lm);
  cpu::KvCache cache(lm->kv_shape(4, 4));
  std::vector<int32_t> table = {0, 1};
  std::vector<int32_t> bad_token = {1, 5000};
  ForwardSeq s{bad_token, 0, table, false};
  Result<std::span<const float>> r = lm->forward(std::span(&s, 1), cache);
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("5000"), std::string::npos);
  std::vector<int32_t> long_prompt(9, 3);
  ForwardSeq s2{long_prompt, 0, table, false};
  EXPECT_FALSE(lm->forward(std::span(&s2, 1), cache).is_ok());  // 2 blocks of 4 < 9 positions
}

}  // namespace
}  // namespace fs

namespace fs {
namespace {

std::vector<float> read_f32(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<float> out(bytes.size() / 4);
  std::memcpy(out.data(), bytes.data(), out.size() * 4);
  return out;
}

int64_t argmax(std::span<const float> v) {
  return std::max_element(v.begin(), v.end()) - v.begin();
}

// The default model (Q4_1 weights, Q8_0 embeddings) against transformers' f32 run on the same
// dequantized weights. Our kernels quantize activations to 8 bits per 32-value block (as llama.cpp
// does), so logits differ slightly: we require the same top-1 token and a small error relative to
// the logits' spread.
TEST(DefaultModelTest, LastTokenLogitsMatchTransformersWithinActivationQuantization) {
  const std::string dir = kRoot + "/tests/fixtures/logits/";
  const nlohmann::json fixture = read_json(dir + "smollm2-q4_1.json");
  std::unique_ptr<CausalLm> lm = load(fixture["model"]);
  ASSERT_TRUE(lm);
  for (const auto& c : fixture["cases"]) {
    const std::vector<int32_t> ids = c["prompt_ids"];
    const std::vector<float> expected = read_f32(dir + c["last_logits_file"].get<std::string>());
    cpu::KvCache cache(lm->kv_shape((ids.size() + 15) / 16, 16));
    std::vector<int32_t> table(cache.shape().num_blocks);
    std::iota(table.begin(), table.end(), 0);
    ForwardSeq seq{ids, 0, table, false};
    Result<std::span<const float>> got = lm->forward(std::span(&seq, 1), cache);
    ASSERT_TRUE(got.is_ok());
    ASSERT_EQ(got->size(), expected.size());
    double max_err = 0, sum_sq = 0, err_sq = 0, mean = 0;
    for (float e : expected) mean += e / expected.size();
    for (size_t i = 0; i < expected.size(); ++i) {
      const double err = (*got)[i] - expected[i];
      max_err = std::max(max_err, std::abs(err));
      err_sq += err * err;
      sum_sq += (expected[i] - mean) * (expected[i] - mean);
    }
    const double stddev = std::sqrt(sum_sq / expected.size());
    const double rms_err = std::sqrt(err_sq / expected.size());
    EXPECT_EQ(argmax(*got), argmax(expected)) << c["text"];
    // Tolerances of 8-bit activations through 30 layers (an f32 copy of the same weights matches
    // transformers to 1e-4: tests/e2e/test_generate.py); see docs/MODELS.md.
    EXPECT_LT(max_err, 0.4 * stddev) << c["text"];
    EXPECT_LT(rms_err, 0.15 * stddev) << c["text"];
    std::printf("[ smollm2 ] %-12.12s max |err| %.3f, rms err %.3f, logit stddev %.3f\n",
                c["text"].get<std::string>().c_str(), max_err, rms_err, stddev);
  }
}

}  // namespace
}  // namespace fs

namespace fs {
namespace {

// A short sequence alone runs the 8-bit integer tiles; batched with a long prefill the same
// matmuls take the sgemm path. Its logits must not depend on that.
TEST(DefaultModelTest, QuantizedLogitsDoNotDependOnTheBatch) {
  std::unique_ptr<CausalLm> lm = load("models/SmolLM2-135M-Instruct.Q4_1.gguf");
  ASSERT_TRUE(lm);
  const std::vector<int32_t> short_seq = {504, 3575, 282, 4649, 314};
  std::vector<int32_t> long_seq(90);
  for (size_t i = 0; i < long_seq.size(); ++i) long_seq[i] = static_cast<int32_t>(100 + 37 * i % 9000);
  cpu::KvCache cache(lm->kv_shape(16, 16));
  const std::vector<int32_t> t1 = {3}, t2 = {9, 4, 12, 7, 1, 0, 15, 14};
  ForwardSeq alone{short_seq, 0, t1, false};
  Result<std::span<const float>> a = lm->forward(std::span(&alone, 1), cache);
  ASSERT_TRUE(a.is_ok());
  const std::vector<float> alone_logits(a->begin(), a->end());
  std::vector<ForwardSeq> batch = {{long_seq, 0, t2, false}, {short_seq, 0, t1, false}};
  Result<std::span<const float>> b = lm->forward(batch, cache);
  ASSERT_TRUE(b.is_ok());
  const int64_t vocab = lm->config().vocab_size;
  double max_diff = 0;
  for (int64_t v = 0; v < vocab; ++v) {
    max_diff = std::max<double>(max_diff, std::abs((*b)[vocab + v] - alone_logits[v]));
  }
  std::printf("[ smollm2 ] alone vs batched with a 90-token prefill: max |diff| %.5f\n", max_diff);
  EXPECT_LT(max_diff, 1e-3);
  EXPECT_EQ(argmax(std::span(*b).subspan(vocab, vocab)), argmax(alone_logits));
}

}  // namespace
}  // namespace fs
