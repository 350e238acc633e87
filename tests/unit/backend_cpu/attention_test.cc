#include "backend/cpu/attention.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "backend/cpu/ops.h"

namespace fs::cpu {
namespace {

std::vector<float> random_vector(int64_t n, std::mt19937& rng) {
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

struct Case {
  int64_t num_past, num_new;
};

// Runs one layer of attention for `cases` packed into one batch, with block tables drawn from a
// shuffled pool so each sequence's blocks are scattered. Returns out [num_tokens, heads * hd].
std::vector<float> run_batch(const std::vector<Case>& cases,
                             const std::vector<std::vector<float>>& qs,
                             const std::vector<std::vector<float>>& ks,
                             const std::vector<std::vector<float>>& vs, uint32_t shuffle_seed,
                             int threads, bool reference, int64_t head_dim = 8,
                             int64_t block_size = 4) {
  KvCacheShape shape{.num_layers = 2,
                     .num_kv_heads = 2,
                     .head_dim = head_dim,
                     .block_size = block_size,
                     .num_blocks = 128};
  const int64_t heads = 6, hd = shape.head_dim, kvh = shape.num_kv_heads;
  KvCache cache(shape);
  std::vector<int32_t> free_blocks(shape.num_blocks);
  std::iota(free_blocks.begin(), free_blocks.end(), 0);
  std::shuffle(free_blocks.begin(), free_blocks.end(), std::mt19937(shuffle_seed));
  std::vector<std::vector<int32_t>> tables;
  size_t next = 0;
  for (const Case& c : cases) {
    const int64_t n = (c.num_past + c.num_new + shape.block_size - 1) / shape.block_size;
    tables.emplace_back(free_blocks.begin() + next, free_blocks.begin() + next + n);
    next += n;
  }
  // Past tokens: write their K/V (all positions of the sequence; the past part first).
  std::vector<AttentionSeq> past, now;
  int64_t row = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    past.push_back({0, cases[i].num_past, 0, tables[i]});
    write_kv(cache, 1, std::span(&past.back(), 1), ks[i].data(), vs[i].data());
    now.push_back({row, cases[i].num_new, cases[i].num_past, tables[i]});
    row += cases[i].num_new;
  }
  std::vector<float> q, k, v;
  for (size_t i = 0; i < cases.size(); ++i) {
    const int64_t p = cases[i].num_past;
    q.insert(q.end(), qs[i].begin(), qs[i].end());
    k.insert(k.end(), ks[i].begin() + p * kvh * hd, ks[i].end());
    v.insert(v.end(), vs[i].begin() + p * kvh * hd, vs[i].end());
  }
  write_kv(cache, 1, now, k.data(), v.data());
  std::vector<float> out(row * heads * hd);
  if (reference) {
    paged_attention_reference(cache, 1, now, q.data(), heads, 0.35f, out.data());
  } else {
    ThreadPool pool(threads);
    paged_attention(cache, 1, now, q.data(), heads, 0.35f, out.data(), pool);
  }
  return out;
}

TEST(AttentionTest, SequenceGivesSameOutputAloneOrInRaggedBatchWithScatteredBlocks) {
  std::mt19937 rng(7);
  const std::vector<Case> cases = {{0, 9}, {5, 1}, {13, 1}, {3, 6}, {0, 1}};
  std::vector<std::vector<float>> qs, ks, vs;
  for (const Case& c : cases) {
    qs.push_back(random_vector(c.num_new * 6 * 8, rng));
    ks.push_back(random_vector((c.num_past + c.num_new) * 2 * 8, rng));
    vs.push_back(random_vector((c.num_past + c.num_new) * 2 * 8, rng));
  }
  const std::vector<float> batch = run_batch(cases, qs, ks, vs, 1, 3, false);
  const std::vector<float> reference = run_batch(cases, qs, ks, vs, 2, 1, true);
  ASSERT_EQ(batch.size(), reference.size());
  for (size_t i = 0; i < batch.size(); ++i) EXPECT_NEAR(batch[i], reference[i], 1e-5) << i;
  int64_t row = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    const std::vector<float> alone =
        run_batch({cases[i]}, {qs[i]}, {ks[i]}, {vs[i]}, 9 + i, 2, false);
    for (size_t j = 0; j < alone.size(); ++j) {
      EXPECT_NEAR(alone[j], batch[row * 48 + j], 1e-6) << "seq " << i << " elem " << j;
    }
    row += cases[i].num_new;
  }
}

// Contexts longer than one 64-position chunk (merged partials), few units (every chunk its own
// task) and many units (one task per unit), a block size that does not divide the chunk, and a head
// size with an AVX2 tail: bit-identical alone and batched, at any thread count.
TEST(AttentionTest, LongContextsSplitIntoChunksAreExactAndBatchInvariant) {
  for (const int64_t hd : {64, 24}) {
    std::mt19937 rng(11);
    const std::vector<Case> cases = {{150, 1}, {0, 70}, {200, 1}, {129, 3}};
    std::vector<std::vector<float>> qs, ks, vs;
    for (const Case& c : cases) {
      qs.push_back(random_vector(c.num_new * 6 * hd, rng));
      ks.push_back(random_vector((c.num_past + c.num_new) * 2 * hd, rng));
      vs.push_back(random_vector((c.num_past + c.num_new) * 2 * hd, rng));
    }
    const std::vector<float> reference = run_batch(cases, qs, ks, vs, 2, 1, true, hd, 5);
    for (int threads : {1, 2, 3}) {
      const std::vector<float> batch = run_batch(cases, qs, ks, vs, 1, threads, false, hd, 5);
      ASSERT_EQ(batch.size(), reference.size());
      for (size_t i = 0; i < batch.size(); ++i) EXPECT_NEAR(batch[i], reference[i], 1e-5) << i;
      int64_t row = 0;
      for (size_t i = 0; i < cases.size(); ++i) {
        const std::vector<float> alone =
            run_batch({cases[i]}, {qs[i]}, {ks[i]}, {vs[i]}, 9 + i, threads, false, hd, 5);
        for (size_t j = 0; j < alone.size(); ++j) {
          ASSERT_EQ(alone[j], batch[row * 6 * hd + j])
              << "hd " << hd << " seq " << i << " elem " << j;
        }
        row += cases[i].num_new;
      }
    }
  }
}

TEST(OpsTest, LogSumExpAndSiluMatchDoubleFormulas) {
  std::mt19937 rng(3);
  for (int64_t n : {1, 7, 16, 49152 + 3}) {
    std::vector<float> x = random_vector(n, rng);
    for (float& v : x) v *= 8.0f;
    double m = -INFINITY, sum = 0;
    for (float v : x) m = std::max<double>(m, v);
    for (float v : x) sum += std::exp(v - m);
    EXPECT_NEAR(log_sum_exp(x.data(), n), m + std::log(sum), 1e-5 * (1 + std::abs(m))) << n;
    std::vector<float> gate = x, up = random_vector(n, rng);
    silu_mul(gate.data(), up.data(), n);
    for (int64_t i = 0; i < n; ++i) {
      const double want = x[i] / (1.0 + std::exp(-static_cast<double>(x[i]))) * up[i];
      ASSERT_NEAR(gate[i], want, 1e-6 * (1 + std::abs(want))) << i;
    }
  }
}

TEST(OpsTest, RopeStylesAreRelatedByPermutation) {
  // Interleaved rope on a head permuted as convert_hf_to_gguf permutes Q/K equals NEOX rope on the
  // unpermuted head, permuted the same way afterwards.
  const int64_t hd = 8;
  RopeTable neox{RopeStyle::kNeox, hd, {}}, inter{RopeStyle::kInterleaved, hd, {}};
  for (int64_t i = 0; i < hd / 2; ++i) {
    neox.inv_freq.push_back(std::pow(10000.0f, -2.0f * i / hd));
  }
  inter.inv_freq = neox.inv_freq;
  std::vector<float> x = {0.1f, -0.2f, 0.3f, 0.4f, -0.5f, 0.6f, 0.7f, -0.8f};
  // GGUF permutation: row (2i) <- i, row (2i+1) <- i + hd/2.
  auto permute = [&](const std::vector<float>& h) {
    std::vector<float> p(hd);
    for (int64_t i = 0; i < hd / 2; ++i) {
      p[2 * i] = h[i];
      p[2 * i + 1] = h[i + hd / 2];
    }
    return p;
  };
  std::vector<float> a = x, b = permute(x);
  const int32_t pos = 37;
  apply_rope(neox, a.data(), &pos, 1, 1);
  apply_rope(inter, b.data(), &pos, 1, 1);
  const std::vector<float> a_perm = permute(a);
  for (int64_t i = 0; i < hd; ++i) EXPECT_NEAR(a_perm[i], b[i], 1e-6);
}

TEST(OpsTest, RmsNormMatchesFormula) {
  std::vector<float> x = {1, 2, 3, 4}, w = {1, 0.5f, 2, 1}, y(4);
  rms_norm(x.data(), w.data(), 1, 4, 1e-5f, y.data());
  const float rms = std::sqrt((1 + 4 + 9 + 16) / 4.0f + 1e-5f);
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(y[i], x[i] / rms * w[i], 1e-6);
}

TEST(OpsTest, LayerNormMatchesFormula) {
  std::vector<float> x = {1, 2, 3, 6}, w = {1, 1, 2, 1}, b = {0, 1, 0, 0}, y(4);
  layer_norm(x.data(), w.data(), b.data(), 1, 4, 1e-5f, y.data());
  const float mean = 3, var = (4 + 1 + 0 + 9) / 4.0f, inv = 1 / std::sqrt(var + 1e-5f);
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(y[i], (x[i] - mean) * inv * w[i] + b[i], 1e-6);
}

}  // namespace
}  // namespace fs::cpu
