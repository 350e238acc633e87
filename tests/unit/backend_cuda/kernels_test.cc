// CUDA kernels against CPU references: norms, rope + KV store, paged attention (ragged batches,
// scattered multi-block tables, GQA, prefill tiles and split-K decode), argmax, the dummy-weight
// fill of a shard.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <numeric>
#include <random>
#include <utility>
#include <vector>

#include "backend/cpu/ops.h"
#include "backend/cuda/kernels.h"
#include "cuda_test_util.h"

namespace fs::cuda {
namespace {

using test::DeviceVec;
using test::from_bf16;
using test::to_bf16;

#define SKIP_WITHOUT_GPU() \
  if (!test::have_gpu()) GTEST_SKIP() << "no CUDA device"

std::vector<float> random_floats(size_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

void expect_near_all(const std::vector<float>& got, const std::vector<float>& want, double tol,
                     const char* what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  double max_err = 0;
  size_t worst = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double e = std::abs(static_cast<double>(got[i]) - want[i]);
    if (!(e <= max_err)) {  // also catches NaN
      max_err = std::isnan(e) ? INFINITY : e;
      worst = i;
    }
  }
  EXPECT_LE(max_err, tol) << what << ": worst at " << worst << " got " << got[worst] << " want "
                          << want[worst];
}

TEST(CudaNormTest, RmsNormWithPendingBiasMatchesCpu) {
  SKIP_WITHOUT_GPU();
  const int64_t rows = 5, hidden = 576;
  std::vector<float> x = random_floats(rows * hidden, 1, -3, 3);
  const std::vector<float> w = random_floats(hidden, 2, 0.5f, 1.5f);
  const std::vector<float> add = random_floats(hidden, 3);
  DeviceVec<float> dx(x), dw(w), dadd(add);
  DeviceVec<uint16_t> dy(rows * hidden);
  launch_norm(dx.data(), dadd.data(), nullptr, dw.data(), nullptr, NormType::kRms, 1e-5f, rows,
              hidden, dy.as<bf16>(), nullptr);
  for (int64_t t = 0; t < rows; ++t) {
    for (int64_t i = 0; i < hidden; ++i) x[t * hidden + i] += add[i];
  }
  std::vector<float> y(rows * hidden);
  cpu::rms_norm(x.data(), w.data(), rows, hidden, 1e-5f, y.data());
  expect_near_all(dx.get(), x, 1e-6, "residual after bias");
  expect_near_all(from_bf16(dy.get()), y, 2e-2, "rms_norm");
}

TEST(CudaNormTest, LayerNormOfGatheredRowsMatchesCpu) {
  SKIP_WITHOUT_GPU();
  const int64_t rows = 6, hidden = 320;
  std::vector<float> x = random_floats(rows * hidden, 4, 1, 5);  // large mean
  const std::vector<float> w = random_floats(hidden, 5);
  const std::vector<float> b = random_floats(hidden, 6);
  const std::vector<int32_t> index = {4, 1};
  DeviceVec<float> dx(x), dw(w), db(b);
  DeviceVec<int32_t> dindex(index);
  DeviceVec<uint16_t> dy(index.size() * hidden);
  launch_norm(dx.data(), nullptr, dindex.data(), dw.data(), db.data(), NormType::kLayerNorm, 1e-5f,
              static_cast<int64_t>(index.size()), hidden, dy.as<bf16>(), nullptr);
  std::vector<float> gathered, y(index.size() * hidden);
  for (int32_t r : index)
    gathered.insert(gathered.end(), x.begin() + r * hidden, x.begin() + (r + 1) * hidden);
  cpu::layer_norm(gathered.data(), w.data(), b.data(), static_cast<int64_t>(index.size()), hidden,
                  1e-5f, y.data());
  expect_near_all(from_bf16(dy.get()), y, 3e-2, "layer_norm");
}

// The decode GEMV (PDL prologue, double-buffered weight loads, tail) against a double-precision
// reference over the same bf16 inputs, f32 out accumulating into y (beta = 1): 1, 3 and 8 tokens,
// a row length with a tail (1000) and one that runs the pipelined loop (4096), and a row count that
// leaves idle warps in the last block (37).
TEST(CudaGemvTest, MatchesReference) {
  SKIP_WITHOUT_GPU();
  for (const int64_t cols : {int64_t{1000}, int64_t{4096}}) {
    for (const int64_t tokens : {int64_t{1}, int64_t{3}, int64_t{8}}) {
      SCOPED_TRACE(testing::Message() << "cols " << cols << " tokens " << tokens);
      const int64_t rows = 37;
      const std::vector<float> w = from_bf16(to_bf16(random_floats(rows * cols, 21, -0.1f, 0.1f)));
      const std::vector<float> x = from_bf16(to_bf16(random_floats(tokens * cols, 22)));
      const std::vector<float> y0 = random_floats(tokens * rows, 23);
      DeviceVec<uint16_t> dw(to_bf16(w)), dx(to_bf16(x));
      DeviceVec<float> dy(y0);
      ASSERT_TRUE(gemv_supported(tokens, cols));
      launch_gemv(dw.as<bf16>(), rows, cols, dx.as<bf16>(), tokens, dy.data(), true, 1.0f, nullptr);
      ASSERT_EQ(cudaGetLastError(), cudaSuccess);
      std::vector<float> want(y0);
      for (int64_t t = 0; t < tokens; ++t) {
        for (int64_t r = 0; r < rows; ++r) {
          double dot = 0;
          for (int64_t c = 0; c < cols; ++c) dot += double(w[r * cols + c]) * x[t * cols + c];
          want[t * rows + r] += static_cast<float>(dot);
        }
      }
      expect_near_all(dy.get(), want, 1e-4, "gemv");
    }
  }
}

// The fused decode GEMVs against the separate kernels they replace (launch_norm + launch_gemv,
// launch_silu_mul + launch_gemv, launch_norm + launch_gemv + launch_silu_mul) on the same inputs: 1, 2 and 4 tokens; a Llama-sized row (4096),
// a row with a tail (1000), and 20000 short rows (more than one wave of blocks: warps loop over
// rows); f32 out with beta = 1 and bf16 out with beta = 0. The input vector is built with the
// same arithmetic, so only a rare rounding of a sum in another order may differ.
TEST(CudaGemvTest, FusedNormAndActivationMatchTheSeparateKernels) {
  SKIP_WITHOUT_GPU();
  struct Shape {
    int64_t rows, cols;
  };
  for (const Shape sh : {Shape{37, 4096}, Shape{300, 1000}, Shape{20000, 64}}) {
    for (const int64_t tokens : {int64_t{1}, int64_t{2}, int64_t{4}}) {
      SCOPED_TRACE(testing::Message() << "rows " << sh.rows << " cols " << sh.cols << " tokens "
                                      << tokens);
      const int64_t rows = sh.rows, cols = sh.cols;
      ASSERT_TRUE(gemv_fused_supported(tokens, cols));
      DeviceVec<uint16_t> dw(to_bf16(random_floats(rows * cols, 31, -0.1f, 0.1f)));
      DeviceVec<float> dx(random_floats(tokens * cols, 32, -3, 3));
      DeviceVec<float> dnw(random_floats(cols, 33, 0.5f, 1.5f));
      DeviceVec<uint16_t> dgu(to_bf16(random_floats(tokens * 2 * cols, 34, -4, 4)));
      DeviceVec<uint16_t> dh(tokens * cols), dh_norm(tokens * cols);
      const std::vector<float> y0 = random_floats(tokens * rows, 35);
      // RMSNorm + GEMV, f32 out accumulating.
      DeviceVec<float> want_f32(y0), got_f32(y0);
      launch_norm(dx.data(), nullptr, nullptr, dnw.data(), nullptr, NormType::kRms, 1e-5f, tokens,
                  cols, dh.as<bf16>(), nullptr);
      launch_norm(dx.data(), nullptr, nullptr, dnw.data(), nullptr, NormType::kRms, 1e-5f, tokens,
                  cols, dh_norm.as<bf16>(), nullptr);
      launch_gemv(dw.as<bf16>(), rows, cols, dh.as<bf16>(), tokens, want_f32.data(), true, 1.0f,
                  nullptr);
      launch_gemv_rmsnorm(dw.as<bf16>(), rows, cols, dx.data(), dnw.data(), 1e-5f, tokens,
                          got_f32.data(), true, 1.0f, nullptr);
      ASSERT_EQ(cudaGetLastError(), cudaSuccess);
      expect_near_all(got_f32.get(), want_f32.get(), 2e-3, "rmsnorm + gemv, f32");
      // RMSNorm + GEMV, bf16 out.
      DeviceVec<uint16_t> want_bf(tokens * rows), got_bf(to_bf16(y0));
      launch_gemv(dw.as<bf16>(), rows, cols, dh.as<bf16>(), tokens, want_bf.data(), false, 0.0f,
                  nullptr);
      launch_gemv_rmsnorm(dw.as<bf16>(), rows, cols, dx.data(), dnw.data(), 1e-5f, tokens,
                          got_bf.data(), false, 0.0f, nullptr);
      ASSERT_EQ(cudaGetLastError(), cudaSuccess);
      expect_near_all(from_bf16(got_bf.get()), from_bf16(want_bf.get()), 3e-2,
                      "rmsnorm + gemv, bf16");
      // silu(gate) * up + GEMV, f32 out accumulating.
      DeviceVec<float> want_act(y0), got_act(y0);
      launch_silu_mul(dgu.as<bf16>(), tokens, cols, dh.as<bf16>(), nullptr);
      launch_gemv(dw.as<bf16>(), rows, cols, dh.as<bf16>(), tokens, want_act.data(), true, 1.0f,
                  nullptr);
      launch_gemv_silu_mul(dw.as<bf16>(), rows, cols, dgu.as<bf16>(), tokens, got_act.data(), true,
                           1.0f, nullptr);
      ASSERT_EQ(cudaGetLastError(), cudaSuccess);
      expect_near_all(got_act.get(), want_act.get(), 1e-2, "silu_mul + gemv");
      // RMSNorm + the gate/up GEMV with silu(gate) * up in the epilogue: rows gate/up pairs of a
      // [2 * ffn, cols] weight (here ffn = rows / 2 of the same weights).
      const int64_t ffn = rows / 2;
      DeviceVec<uint16_t> gate_up(tokens * 2 * ffn), want_silu(tokens * ffn);
      DeviceVec<uint16_t> got_silu(to_bf16(random_floats(tokens * ffn, 36)));
      launch_gemv(dw.as<bf16>(), 2 * ffn, cols, dh_norm.as<bf16>(), tokens, gate_up.data(), false,
                  0.0f, nullptr);
      launch_silu_mul(gate_up.as<bf16>(), tokens, ffn, want_silu.as<bf16>(), nullptr);
      launch_gemv_rmsnorm_silu(dw.as<bf16>(), ffn, cols, dx.data(), dnw.data(), 1e-5f, tokens,
                               got_silu.as<bf16>(), nullptr);
      ASSERT_EQ(cudaGetLastError(), cudaSuccess);
      // |silu(gate) * up| reaches ~15 here: one bf16 step there is 0.06.
      expect_near_all(from_bf16(got_silu.get()), from_bf16(want_silu.get()), 0.15,
                      "rmsnorm + gemv + silu_mul");
    }
  }
  EXPECT_FALSE(gemv_fused_supported(kMaxFusedGemvTokens + 1, 64));
  EXPECT_FALSE(gemv_fused_supported(1, kMaxFusedGemvSmemBytes));  // the input would not fit
}

// The TP all-reduce on peer memory (kernels.h P2pExchange), with 2 and 3 ranks on one GPU (each
// rank's kernels on a stream of its own; the all-reduce kernel on 4 blocks, so that every rank's
// are resident at once, as on separate GPUs): eight calls in a row through one set of exchange areas (the phases
// rotate; each call empties the area of the one before), in turn the all-reduce kernel alone and
// a GEMV that sends its outputs (launch_gemv's `send`, beta 1 as the residual owner runs it)
// followed by the all-reduce kernel given the exchange as `sent`; 1-4 tokens. Every rank's result
// equals the sum in rank order of every rank's own values (the GEMV's made by the same GEMV
// without sending), bit for bit.
TEST(CudaGemvTest, AllReduceOfValuesTheGemvSentEqualsTheSum) {
  SKIP_WITHOUT_GPU();
  const int64_t rows = 1024, in = 256, max_floats = 4 * rows;
  DeviceVec<uint16_t> dw(to_bf16(random_floats(rows * in, 41, -0.2f, 0.2f)));  // [rows, in]
  for (const int size : {2, 3}) {
    SCOPED_TRACE(testing::Message() << size << " ranks");
    std::vector<std::unique_ptr<DeviceVec<float>>> areas;
    std::vector<std::unique_ptr<DeviceVec<uint32_t>>> states;
    std::vector<cudaStream_t> streams(size);
    std::vector<P2pExchange> ex(size);
    for (int r = 0; r < size; ++r) {
      areas.push_back(std::make_unique<DeviceVec<float>>(3 * size * max_floats));
      launch_fill_f32(areas.back()->data(), 3 * size * max_floats, -0.0f, nullptr);
      states.push_back(std::make_unique<DeviceVec<uint32_t>>(4));
      ASSERT_EQ(cudaStreamCreateWithFlags(&streams[r], cudaStreamNonBlocking), cudaSuccess);
    }
    for (int r = 0; r < size; ++r) {
      for (int q = 0; q < size; ++q) ex[r].recv[q] = areas[q]->data();
      ex[r].rank = r;
      ex[r].size = size;
      ex[r].max_floats = max_floats;
      ex[r].state = states[r]->data();
    }
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    for (int call = 0; call < 8; ++call) {
      const int64_t tokens = 1 + call % 4, n = tokens * rows;
      const bool in_gemv = call % 2 == 1;
      SCOPED_TRACE(testing::Message() << "call " << call << (in_gemv ? ", GEMV" : ", kernel")
                                      << ", " << tokens << " tokens");
      std::vector<std::unique_ptr<DeviceVec<float>>> x;
      std::vector<std::unique_ptr<DeviceVec<uint16_t>>> a;
      std::vector<float> sum;
      for (int r = 0; r < size; ++r) {
        const std::vector<float> x0 = random_floats(n, 100 * call + r, -3, 3);
        x.push_back(std::make_unique<DeviceVec<float>>(x0));
        a.push_back(std::make_unique<DeviceVec<uint16_t>>(
            to_bf16(random_floats(tokens * in, 200 * call + r))));
        std::vector<float> part = x0;
        if (in_gemv) {  // this rank's own result: x0 + W a
          DeviceVec<float> own(x0);
          launch_gemv(dw.as<bf16>(), rows, in, a[r]->as<bf16>(), tokens, own.data(), true, 1.0f,
                      nullptr);
          part = own.get();
        }
        if (r == 0) {
          sum = part;
        } else {
          for (int64_t i = 0; i < n; ++i) sum[i] = sum[i] + part[i];
        }
      }
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      for (int r = 0; r < size; ++r) {
        P2pExchange e = ex[r];
        if (in_gemv) {
          launch_gemv(dw.as<bf16>(), rows, in, a[r]->as<bf16>(), tokens, x[r]->data(), true, 1.0f,
                      streams[r], e);
          e.sent = true;
        }
        launch_p2p_allreduce(x[r]->data(), n, e, 4, streams[r]);
        ASSERT_EQ(cudaGetLastError(), cudaSuccess);
      }
      // A rank whose peers never send would spin: fail instead of hanging the suite.
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
      for (int r = 0; r < size; ++r) {
        cudaError_t e;
        while ((e = cudaStreamQuery(streams[r])) == cudaErrorNotReady) {
          ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "rank " << r << " never finished";
        }
        ASSERT_EQ(e, cudaSuccess);
      }
      for (int r = 0; r < size; ++r) EXPECT_EQ(x[r]->get(), sum) << "rank " << r;
    }
    for (cudaStream_t s : streams) cudaStreamDestroy(s);
  }
}

// Hidden sizes of real models on each norm kernel: 4096 (4 float4 per thread), 5120 (8, with a
// tail of idle threads), 322 (not a multiple of 4: the loop kernel); RMS with the pending bias and
// LayerNorm with a large mean, against the CPU.
class CudaNormSizeTest : public ::testing::TestWithParam<std::pair<int64_t, NormType>> {};

TEST_P(CudaNormSizeTest, MatchesCpu) {
  SKIP_WITHOUT_GPU();
  const auto [hidden, type] = GetParam();
  const int64_t rows = 3;
  const bool rms = type == NormType::kRms;
  std::vector<float> x = random_floats(rows * hidden, 11, rms ? -3 : 1, rms ? 3 : 5);
  const std::vector<float> w = random_floats(hidden, 12, 0.5f, 1.5f);
  const std::vector<float> b = random_floats(hidden, 13);
  const std::vector<float> add = random_floats(hidden, 14);
  DeviceVec<float> dx(x), dw(w), db(b), dadd(add);
  DeviceVec<uint16_t> dy(rows * hidden);
  launch_norm(dx.data(), dadd.data(), nullptr, dw.data(), rms ? nullptr : db.data(), type, 1e-5f,
              rows, hidden, dy.as<bf16>(), nullptr);
  for (int64_t t = 0; t < rows; ++t) {
    for (int64_t i = 0; i < hidden; ++i) x[t * hidden + i] += add[i];
  }
  std::vector<float> y(rows * hidden);
  if (rms) {
    cpu::rms_norm(x.data(), w.data(), rows, hidden, 1e-5f, y.data());
  } else {
    cpu::layer_norm(x.data(), w.data(), b.data(), rows, hidden, 1e-5f, y.data());
  }
  expect_near_all(dx.get(), x, 1e-6, "residual after bias");
  expect_near_all(from_bf16(dy.get()), y, 3e-2, "norm");
}

INSTANTIATE_TEST_SUITE_P(Sizes, CudaNormSizeTest,
                         ::testing::Values(std::pair<int64_t, NormType>{4096, NormType::kRms},
                                           std::pair<int64_t, NormType>{5120, NormType::kLayerNorm},
                                           std::pair<int64_t, NormType>{322, NormType::kRms}));

class CudaRopeTest : public ::testing::TestWithParam<bool> {};  // neox?

TEST_P(CudaRopeTest, RotatesQAndKAndStoresKvInTheirSlots) {
  SKIP_WITHOUT_GPU();
  const bool neox = GetParam();
  // 640 rotated pairs per token: spread over 3 blocks of the token.
  const int32_t heads = 16, kvh = 4, hd = 64, T = 6;
  const KvLayout kv{.num_layers = 2, .block_size = 4, .num_kv_heads = kvh, .head_dim = hd};
  const int64_t num_blocks = 8, qd = heads * hd, kvd = kvh * hd, width = qd + 2 * kvd;
  const std::vector<float> qkv = random_floats(T * width, 7);
  const std::vector<float> bq = random_floats(qd, 8), bk = random_floats(kvd, 9),
                           bv = random_floats(kvd, 10);
  const std::vector<int32_t> positions = {0, 7, 100, 1000, 5, 3};
  const std::vector<int32_t> slots = {0, 5, 31, 12, 13, 22};
  cpu::RopeTable rope;
  rope.style = neox ? cpu::RopeStyle::kNeox : cpu::RopeStyle::kInterleaved;
  rope.head_dim = hd;
  for (int i = 0; i < hd / 2; ++i) rope.inv_freq.push_back(std::pow(10000.0f, -2.0f * i / hd));
  DeviceVec<float> dqkv(qkv), dbq(bq), dbk(bk), dbv(bv), dfreq(rope.inv_freq);
  DeviceVec<int32_t> dpos(positions), dslots(slots);
  DeviceVec<uint16_t> dq(T * qd), dcache(num_blocks * kv.block_elems());
  const int32_t layer = 1;
  launch_qkv_rope_store(dqkv.data(), dbq.data(), dbk.data(), dbv.data(), dpos.data(), dslots.data(),
                        dfreq.data(), neox, T, heads, kv, layer, dq.as<bf16>(), dcache.as<bf16>(),
                        nullptr);
  // CPU: bias, rope on q and k.
  std::vector<float> q(T * qd), k(T * kvd), v(T * kvd);
  for (int t = 0; t < T; ++t) {
    for (int i = 0; i < qd; ++i) q[t * qd + i] = qkv[t * width + i] + bq[i];
    for (int i = 0; i < kvd; ++i) k[t * kvd + i] = qkv[t * width + qd + i] + bk[i];
    for (int i = 0; i < kvd; ++i) v[t * kvd + i] = qkv[t * width + qd + kvd + i] + bv[i];
  }
  cpu::apply_rope(rope, q.data(), positions.data(), T, heads);
  cpu::apply_rope(rope, k.data(), positions.data(), T, kvh);
  expect_near_all(from_bf16(dq.get()), q, 2e-2, "q");
  const std::vector<float> cache = from_bf16(dcache.get());
  std::vector<float> want_cache(cache.size(), 0.0f);
  for (int t = 0; t < T; ++t) {
    const int64_t b = slots[t] / kv.block_size, s = slots[t] % kv.block_size;
    for (int kvi = 0; kvi < 2; ++kvi) {
      const int64_t base = ((b * kv.num_layers + layer) * 2 + kvi) * kv.block_size * kvd + s * kvd;
      for (int i = 0; i < kvd; ++i) want_cache[base + i] = (kvi == 0 ? k : v)[t * kvd + i];
    }
  }
  expect_near_all(cache, want_cache, 2e-2, "cache");
}

INSTANTIATE_TEST_SUITE_P(Styles, CudaRopeTest, ::testing::Values(true, false));

// ---- attention ----

struct AttnCase {
  int32_t head_dim, num_heads, num_kv_heads;
  bool use_prefill;  // route long sequences through the prefill tiles
  int32_t split_len;
  bool reference_decode = false;  // the generic decode kernel even where a faster one applies
};

class CudaAttentionTest : public ::testing::TestWithParam<AttnCase> {};

// A ragged batch against a naive double-precision reference over the same bf16 K/V/Q: a 70-token
// prefill (2 tiles), a 67-token chunk after 50 cached, a 3-token chunk, a decode at position 999
// (many splits) and a short decode; every table is a random scatter of blocks.
TEST_P(CudaAttentionTest, RaggedBatchMatchesNaiveReference) {
  SKIP_WITHOUT_GPU();
  const AttnCase c = GetParam();
  const int32_t hd = c.head_dim, heads = c.num_heads, kvh = c.num_kv_heads, group = heads / kvh;
  const KvLayout kv{.num_layers = 2, .block_size = 16, .num_kv_heads = kvh, .head_dim = hd};
  const int32_t layer = 1, num_blocks = 160;
  struct Seq {
    int32_t num_past, num_new;
  };
  const std::vector<Seq> seqs = {{0, 70}, {50, 67}, {10, 3}, {999, 1}, {5, 1}};
  std::vector<int32_t> perm(num_blocks);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), std::mt19937(11));
  std::vector<int32_t> tables, descs, tiles, decode;
  std::vector<std::vector<int32_t>> seq_tables;
  int32_t next_block = 0, t = 0, max_ctx = 0;
  for (size_t i = 0; i < seqs.size(); ++i) {
    const Seq& s = seqs[i];
    const int32_t nb = (s.num_past + s.num_new + kv.block_size - 1) / kv.block_size;
    const int32_t offset = static_cast<int32_t>(tables.size());
    seq_tables.emplace_back(perm.begin() + next_block, perm.begin() + next_block + nb);
    tables.insert(tables.end(), perm.begin() + next_block, perm.begin() + next_block + nb);
    next_block += nb;
    descs.insert(descs.end(), {t, s.num_new, s.num_past, offset});
    if (c.use_prefill && s.num_new > 4) {
      for (int32_t q0 = 0; q0 < s.num_new; q0 += kPrefillTileRows) {
        tiles.insert(tiles.end(), {static_cast<int32_t>(i), q0});
      }
    } else {
      for (int32_t j = 0; j < s.num_new; ++j) {
        const int32_t pos = s.num_past + j;
        decode.insert(decode.end(), {t + j, pos, offset, (pos + c.split_len) / c.split_len});
        max_ctx = std::max(max_ctx, pos + 1);
      }
    }
    t += s.num_new;
  }
  ASSERT_LE(next_block, num_blocks);
  const int32_t T = t, qd = heads * hd;
  const int32_t max_splits = std::max(1, (max_ctx + c.split_len - 1) / c.split_len);
  const std::vector<uint16_t> cache = to_bf16(random_floats(num_blocks * kv.block_elems(), 12));
  const std::vector<uint16_t> q = to_bf16(random_floats(static_cast<size_t>(T) * qd, 13));
  DeviceVec<uint16_t> dcache(cache), dq(q), dout(static_cast<size_t>(T) * qd);
  DeviceVec<int32_t> dtables(tables), ddescs(descs), dtiles(tiles), ddecode(decode);
  const int32_t num_decode = static_cast<int32_t>(decode.size() / 4);
  DeviceVec<float> partials(static_cast<size_t>(std::max(1, num_decode)) * heads * max_splits *
                            (hd + 2));
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  launch_attention_prefill(dq.as<bf16>(), dcache.as<bf16>(), kv, layer, ddescs.as<AttnSeqDesc>(),
                           dtables.data(), dtiles.as<PrefillTile>(),
                           static_cast<int32_t>(tiles.size() / 2), heads, scale, dout.as<bf16>(),
                           nullptr);
  force_decode_reference(c.reference_decode);
  launch_attention_decode(dq.as<bf16>(), dcache.as<bf16>(), kv, layer, ddecode.as<DecodeDesc>(),
                          dtables.data(), num_decode, max_splits, c.split_len, heads, scale,
                          partials.data(), dout.as<bf16>(), nullptr);
  force_decode_reference(false);
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  const std::vector<float> got = from_bf16(dout.get());

  // Naive reference.
  auto kv_at = [&](const std::vector<int32_t>& table, int32_t pos, int kvi, int32_t g, int32_t d) {
    const int64_t b = table[pos / kv.block_size], s = pos % kv.block_size;
    return bf16_to_fp32(cache[((b * kv.num_layers + layer) * 2 + kvi) * kv.block_size * kvh * hd +
                              (s * kvh + g) * hd + d]);
  };
  std::vector<float> want(static_cast<size_t>(T) * qd);
  t = 0;
  for (size_t i = 0; i < seqs.size(); ++i) {
    for (int32_t j = 0; j < seqs[i].num_new; ++j, ++t) {
      const int32_t pos = seqs[i].num_past + j;
      for (int32_t h = 0; h < heads; ++h) {
        const int32_t g = h / group;
        std::vector<double> sc(pos + 1);
        double mx = -1e300;
        for (int32_t p = 0; p <= pos; ++p) {
          double dot = 0;
          for (int32_t d = 0; d < hd; ++d) {
            dot += bf16_to_fp32(q[(static_cast<size_t>(t) * heads + h) * hd + d]) *
                   kv_at(seq_tables[i], p, 0, g, d);
          }
          sc[p] = dot * scale;
          mx = std::max(mx, sc[p]);
        }
        double sum = 0;
        for (double& s : sc) sum += (s = std::exp(s - mx));
        for (int32_t d = 0; d < hd; ++d) {
          double o = 0;
          for (int32_t p = 0; p <= pos; ++p) o += sc[p] * kv_at(seq_tables[i], p, 1, g, d);
          want[(static_cast<size_t>(t) * heads + h) * hd + d] = static_cast<float>(o / sum);
        }
      }
    }
  }
  expect_near_all(got, want, 2e-2, "attention");
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, CudaAttentionTest,
    ::testing::Values(AttnCase{128, 8, 2, true, 128},         // Llama-3-8B-like GQA group 4
                      AttnCase{64, 9, 3, true, 128},          // SmolLM2: group 3
                      AttnCase{128, 4, 4, true, 256},         // OPT: no GQA
                      AttnCase{16, 4, 2, true, 128},          // tiny fixtures
                      AttnCase{64, 8, 2, false, 128},         // every token through split-K
                      AttnCase{128, 8, 2, false, 128, true},  // the generic decode kernel
                      AttnCase{64, 16, 1, false, 128},        // group 16: tensor-core decode kernel
                      AttnCase{8, 4, 2, false, 160}));        // head_dim without a prefill kernel

TEST(CudaArgmaxTest, PicksTheLowestIndexOfTheMaximum) {
  SKIP_WITHOUT_GPU();
  const int64_t rows = 3, vocab = 50000;
  std::vector<float> logits = random_floats(rows * vocab, 14);
  logits[0 * vocab + 777] = 5.0f;
  logits[1 * vocab + 49999] = 7.0f;
  logits[1 * vocab + 1234] = 7.0f;
  logits[2 * vocab + 0] = 3.0f;
  DeviceVec<float> dl(logits);
  DeviceVec<int32_t> out(rows);
  launch_argmax(dl.data(), rows, vocab, out.data(), nullptr);
  EXPECT_EQ(out.get(), (std::vector<int32_t>{777, 1234, 0}));
}

// The vocab-parallel head's picks: 3 "ranks" of one GPU each pick their columns, the parts are
// summed (as the all-reduce does) and combined; the result equals the greedy pick of whole rows,
// ties across ranks going to the lowest id, NaN rows to -1. The scattered columns sum to the rows.
TEST(CudaVocabParallelTest, CombinedPartsEqualTheWholeRowsPick) {
  SKIP_WITHOUT_GPU();
  const int64_t rows = 4, vocab = 1000, tp = 3, chunk = (vocab + tp - 1) / tp;
  std::vector<float> logits = random_floats(rows * vocab, 21, -4.0f, 4.0f);
  logits[0 * vocab + 900] = 9.0f;                                  // in the last rank's columns
  logits[1 * vocab + 10] = logits[1 * vocab + 700] = 8.0f;         // a tie across ranks
  logits[2 * vocab + 500] = std::numeric_limits<float>::quiet_NaN();  // a bad row
  DeviceVec<float> whole(logits);
  DeviceVec<int32_t> want(2 * rows);
  launch_greedy_pick(whole.data(), rows, vocab, want.data(), nullptr);
  std::vector<float> parts(rows * tp * 3, 0.0f), gathered(rows * vocab, 0.0f);
  for (int r = 0; r < tp; ++r) {
    const int64_t begin = r * chunk, cols = std::min(chunk, vocab - begin);
    std::vector<float> local;
    for (int64_t i = 0; i < rows; ++i) {
      local.insert(local.end(), logits.begin() + i * vocab + begin,
                   logits.begin() + i * vocab + begin + cols);
    }
    DeviceVec<float> dl(local), dp(rows * tp * 3), full(rows * vocab);
    launch_greedy_pick_part(dl.data(), rows, cols, begin, tp, r, dp.data(), nullptr);
    launch_scatter_logits(dl.data(), rows, cols, begin, vocab, full.data(), nullptr);
    const std::vector<float> p = dp.get(), f = full.get();
    for (size_t i = 0; i < p.size(); ++i) parts[i] += p[i];
    for (size_t i = 0; i < f.size(); ++i) gathered[i] += f[i];
  }
  for (size_t i = 0; i < gathered.size(); ++i) {
    if (!std::isnan(logits[i])) {
      ASSERT_EQ(gathered[i], logits[i]) << i;
    }
  }
  DeviceVec<float> dparts(parts);
  DeviceVec<int32_t> picks(2 * rows), tokens(rows);
  launch_combine_picks(dparts.data(), rows, tp, picks.data(), tokens.data(), nullptr);
  const std::vector<int32_t> got = picks.get(), w = want.get(), t = tokens.get();
  for (int64_t i = 0; i < rows; ++i) {
    EXPECT_EQ(got[2 * i], w[2 * i]) << "row " << i;
    float lg, lw;
    std::memcpy(&lg, &got[2 * i + 1], 4);
    std::memcpy(&lw, &w[2 * i + 1], 4);
    EXPECT_NEAR(lg, lw, 1e-5) << "row " << i;
    EXPECT_EQ(t[i], std::max(w[2 * i], 0)) << "row " << i;
  }
  EXPECT_EQ(got[0], 900);
  EXPECT_EQ(got[2], 10);
  EXPECT_EQ(got[4], -1);
}

TEST(CudaFillTest, APartHoldsTheWholeTensorsValuesAtItsPlace) {
  SKIP_WITHOUT_GPU();
  // A [6, 10] tensor; the part is rows 2..4, columns 3..8 (a TP shard's slice of it).
  const int64_t rows = 6, cols = 10, r0 = 2, c0 = 3, pr = 3, pc = 5;
  DeviceVec<uint16_t> whole(rows * cols), part(pr * pc);
  launch_fill_uniform(whole.as<bf16>(), rows * cols, 42, 0.5f, nullptr);
  launch_fill_uniform_part(part.as<bf16>(), pr, pc, 42, 0.5f, r0, c0, cols, nullptr);
  const std::vector<float> w = from_bf16(whole.get()), got = from_bf16(part.get());
  std::vector<float> want;
  for (int64_t r = 0; r < pr; ++r) {
    for (int64_t c = 0; c < pc; ++c) want.push_back(w[(r0 + r) * cols + c0 + c]);
  }
  EXPECT_EQ(got, want);
  const auto [lo, hi] = std::minmax_element(w.begin(), w.end());
  EXPECT_GE(*lo, -0.5f);
  EXPECT_LE(*hi, 0.5f);
  EXPECT_LT(*lo, *hi);  // not a constant
}

}  // namespace
}  // namespace fs::cuda
