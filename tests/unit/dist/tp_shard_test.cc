// Sharding a model over TP ranks and PP stages (dist/tp_shard.h), and the MPI communicator on one
// rank. The multi-rank numerics (TP=2 / PP=2 give one rank's tokens) run under mpirun in
// tests/e2e/test_dist.py.
#include "dist/tp_shard.h"

#include <cstring>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "backend/cpu/matmul.h"
#include "core/dtype.h"
#include "dist/mpi_communicator.h"
#include "model/model_weights.h"

namespace fs::dist {
namespace {

ModelConfig small_config(int64_t heads = 4, int64_t kv_heads = 2, int64_t head_dim = 32) {
  ModelConfig c;
  c.arch = ModelArch::kLlama;
  c.arch_name = "llama";
  c.vocab_size = 64;
  c.num_heads = heads;
  c.num_kv_heads = kv_heads;
  c.head_dim = head_dim;
  c.hidden_size = heads * head_dim;
  c.intermediate_size = 256;
  c.num_layers = 5;
  c.max_position_embeddings = 64;
  return c;
}

LoadedModel dummy(const ModelConfig& c) {
  Result<LoadedModel> m = make_dummy_model(c, "test", DType::kF32);
  EXPECT_TRUE(m.is_ok()) << m.status().message();
  return std::move(*m);
}

std::vector<float> dequantized(const WeightTensor& w) {
  const cpu::WeightView v{w.dtype, w.rows(), w.cols(), w.data};
  std::vector<float> out(v.rows * v.cols);
  cpu::dequantize_rows(v, 0, v.rows, out.data());
  return out;
}

TEST(ParallelLayout, SplitsLayersIntoContiguousStages) {
  const ParallelLayout l{.tp = 2, .pp = 4, .rank = 5};
  EXPECT_EQ(l.stage(), 2);
  EXPECT_EQ(l.tp_rank(), 1);
  EXPECT_EQ(l.rank_of(3, 1), 7);
  std::vector<int64_t> bounds;
  for (int s = 0; s < 4; ++s) bounds.push_back(l.layer_end(s, 30) - l.layer_begin(s, 30));
  EXPECT_EQ(bounds, (std::vector<int64_t>{7, 8, 7, 8}));
  EXPECT_EQ(l.layer_begin(0, 30), 0);
  EXPECT_EQ(l.layer_end(3, 30), 30);
}

// The LM head in layers, by weight count: SmolLM2-135M's tied 49152 x 576 head is 8 of its layers,
// Llama-3-8B's 2.4; at TP=2 every rank runs the whole head but half of each layer.
TEST(ParallelLayout, LmHeadLayersCountWeights) {
  ModelConfig smol;
  smol.vocab_size = 49152;
  smol.hidden_size = 576;
  smol.num_heads = 9;
  smol.num_kv_heads = 3;
  smol.head_dim = 64;
  smol.intermediate_size = 1536;
  smol.activation = Activation::kSiluGated;
  EXPECT_NEAR(lm_head_layers(smol, 1), 8.0, 0.01);
  ModelConfig llama = smol;
  llama.vocab_size = 128256;
  llama.hidden_size = 4096;
  llama.num_heads = 32;
  llama.num_kv_heads = 8;
  llama.head_dim = 128;
  llama.intermediate_size = 14336;
  EXPECT_NEAR(lm_head_layers(llama, 1), 2.41, 0.01);
  EXPECT_NEAR(lm_head_layers(llama, 2), 4.82, 0.02);
}

// Balanced stages share layers + the head evenly: the default model's 30 layers at PP=2 split 19 +
// 11 (+ 8 for the head); every stage keeps at least one layer however heavy the head.
TEST(ParallelLayout, BalancedStagesCountTheHead) {
  ParallelLayout l{.tp = 1, .pp = 2, .rank = 0};
  l.head_layers = 8.0;
  EXPECT_EQ(l.layer_end(0, 30), 19);
  EXPECT_EQ(l.layer_begin(1, 30), 19);
  EXPECT_EQ(l.layer_end(1, 30), 30);
  l.pp = 4;
  std::vector<int64_t> sizes;
  for (int s = 0; s < 4; ++s) sizes.push_back(l.layer_end(s, 30) - l.layer_begin(s, 30));
  EXPECT_EQ(sizes, (std::vector<int64_t>{10, 9, 10, 1}));
  l.pp = 2;
  l.head_layers = 100.0;
  EXPECT_EQ(l.layer_end(0, 4), 3);  // the last stage keeps one layer
  const LoadedModel full = dummy(small_config());
  ParallelLayout last{.tp = 1, .pp = 2, .rank = 1};
  last.head_layers = 2.0;  // 5 layers + 2: stages [0, 4) and [4, 5)
  Result<LoadedModel> shard = shard_model(full, last);
  ASSERT_TRUE(shard.is_ok());
  EXPECT_EQ(shard->config.num_layers, 1);
  EXPECT_EQ(shard->weights.layers[0].wq.data, full.weights.layers[4].wq.data);
}

TEST(CheckLayout, RejectsHeadsThatDoNotSplit) {
  ModelConfig c = small_config(/*heads=*/9, /*kv_heads=*/3, /*head_dim=*/64);
  c.intermediate_size = 1536;
  const Status s = check_layout(c, ParallelLayout{.tp = 2, .pp = 1, .rank = 0});
  ASSERT_FALSE(s.is_ok());
  EXPECT_NE(s.message().find("9 attention heads do not split evenly over 2 ranks"),
            std::string::npos)
      << s.message();
  EXPECT_TRUE(check_layout(c, ParallelLayout{.tp = 3, .pp = 1, .rank = 2}).is_ok());
}

TEST(CheckLayout, RejectsMoreStagesThanLayers) {
  const Status s = check_layout(small_config(), ParallelLayout{.tp = 1, .pp = 6, .rank = 0});
  ASSERT_FALSE(s.is_ok());
  EXPECT_NE(s.message().find("only 5 layers"), std::string::npos) << s.message();
}

TEST(ShardModel, ColumnParallelWeightsAreRowViewsOfTheMapping) {
  const LoadedModel full = dummy(small_config());
  Result<LoadedModel> shard = shard_model(full, ParallelLayout{.tp = 2, .pp = 1, .rank = 1});
  ASSERT_TRUE(shard.is_ok()) << shard.status().message();
  const ModelConfig& c = shard->config;
  EXPECT_EQ(c.num_heads, 2);
  EXPECT_EQ(c.num_kv_heads, 1);
  EXPECT_EQ(c.intermediate_size, 128);
  EXPECT_EQ(c.hidden_size, 128);
  const LayerWeights& f = full.weights.layers[3];
  const LayerWeights& s = shard->weights.layers[3];
  const int64_t row_bytes = 128 * 4;
  EXPECT_EQ(s.wq.data, f.wq.data + 64 * row_bytes);  // heads 2..3: rows 64..127, no copy
  EXPECT_EQ(s.wq.shape, (std::vector<int64_t>{64, 128}));
  EXPECT_EQ(s.wk.data, f.wk.data + 32 * row_bytes);  // kv head 1
  EXPECT_EQ(s.wv.data, f.wv.data + 32 * row_bytes);
  EXPECT_EQ(s.w_gate->data, f.w_gate->data + 128 * row_bytes);
  EXPECT_EQ(s.w_up.data, f.w_up.data + 128 * row_bytes);
  EXPECT_EQ(shard->weights.tok_embd.data, full.weights.tok_embd.data);  // replicated
  EXPECT_LT(shard->weight_bytes, full.weight_bytes);
}

TEST(ShardModel, RowParallelWeightsKeepTheirColumnRange) {
  const LoadedModel full = dummy(small_config());
  for (int rank = 0; rank < 2; ++rank) {
    Result<LoadedModel> shard = shard_model(full, ParallelLayout{.tp = 2, .pp = 1, .rank = rank});
    ASSERT_TRUE(shard.is_ok()) << shard.status().message();
    for (const auto& [fw, sw, cols] :
         {std::tuple{&full.weights.layers[0].wo, &shard->weights.layers[0].wo, int64_t{64}},
          std::tuple{&full.weights.layers[4].w_down, &shard->weights.layers[4].w_down,
                     int64_t{128}}}) {
      ASSERT_EQ(sw->shape, (std::vector<int64_t>{128, cols}));
      const std::vector<float> f = dequantized(*fw), s = dequantized(*sw);
      for (int64_t r = 0; r < 128; ++r) {
        for (int64_t k = 0; k < cols; ++k) {
          ASSERT_EQ(s[r * cols + k], f[r * fw->cols() + rank * cols + k]) << r << " " << k;
        }
      }
    }
  }
}

TEST(ShardModel, QkvBiasesAreSlicedAndOutputBiasesKeptOnce) {
  ModelConfig c = small_config();
  c.qkv_bias = true;
  c.attn_out_bias = true;
  const LoadedModel full = dummy(c);
  Result<LoadedModel> r0 = shard_model(full, ParallelLayout{.tp = 2, .pp = 1, .rank = 0});
  Result<LoadedModel> r1 = shard_model(full, ParallelLayout{.tp = 2, .pp = 1, .rank = 1});
  ASSERT_TRUE(r0.is_ok() && r1.is_ok());
  const LayerWeights& f = full.weights.layers[0];
  const LayerWeights& s1 = r1->weights.layers[0];
  ASSERT_TRUE(s1.bq && s1.bk && s1.bv);
  EXPECT_EQ(s1.bq->shape, std::vector<int64_t>{64});
  EXPECT_EQ(s1.bq->data, f.bq->data + 64 * 4);
  EXPECT_EQ(s1.bk->data, f.bk->data + 32 * 4);
  EXPECT_TRUE(r0->weights.layers[0].bo.has_value());  // added once, before the all-reduce
  EXPECT_FALSE(s1.bo.has_value());
}

TEST(ShardModel, PipelineStageKeepsItsLayers) {
  const LoadedModel full = dummy(small_config());
  Result<LoadedModel> shard = shard_model(full, ParallelLayout{.tp = 1, .pp = 2, .rank = 1});
  ASSERT_TRUE(shard.is_ok());
  EXPECT_EQ(shard->config.num_layers, 3);  // layers [2, 5)
  ASSERT_EQ(shard->weights.layers.size(), 3u);
  EXPECT_EQ(shard->weights.layers[0].wq.data, full.weights.layers[2].wq.data);
  EXPECT_EQ(shard->config.num_heads, 4);  // no TP: whole layers
}

// A Q8_0 weight [rows, cols]: 34-byte blocks (f16 scale, 32 int8) of random values.
struct Q8Weight {
  std::vector<uint8_t> bytes;
  WeightTensor tensor;
};
Q8Weight make_q8(int64_t rows, int64_t cols) {
  Q8Weight w;
  const int64_t blocks = rows * cols / 32;
  w.bytes.resize(blocks * 34);
  std::mt19937 rng(7);
  for (int64_t b = 0; b < blocks; ++b) {
    const uint16_t scale = fp32_to_fp16(0.01f * static_cast<float>(1 + rng() % 7));
    std::memcpy(&w.bytes[b * 34], &scale, 2);
    for (int i = 0; i < 32; ++i) w.bytes[b * 34 + 2 + i] = static_cast<uint8_t>(rng());
  }
  w.tensor = WeightTensor{
      "blk.0.attn_output.weight", DType::kQ8_0, {rows, cols}, w.bytes.data(), w.bytes.size()};
  return w;
}

TEST(ShardModel, QuantizedRowParallelSliceFallsOnBlocks) {
  LoadedModel full = dummy(small_config());
  const Q8Weight q8 = make_q8(128, 128);
  full.weights.layers[0].wo = q8.tensor;
  Result<LoadedModel> shard = shard_model(full, ParallelLayout{.tp = 2, .pp = 1, .rank = 1});
  ASSERT_TRUE(shard.is_ok()) << shard.status().message();
  const WeightTensor& s = shard->weights.layers[0].wo;
  EXPECT_EQ(s.nbytes, 128u * 2 * 34);
  const std::vector<float> f = dequantized(q8.tensor), d = dequantized(s);
  for (int64_t r = 0; r < 128; ++r) {
    for (int64_t k = 0; k < 64; ++k) ASSERT_EQ(d[r * 64 + k], f[r * 128 + 64 + k]);
  }
}

TEST(ShardModel, QuantizedSliceInsideABlockIsAnError) {
  LoadedModel full = dummy(small_config(/*heads=*/4, /*kv_heads=*/4, /*head_dim=*/16));
  const Q8Weight q8 = make_q8(64, 64);
  full.weights.layers[0].wo = q8.tensor;
  // tp 4: 16 columns of O per rank, half a Q8_0 block.
  Result<LoadedModel> shard = shard_model(full, ParallelLayout{.tp = 4, .pp = 1, .rank = 1});
  ASSERT_FALSE(shard.is_ok());
  EXPECT_NE(shard.status().message().find("blk.0.attn_output.weight"), std::string::npos)
      << shard.status().message();
  EXPECT_NE(shard.status().message().find("32-element quantization blocks"), std::string::npos);
}

#ifdef FASTSERVE_WITH_MPI
TEST(MpiCommunicator, OneRankWorldWithoutMpirun) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "OpenMPI's own allocations in MPI_Init never freed read as leaks under LSan";
#endif
  Result<std::unique_ptr<MpiCommunicator>> world = MpiCommunicator::init_world(nullptr, nullptr);
  ASSERT_TRUE(world.is_ok()) << world.status().message();
  MpiCommunicator& c = **world;
  EXPECT_EQ(c.rank(), 0);
  EXPECT_EQ(c.size(), 1);
  std::vector<float> x = {1.5f, -2.0f};
  ASSERT_TRUE(c.all_reduce_sum(x).is_ok());
  EXPECT_EQ(x, (std::vector<float>{1.5f, -2.0f}));
  std::vector<float> gathered(2);
  ASSERT_TRUE(c.all_gather(x, gathered).is_ok());
  EXPECT_EQ(gathered, x);
  std::vector<uint8_t> bytes = {1, 2, 3};
  ASSERT_TRUE(c.broadcast(bytes, 0).is_ok());
  ASSERT_TRUE(c.barrier().is_ok());
  Result<std::unique_ptr<Communicator>> sub = c.split(0, 0);
  ASSERT_TRUE(sub.is_ok());
  EXPECT_EQ((*sub)->size(), 1);
  std::vector<float> wrong(3);
  EXPECT_FALSE(c.all_gather(x, wrong).is_ok());
  sub->reset();
}
#endif  // FASTSERVE_WITH_MPI

}  // namespace
}  // namespace fs::dist
