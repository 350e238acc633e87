#include "backend/cpu/attention.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "backend/cpu/attention_kernels.h"
#include "backend/cpu/matmul_kernels.h"
#include "backend/cpu/ops.h"
#include "core/dtype.h"

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
                             int64_t block_size = 4, KvDtype dtype = KvDtype::kF32) {
  KvCacheShape shape{.num_layers = 2,
                     .num_kv_heads = 2,
                     .head_dim = head_dim,
                     .block_size = block_size,
                     .num_blocks = 128,
                     .dtype = dtype};
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
  for (const KvDtype dtype : {KvDtype::kF32, KvDtype::kF16})
    for (const int64_t hd : {64, 24}) {
      std::mt19937 rng(11);
      const std::vector<Case> cases = {{150, 1}, {0, 70}, {200, 1}, {129, 3}};
      std::vector<std::vector<float>> qs, ks, vs;
      for (const Case& c : cases) {
        qs.push_back(random_vector(c.num_new * 6 * hd, rng));
        ks.push_back(random_vector((c.num_past + c.num_new) * 2 * hd, rng));
        vs.push_back(random_vector((c.num_past + c.num_new) * 2 * hd, rng));
      }
      // The reference reads the same (for f16: rounded) K/V values.
      const std::vector<float> reference = run_batch(cases, qs, ks, vs, 2, 1, true, hd, 5, dtype);
      for (int threads : {1, 2, 3}) {
        const std::vector<float> batch =
            run_batch(cases, qs, ks, vs, 1, threads, false, hd, 5, dtype);
        ASSERT_EQ(batch.size(), reference.size());
        for (size_t i = 0; i < batch.size(); ++i) EXPECT_NEAR(batch[i], reference[i], 1e-5) << i;
        int64_t row = 0;
        for (size_t i = 0; i < cases.size(); ++i) {
          const std::vector<float> alone =
              run_batch({cases[i]}, {qs[i]}, {ks[i]}, {vs[i]}, 9 + i, threads, false, hd, 5, dtype);
          for (size_t j = 0; j < alone.size(); ++j) {
            ASSERT_EQ(alone[j], batch[row * 6 * hd + j])
                << "hd " << hd << " seq " << i << " elem " << j;
          }
          row += cases[i].num_new;
        }
      }
    }
}

// The SIMD run kernels (AVX2: one head per pass; AVX-512: up to 3 heads per pass over each K/V
// row) against the scalar reference, for group sizes that exercise the 3-head split and its
// remainders, runs with and without an 8-key tail, and head sizes with a 64-column tail.
TEST(AttentionTest, SimdRunKernelsMatchScalarReference) {
  struct Path {
    const char* name;
    bool available;
    AttnKernels (*get)(KvDtype);  // called only when available (its file is built for that ISA)
    int64_t hd_multiple;
  };
  const Path paths[] = {{"avx2", use_avx2_kernels(), attn_kernels_avx2, 8},
                        {"avx512", use_avx512_kernels(), attn_kernels_avx512, 16}};
  std::mt19937 rng(3);
  int checked = 0;
  for (const KvDtype dtype : {KvDtype::kF32, KvDtype::kF16})
    for (const Path& path : paths) {
      if (!path.available) continue;
      const AttnKernels fast = path.get(dtype);
      const AttnKernels ref = attn_kernels_scalar(dtype);
      for (const int64_t hd : {16, 24, 64, 80, 128}) {
        if (hd % path.hd_multiple != 0) continue;
        for (const int64_t group : {1, 2, 3, 4, 7}) {
          for (const int64_t n : {1, 7, 8, 13, 16}) {
            const int64_t stride = 3 * hd + 8, s_stride = 20, a_stride = hd + 2;
            const std::vector<float> q = random_vector(group * hd, rng);
            const std::vector<float> kv_f32 = random_vector(n * stride, rng);
            std::vector<uint16_t> kv_f16(kv_f32.size());
            f32_to_f16_row(kv_f32.data(), kv_f16.data(), static_cast<int64_t>(kv_f32.size()));
            const void* kv = dtype == KvDtype::kF32 ? static_cast<const void*>(kv_f32.data())
                                                    : static_cast<const void*>(kv_f16.data());
            const std::vector<float> w = random_vector(group * s_stride, rng);
            std::vector<float> s_fast(group * s_stride, 0.0f), s_ref(group * s_stride, 0.0f);
            fast.scores(q.data(), group, kv, stride, n, hd, 0.3f, s_fast.data(), s_stride);
            ref.scores(q.data(), group, kv, stride, n, hd, 0.3f, s_ref.data(), s_stride);
            std::vector<float> a_fast = random_vector(group * a_stride, rng), a_ref = a_fast;
            fast.accumulate(w.data(), s_stride, group, kv, stride, n, hd, a_fast.data(), a_stride);
            ref.accumulate(w.data(), s_stride, group, kv, stride, n, hd, a_ref.data(), a_stride);
            for (size_t i = 0; i < s_ref.size(); ++i) {
              ASSERT_NEAR(s_fast[i], s_ref[i], 1e-4 * (1.0f + std::fabs(s_ref[i])))
                  << path.name << " dtype " << static_cast<int>(dtype) << " scores hd " << hd
                  << " group " << group << " n " << n << " @" << i;
            }
            for (size_t i = 0; i < a_ref.size(); ++i) {
              ASSERT_NEAR(a_fast[i], a_ref[i], 1e-4 * (1.0f + std::fabs(a_ref[i])))
                  << path.name << " dtype " << static_cast<int>(dtype) << " accumulate hd " << hd
                  << " group " << group << " n " << n << " @" << i;
            }
            ++checked;
          }
        }
      }
    }
  if (checked == 0) GTEST_SKIP() << "no AVX2 (or FASTSERVE_CPU_KERNELS=scalar)";
}

// write_kv rounds rows for f16 pools as fp32_to_fp16 does (F16C or scalar), ties and subnormals
// included.
TEST(AttentionTest, F16RowConversionRoundsToNearestEven) {
  std::mt19937 rng(5);
  std::vector<float> x = random_vector(1000, rng);
  x[0] = 1.0f + 1.0f / 2048.0f;  // a tie: rounds to even (1.0)
  x[1] = 3e-6f;                  // subnormal half
  x[2] = -70000.0f;              // overflow -> -inf
  x[3] = 0.0f;
  for (size_t i = 4; i < 40; ++i) x[i] *= 1e-5f;
  std::vector<uint16_t> h(x.size());
  f32_to_f16_row(x.data(), h.data(), static_cast<int64_t>(x.size()));
  for (size_t i = 0; i < x.size(); ++i) ASSERT_EQ(h[i], fp32_to_fp16(x[i])) << i << " " << x[i];
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
