// The split-K decode attention kernels (tensor-core with 4 and 3 warps, register, generic;
// kernels.h DecodeKernel) against a double-precision reference over the same bf16 Q/K/V: context
// lengths around and off the block and tile sizes, GQA groups 1/4/8/16, several batch sizes and
// split lengths, scattered block tables. The output is poisoned (NaN) before every launch, so an
// unwritten element fails.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "backend/cuda/attention_decode_mma.h"
#include "backend/cuda/kernels.h"
#include "cuda_test_util.h"

namespace fs::cuda {
namespace {

using test::DeviceVec;
using test::from_bf16;
using test::to_bf16;

struct DecodeCase {
  int32_t head_dim, num_kv_heads, group, block_size, split_len;
  std::vector<int32_t> contexts;  // one query token per context (its position = context - 1)
};

std::string case_name(const ::testing::TestParamInfo<DecodeCase>& info) {
  const DecodeCase& c = info.param;
  return "hd" + std::to_string(c.head_dim) + "_kv" + std::to_string(c.num_kv_heads) + "_g" +
         std::to_string(c.group) + "_bs" + std::to_string(c.block_size) + "_split" +
         std::to_string(c.split_len) + "_b" + std::to_string(c.contexts.size());
}

class CudaDecodeAttentionTest : public ::testing::TestWithParam<DecodeCase> {};

TEST_P(CudaDecodeAttentionTest, EveryKernelMatchesDoubleReference) {
  if (!test::have_gpu()) GTEST_SKIP() << "no CUDA device";
  const DecodeCase c = GetParam();
  const int32_t hd = c.head_dim, kvh = c.num_kv_heads, heads = kvh * c.group;
  const KvLayout kv{
      .num_layers = 3, .block_size = c.block_size, .num_kv_heads = kvh, .head_dim = hd};
  const int32_t layer = 2, batch = static_cast<int32_t>(c.contexts.size());
  std::mt19937 rng(static_cast<uint32_t>(hd * 1000 + c.group * 100 + batch));

  // Scattered tables: every sequence's blocks are a random subset of the pool.
  std::vector<int32_t> nblocks(batch);
  int32_t total_blocks = 0;
  for (int32_t i = 0; i < batch; ++i) {
    nblocks[i] = (c.contexts[i] + c.block_size - 1) / c.block_size;
    total_blocks += nblocks[i];
  }
  const int32_t pool_blocks = total_blocks + 7;
  std::vector<int32_t> perm(pool_blocks);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng);
  std::vector<int32_t> tables, descs, offsets(batch);
  int32_t max_splits = 1;
  for (int32_t i = 0, next = 0; i < batch; ++i) {
    offsets[i] = static_cast<int32_t>(tables.size());
    tables.insert(tables.end(), perm.begin() + next, perm.begin() + next + nblocks[i]);
    next += nblocks[i];
    const int32_t pos = c.contexts[i] - 1;
    const int32_t splits = (pos + c.split_len) / c.split_len;
    max_splits = std::max(max_splits, splits);
    descs.insert(descs.end(), {i, pos, offsets[i], splits});
  }
  std::uniform_real_distribution<float> unit(-1.0f, 1.0f), wide(-3.0f, 3.0f);
  std::vector<float> cache_f(static_cast<size_t>(pool_blocks) * kv.block_elems());
  for (float& x : cache_f) x = unit(rng);
  std::vector<float> q_f(static_cast<size_t>(batch) * heads * hd);
  for (float& x : q_f) x = wide(rng);  // peaked softmax: errors in P show
  const std::vector<uint16_t> cache = to_bf16(cache_f), q = to_bf16(q_f);

  // Reference in double over the bf16 values.
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  auto kv_at = [&](int32_t i, int32_t pos, int kvi, int32_t g, int32_t d) {
    const int64_t b = tables[offsets[i] + pos / c.block_size], s = pos % c.block_size;
    return static_cast<double>(
        bf16_to_fp32(cache[((b * kv.num_layers + layer) * 2 + kvi) * kv.block_size * kvh * hd +
                           (s * kvh + g) * hd + d]));
  };
  std::vector<double> want(q.size());
  for (int32_t i = 0; i < batch; ++i) {
    const int32_t ctx = c.contexts[i];
    for (int32_t h = 0; h < heads; ++h) {
      const int32_t g = h / c.group;
      const uint16_t* qh = q.data() + (static_cast<size_t>(i) * heads + h) * hd;
      std::vector<double> p(ctx);
      double mx = -1e300;
      for (int32_t pos = 0; pos < ctx; ++pos) {
        double dot = 0;
        for (int32_t d = 0; d < hd; ++d) dot += bf16_to_fp32(qh[d]) * kv_at(i, pos, 0, g, d);
        p[pos] = dot * scale;
        mx = std::max(mx, p[pos]);
      }
      double sum = 0;
      for (double& x : p) sum += (x = std::exp(x - mx));
      for (int32_t d = 0; d < hd; ++d) {
        double o = 0;
        for (int32_t pos = 0; pos < ctx; ++pos) o += p[pos] * kv_at(i, pos, 1, g, d);
        want[(static_cast<size_t>(i) * heads + h) * hd + d] = o / sum;
      }
    }
  }

  DeviceVec<uint16_t> dcache(cache), dq(q), dout(q.size());
  DeviceVec<int32_t> dtables(tables), ddescs(descs);
  DeviceVec<float> partials(static_cast<size_t>(batch) * heads * max_splits * (hd + 2));
  const std::vector<uint16_t> poison(q.size(), 0x7fc1);  // bf16 NaN
  // The tensor-core kernel with 4 and with 3 warps per block, then the two CUDA-core kernels.
  const std::vector<std::pair<DecodeKernel, int>> runs = {{DecodeKernel::kTensorCore, 4},
                                                          {DecodeKernel::kTensorCore, 3},
                                                          {DecodeKernel::kRegister, 0},
                                                          {DecodeKernel::kGeneric, 0}};
  for (const auto& [k, warps] : runs) {
    set_decode_kernel(k);
    set_decode_mma_warps(warps);
    const DecodeKernel ran = decode_kernel_for(hd, c.group);
    dout.put(poison);
    launch_attention_decode(dq.as<bf16>(), dcache.as<bf16>(), kv, layer, ddescs.as<DecodeDesc>(),
                            dtables.data(), batch, max_splits, c.split_len, heads, scale,
                            partials.data(), dout.as<bf16>(), nullptr);
    set_decode_kernel(DecodeKernel::kAuto);
    set_decode_mma_warps(0);
    ASSERT_EQ(cudaGetLastError(), cudaSuccess);
    const std::vector<float> got = from_bf16(dout.get());
    double max_err = 0, err2 = 0, ref2 = 0;
    size_t worst = 0;
    for (size_t j = 0; j < got.size(); ++j) {
      const double e = std::abs(got[j] - want[j]);
      if (!(e <= max_err)) {  // NaN too
        max_err = std::isnan(e) ? INFINITY : e;
        worst = j;
      }
      err2 += e * e;
      ref2 += want[j] * want[j];
    }
    const double rel = std::sqrt(err2 / ref2);
    SCOPED_TRACE("kernel " + std::to_string(static_cast<int>(ran)) + " (asked " +
                 std::to_string(static_cast<int>(k)) + ", warps " + std::to_string(warps) + ")");
    EXPECT_LE(max_err, 1.5e-2) << "worst at " << worst << " (token "
                               << worst / (static_cast<size_t>(heads) * hd) << ") got "
                               << got[worst] << " want " << want[worst];
    EXPECT_LE(rel, 8e-3) << "relative L2 error";
    if (k == DecodeKernel::kTensorCore) {
      // The tensor-core kernel must actually run where it is documented to apply.
      EXPECT_EQ(ran == DecodeKernel::kTensorCore, (hd == 64 || hd == 128) && c.group <= 16);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, CudaDecodeAttentionTest,
    ::testing::Values(
        // Llama-3-8B head shape (group 4), contexts around the 16-token block and 64-key tile,
        // single split (split_len >= every context).
        DecodeCase{128, 2, 4, 16, 4096, {1, 2, 15, 16, 17, 63, 64, 65, 100, 129, 333, 1000}},
        // The same with splits of 64 and 96 keys (96: the last tile of a split is half full).
        DecodeCase{128, 2, 4, 16, 64, {1, 17, 64, 65, 200, 777}},
        DecodeCase{128, 2, 4, 16, 96, {5, 96, 97, 191, 300, 1031}},
        // No GQA and group 8 (Llama-3-70B shape), blocks of 32.
        DecodeCase{128, 4, 1, 32, 128, {3, 31, 32, 33, 130, 513}},
        DecodeCase{128, 1, 8, 16, 256, {1, 64, 255, 256, 257, 900}},
        // head_dim 64: group 3 (SmolLM2), group 16 (fills the mma rows), odd block size.
        DecodeCase{64, 3, 3, 16, 128, {1, 7, 70, 128, 129, 444}},
        DecodeCase{64, 1, 16, 16, 64, {2, 63, 64, 65, 222}},
        DecodeCase{64, 2, 4, 5, 160, {1, 4, 5, 6, 99, 321}},
        // A batch of 40 tokens of mixed lengths, splits of 128.
        DecodeCase{128, 2, 4, 16, 128, {1,   9,   16,  17,  31,  32,  33,  63,  64,   65,
                                        66,  100, 127, 128, 129, 130, 200, 255, 256,  257,
                                        300, 383, 384, 385, 400, 511, 512, 513, 600,  639,
                                        640, 641, 700, 767, 768, 769, 800, 900, 1000, 1100}},
        // head_dim 96: no tensor-core kernel, the generic one runs for every setting.
        DecodeCase{96, 2, 4, 16, 128, {1, 50, 300}}),
    case_name);

}  // namespace
}  // namespace fs::cuda
