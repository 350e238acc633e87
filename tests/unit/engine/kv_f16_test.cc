// The model with an f16 KV cache (--kv-cache-dtype f16): the default model against transformers'
// fixture with the bounds of the f32 cache's test, batch invariance, and half the block bytes.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <numeric>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "model/causal_lm.h"

namespace fs {
namespace {

const std::string kRoot = FASTSERVE_SOURCE_DIR;

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

std::unique_ptr<CausalLm> load_default_f16_kv() {
  Result<std::unique_ptr<CausalLm>> lm =
      CausalLm::load(kRoot + "/models/SmolLM2-135M-Instruct.Q4_1.gguf");
  EXPECT_TRUE(lm.is_ok()) << lm.status().to_string();
  if (!lm.is_ok()) return nullptr;
  (*lm)->set_kv_dtype(cpu::KvDtype::kF16);
  return std::move(*lm);
}

// Last-position logits of one prompt (one prefill) with the model's current KV dtype.
std::vector<float> last_logits(CausalLm& lm, const std::vector<int32_t>& ids) {
  cpu::KvCache cache(lm.kv_shape((static_cast<int64_t>(ids.size()) + 15) / 16, 16));
  std::vector<int32_t> table(cache.shape().num_blocks);
  std::iota(table.begin(), table.end(), 0);
  ForwardSeq seq{ids, 0, table, false};
  Result<std::span<const float>> got = lm.forward(std::span(&seq, 1), cache);
  EXPECT_TRUE(got.is_ok());
  return got.is_ok() ? std::vector<float>(got->begin(), got->end()) : std::vector<float>{};
}

TEST(KvF16Test, BlocksHoldHalfTheBytes) {
  std::unique_ptr<CausalLm> lm = load_default_f16_kv();
  ASSERT_TRUE(lm);
  const int64_t f16_bytes = lm->kv_shape(1, 16).block_bytes();
  lm->set_kv_dtype(cpu::KvDtype::kF32);
  EXPECT_EQ(2 * f16_bytes, lm->kv_shape(1, 16).block_bytes());
}

// The bounds of DefaultModelTest.LastTokenLogitsMatchTransformersWithinActivationQuantization
// (f32 cache): rounding K/V to f16 (11-bit mantissa) adds little to the 8-bit activation rounding.
TEST(KvF16Test, DefaultModelMatchesTransformersWithinTheF32CacheBounds) {
  const std::string dir = kRoot + "/tests/fixtures/logits/";
  std::ifstream in(dir + "smollm2-q4_1.json");
  ASSERT_TRUE(in.good());
  const nlohmann::json fixture = nlohmann::json::parse(in);
  std::unique_ptr<CausalLm> lm = load_default_f16_kv();
  ASSERT_TRUE(lm);
  for (const auto& c : fixture["cases"]) {
    const std::vector<int32_t> ids = c["prompt_ids"];
    const std::vector<float> expected = read_f32(dir + c["last_logits_file"].get<std::string>());
    lm->set_kv_dtype(cpu::KvDtype::kF32);
    const std::vector<float> f32_kv = last_logits(*lm, ids);
    lm->set_kv_dtype(cpu::KvDtype::kF16);
    const std::vector<float> got = last_logits(*lm, ids);
    ASSERT_EQ(got.size(), expected.size());
    double max_err = 0, sum_sq = 0, err_sq = 0, mean = 0, max_vs_f32 = 0;
    for (float e : expected) mean += e / expected.size();
    for (size_t i = 0; i < expected.size(); ++i) {
      const double err = got[i] - expected[i];
      max_err = std::max(max_err, std::abs(err));
      max_vs_f32 = std::max<double>(max_vs_f32, std::abs(got[i] - f32_kv[i]));
      err_sq += err * err;
      sum_sq += (expected[i] - mean) * (expected[i] - mean);
    }
    const double stddev = std::sqrt(sum_sq / expected.size());
    const double rms_err = std::sqrt(err_sq / expected.size());
    EXPECT_EQ(argmax(got), argmax(expected)) << c["text"];
    EXPECT_LT(max_err, 0.4 * stddev) << c["text"];
    EXPECT_LT(rms_err, 0.15 * stddev) << c["text"];
    std::printf(
        "[ smollm2 f16 kv ] %-12.12s max |err| %.3f, rms err %.3f (stddev %.3f); max |f16 - f32 "
        "kv| %.3f\n",
        c["text"].get<std::string>().c_str(), max_err, rms_err, stddev, max_vs_f32);
  }
}

// As DefaultModelTest.QuantizedLogitsDoNotDependOnTheBatch, over an f16 cache: bit-identical
// alone or batched with a prefill (the attention chunking does not depend on the batch).
TEST(KvF16Test, LogitsDoNotDependOnTheBatch) {
  std::unique_ptr<CausalLm> lm = load_default_f16_kv();
  ASSERT_TRUE(lm);
  const std::vector<int32_t> short_seq = {504, 3575, 282, 4649, 314};
  std::vector<int32_t> long_seq(90);
  for (size_t i = 0; i < long_seq.size(); ++i)
    long_seq[i] = static_cast<int32_t>(100 + 37 * i % 9000);
  cpu::KvCache cache(lm->kv_shape(16, 16));
  ASSERT_EQ(cache.shape().dtype, cpu::KvDtype::kF16);
  const std::vector<int32_t> t1 = {3}, t2 = {9, 4, 12, 7, 1, 0, 15, 14};
  ForwardSeq alone{short_seq, 0, t1, false};
  Result<std::span<const float>> a = lm->forward(std::span(&alone, 1), cache);
  ASSERT_TRUE(a.is_ok());
  const std::vector<float> alone_logits(a->begin(), a->end());
  std::vector<ForwardSeq> batch = {{long_seq, 0, t2, false}, {short_seq, 0, t1, false}};
  Result<std::span<const float>> b = lm->forward(batch, cache);
  ASSERT_TRUE(b.is_ok());
  const int64_t vocab = lm->config().vocab_size;
  for (int64_t v = 0; v < vocab; ++v) ASSERT_EQ((*b)[vocab + v], alone_logits[v]) << v;
}

}  // namespace
}  // namespace fs
