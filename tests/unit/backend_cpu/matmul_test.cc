// matmul() conformance, in the style of llama.cpp's test-backend-ops: every weight type, every path
// (AVX2 tiles, OpenBLAS prefill, scalar reference), many shapes, 1 and several threads, against an
// exact f64 dot product of the dequantized weights. Per-type tolerances are relative to the L1 dot
// sum_c |W[r, c] * x[t, c]| of each output (see docs/KERNELS.md).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "backend/cpu/matmul.h"
#include "backend/cpu/matmul_kernels.h"
#include "backend/cpu/quant_blocks.h"
#include "core/thread_pool.h"

namespace fs::cpu {
namespace {

constexpr DType kAllTypes[] = {DType::kF32,  DType::kF16,  DType::kBF16, DType::kQ8_0,
                               DType::kQ4_0, DType::kQ4_1, DType::kQ4_K, DType::kQ6_K};

// Error bound of matmul() and matmul_reference() against the exact dot, per output (t, r), when the
// activations are quantized (tiles); the sgemm path (large batches) must be within 1e-5 * L1:
//   float weights:     1e-5 * L1                       (f32 accumulation only)
//   quantized weights: sum_c |W[r, c]| * 0.6 * d_b(c) + 1e-3 * L1
// where L1 = sum_c |W[r, c] * x[t, c]| and d_b = amax(x[t, block of c]) / 127 is the step of the Q8
// activation block holding c (32 elements; 256 for Q8_K): rounding moves each activation by at most
// half a step, plus the fp16 rounding of the block scale (127 * 2^-11 steps), plus f32 summation.
bool is_float(DType t) { return !dtype_is_quantized(t); }

uint16_t f16(float f) { return fp32_to_fp16(f); }

// Random weight bytes for [rows, cols]: random quant values with small, sane f16 scales.
std::vector<uint8_t> random_weights(DType t, int64_t rows, int64_t cols, std::mt19937& rng) {
  const int64_t row_bytes = dtype_row_bytes(t, cols);
  std::vector<uint8_t> data(rows * row_bytes);
  std::uniform_int_distribution<int> byte(0, 255);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> scale(0.001f, 0.02f);
  const int64_t n = rows * cols;
  auto put16 = [&](int64_t offset, uint16_t v) { std::memcpy(&data[offset], &v, 2); };
  switch (t) {
    case DType::kF32:
      for (int64_t i = 0; i < n; ++i) {
        const float v = normal(rng);
        std::memcpy(&data[4 * i], &v, 4);
      }
      return data;
    case DType::kF16:
    case DType::kBF16:
      for (int64_t i = 0; i < n; ++i) {
        put16(2 * i, t == DType::kF16 ? f16(normal(rng)) : fp32_to_bf16(normal(rng)));
      }
      return data;
    default:
      break;
  }
  for (auto& b : data) b = static_cast<uint8_t>(byte(rng));
  const int64_t block_bytes = dtype_block_bytes(t);
  for (int64_t off = 0; off < static_cast<int64_t>(data.size()); off += block_bytes) {
    switch (t) {
      case DType::kQ8_0:
      case DType::kQ4_0:
        put16(off, f16(scale(rng)));
        break;
      case DType::kQ4_1:
        put16(off, f16(scale(rng)));
        put16(off + 2, f16(-8.0f * scale(rng)));
        break;
      case DType::kQ4_K:
        put16(off, f16(scale(rng) * 0.1f));
        put16(off + 2, f16(scale(rng) * 0.1f));
        break;
      case DType::kQ6_K:
        put16(off + 208, f16(scale(rng) * 0.05f));
        break;
      default:
        break;
    }
  }
  return data;
}

// Largest observed |fast - exact| / L1 per type, printed for docs/KERNELS.md.
double g_max_error[64] = {};
double g_max_bound_fraction[64] = {};  // largest |fast - exact| / bound

struct Case {
  DType dtype;
  int64_t rows, cols, n_tokens;
};

void check_case(const Case& c, ThreadPool& pool, std::mt19937& rng) {
  SCOPED_TRACE(testing::Message() << dtype_name(c.dtype) << " rows=" << c.rows << " cols=" << c.cols
                                  << " n_tokens=" << c.n_tokens
                                  << " threads=" << pool.num_threads());
  const std::vector<uint8_t> wdata = random_weights(c.dtype, c.rows, c.cols, rng);
  const WeightView w{c.dtype, c.rows, c.cols, wdata.data()};
  std::vector<float> x(c.n_tokens * c.cols);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (auto& v : x) v = normal(rng);
  x[0] = 6.0f;  // an outlier, as real activations have

  std::vector<float> wf(c.rows * c.cols);
  dequantize_rows(w, 0, c.rows, wf.data());
  std::vector<float> y_fast(c.n_tokens * c.rows, NAN), y_ref(c.n_tokens * c.rows, NAN);
  matmul(w, x.data(), c.n_tokens, y_fast.data(), pool);
  matmul_reference(w, x.data(), c.n_tokens, y_ref.data());

  const bool sgemm = matmul_uses_sgemm(c.dtype, c.n_tokens);
  const int64_t qblock = dtype_block_size(c.dtype);
  std::vector<double> step(c.n_tokens * c.cols, 0.0);  // d_b of the activation block of each x
  for (int64_t i = 0; i < c.n_tokens * c.cols; i += qblock) {
    double amax = 0.0;
    for (int64_t j = 0; j < qblock; ++j) amax = std::max(amax, std::fabs(double{x[i + j]}));
    for (int64_t j = 0; j < qblock; ++j) step[i + j] = amax / 127.0;
  }
  for (int64_t t = 0; t < c.n_tokens; ++t) {
    for (int64_t r = 0; r < c.rows; ++r) {
      double exact = 0.0, l1 = 0.0, rounding = 0.0;
      for (int64_t k = 0; k < c.cols; ++k) {
        const double p = static_cast<double>(wf[r * c.cols + k]) * x[t * c.cols + k];
        exact += p;
        l1 += std::fabs(p);
        rounding += std::fabs(double{wf[r * c.cols + k]}) * 0.6 * step[t * c.cols + k];
      }
      const double bound = is_float(c.dtype) ? 1e-5 * l1 : rounding + 1e-3 * l1;
      const double fast = y_fast[t * c.rows + r], ref = y_ref[t * c.rows + r];
      double& max_err = g_max_error[static_cast<int>(c.dtype) % 64];
      max_err = std::max(max_err, std::fabs(fast - exact) / l1);
      double& max_frac = g_max_bound_fraction[static_cast<int>(c.dtype) % 64];
      max_frac = std::max(max_frac, std::fabs(fast - exact) / bound);
      ASSERT_LE(std::fabs(fast - exact), bound) << "fast t=" << t << " r=" << r;
      ASSERT_LE(std::fabs(ref - exact), bound) << "ref t=" << t << " r=" << r;
      if (sgemm && is_float(c.dtype)) {
        // Float weights through sgemm: f32 accuracy.
        ASSERT_LE(std::fabs(fast - exact), 1e-5 * l1) << "sgemm t=" << t << " r=" << r;
      } else {
        // Same integer math on activations equal up to rounding ties (the sgemm path of quantized
        // weights rounds the activations to the same 8-bit blocks): much closer to each other (so
        // a sequence's result does not depend on the batch it runs in; for Q4_1 the tiles use the
        // fp16-rounded block sum of Q8_1, hence the wider margin on that path).
        ASSERT_LE(std::fabs(fast - ref),
                  is_float(c.dtype) ? 1e-5 * l1 : (sgemm ? 0.25 : 0.05) * bound)
            << "t=" << t << " r=" << r;
      }
    }
  }
}

std::vector<Case> cases_for(DType t) {
  const bool k_quant = dtype_block_size(t) == 256;
  const std::vector<int64_t> cols =
      k_quant ? std::vector<int64_t>{256, 768} : std::vector<int64_t>{32, 96, 576};
  std::vector<Case> out;
  for (int64_t rows : {1, 3, 4, 7, 66}) {
    for (int64_t k : cols) {
      for (int64_t n : {1, 2, 3, 4, 5, 8, 17}) out.push_back({t, rows, k, n});
    }
  }
  out.push_back({t, 37, cols.back(), 64});
  out.push_back({t, 9, cols.front(), 257});
  if (is_float(t)) out.push_back({t, 130, 100, 33});  // cols % 8 != 0
  return out;
}

TEST(Matmul, EveryTypeEveryShapeMatchesExactDot) {
  std::mt19937 rng(42);
  ThreadPool pool1(1), pool3(3);
  for (DType t : kAllTypes) {
    for (const Case& c : cases_for(t)) {
      check_case(c, pool1, rng);
      check_case(c, pool3, rng);
      if (HasFatalFailure()) return;
    }
    std::printf("%-5s max |fast - exact| / L1 = %.3g, / bound = %.3g\n",
                std::string(dtype_name(t)).c_str(), g_max_error[static_cast<int>(t) % 64],
                g_max_bound_fraction[static_cast<int>(t) % 64]);
  }
}

// The AVX2 tile kernels against the scalar tile kernels on the same quantized activations: the
// integer arithmetic must agree up to f32 summation order.
TEST(Matmul, Avx2TilesMatchScalarTilesOnSameActivations) {
  if (!use_avx2_kernels()) GTEST_SKIP() << "no AVX2 (or FASTSERVE_CPU_KERNELS=scalar)";
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (DType t : kAllTypes) {
    const MatmulKernels& fast = avx2_kernels(t);
    const MatmulKernels& ref = scalar_kernels(t);
    ASSERT_EQ(fast.act_type, ref.act_type);
    const int64_t cols = dtype_block_size(t) == 256 ? 512 : 160;
    const std::vector<uint8_t> wdata = random_weights(t, 4, cols, rng);
    std::vector<float> x(4 * cols);
    for (auto& v : x) v = normal(rng);
    int64_t xs = cols * 4;
    std::vector<uint8_t> xq(reinterpret_cast<uint8_t*>(x.data()),
                            reinterpret_cast<uint8_t*>(x.data() + x.size()));
    if (ref.act_type != DType::kF32) {
      xs = dtype_row_bytes(ref.act_type, cols);
      xq.assign(4 * xs, 0);
      for (int i = 0; i < 4; ++i) ref.quantize_row(&x[i * cols], &xq[i * xs], cols);
    }
    const int64_t ws = dtype_row_bytes(t, cols);
    for (int nr = 1; nr <= kMaxTileRows; ++nr) {
      for (int nt = 1; nt <= kMaxTileTokens; ++nt) {
        float yf[16], yr[16];
        fast.tile(cols, wdata.data(), ws, nr, xq.data(), xs, nt, yf, 4);
        ref.tile(cols, wdata.data(), ws, nr, xq.data(), xs, nt, yr, 4);
        for (int tt = 0; tt < nt; ++tt) {
          for (int r = 0; r < nr; ++r) {
            EXPECT_NEAR(yf[tt * 4 + r], yr[tt * 4 + r], 1e-4 * (1.0f + std::fabs(yr[tt * 4 + r])))
                << dtype_name(t) << " nr=" << nr << " nt=" << nt;
          }
        }
      }
    }
  }
}

// The AVX-512 VNNI tiles do the same f32 arithmetic as the AVX2 tiles on exact int32 block dots:
// bit-identical outputs for every tile shape, including weights of -128 (Q8_0) and 0/15 nibbles.
TEST(Matmul, Avx512TilesAreBitIdenticalToAvx2Tiles) {
  if (!use_avx512_kernels()) GTEST_SKIP() << "no AVX-512 VNNI (or FASTSERVE_CPU_KERNELS=avx2/scalar)";
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (DType t : {DType::kQ8_0, DType::kQ4_0, DType::kQ4_1}) {
    const MatmulKernels* vnni = avx512_kernels(t);
    ASSERT_NE(vnni, nullptr);
    const MatmulKernels& base = avx2_kernels(t);
    ASSERT_EQ(vnni->act_type, base.act_type);
    EXPECT_NE(vnni->tile, base.tile);
    const int64_t cols = 576;
    std::vector<uint8_t> wdata = random_weights(t, 4, cols, rng);
    const int64_t ws = dtype_row_bytes(t, cols);
    if (t == DType::kQ8_0) {  // extreme weights in row 0's first block
      auto* b = reinterpret_cast<BlockQ8_0*>(wdata.data());
      for (int j = 0; j < kQK; ++j) b->qs[j] = static_cast<int8_t>(j % 2 ? -128 : 127);
    }
    std::vector<float> x(4 * cols);
    for (auto& v : x) v = normal(rng);
    x[3] = 40.0f;  // an outlier: the other values of its block round to small integers
    const int64_t xs = dtype_row_bytes(base.act_type, cols);
    std::vector<uint8_t> xq(4 * xs, 0);
    for (int i = 0; i < 4; ++i) base.quantize_row(&x[i * cols], &xq[i * xs], cols);
    for (int nr = 1; nr <= kMaxTileRows; ++nr) {
      for (int nt = 1; nt <= kMaxTileTokens; ++nt) {
        float yv[16], ya[16];
        vnni->tile(cols, wdata.data(), ws, nr, xq.data(), xs, nt, yv, 4);
        base.tile(cols, wdata.data(), ws, nr, xq.data(), xs, nt, ya, 4);
        for (int tt = 0; tt < nt; ++tt) {
          for (int r = 0; r < nr; ++r) {
            ASSERT_EQ(yv[tt * 4 + r], ya[tt * 4 + r]) << dtype_name(t) << " nr=" << nr << " nt=" << nt;
          }
        }
      }
    }
  }
}

// The AVX-512 BF16 tiles against the scalar BF16 tiles (same f32 activations), every tile shape,
// column counts with 16- and 1-column tails; then through matmul() below the sgemm threshold,
// against the exact dot and each token alone: a token's row must not depend on its batch.
double bf16_l1(const uint8_t* w_row, const float* x, int64_t cols) {
  double l1 = 0.0;
  for (int64_t c = 0; c < cols; ++c) {
    uint16_t h;
    std::memcpy(&h, w_row + 2 * c, 2);
    l1 += std::fabs(double{bf16_to_fp32(h)} * x[c]);
  }
  return l1;
}

TEST(Matmul, Avx512Bf16TilesMatchScalarAndAreBatchInvariant) {
  if (!use_avx512_kernels()) GTEST_SKIP() << "no AVX-512 (or FASTSERVE_CPU_KERNELS=avx2/scalar)";
  std::mt19937 rng(17);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const MatmulKernels* k = avx512_kernels(DType::kBF16);
  ASSERT_NE(k, nullptr);
  const MatmulKernels& ref = scalar_kernels(DType::kBF16);
  ASSERT_EQ(k->act_type, DType::kF32);
  EXPECT_NE(k->tile, avx2_kernels(DType::kBF16).tile);
  for (int64_t cols : {int64_t{16}, int64_t{32}, int64_t{48}, int64_t{100}, int64_t{576}}) {
    const std::vector<uint8_t> wdata = random_weights(DType::kBF16, kMaxTileRows, cols, rng);
    const int64_t ws = dtype_row_bytes(DType::kBF16, cols);
    std::vector<float> x(kMaxTileTokens * cols);
    for (auto& v : x) v = normal(rng);
    const int64_t xs = cols * 4;
    const auto* xb = reinterpret_cast<const uint8_t*>(x.data());
    for (int nr = 1; nr <= kMaxTileRows; ++nr) {
      for (int nt = 1; nt <= kMaxTileTokens; ++nt) {
        float yf[16], yr[16];
        k->tile(cols, wdata.data(), ws, nr, xb, xs, nt, yf, 4);
        ref.tile(cols, wdata.data(), ws, nr, xb, xs, nt, yr, 4);
        for (int tt = 0; tt < nt; ++tt) {
          for (int r = 0; r < nr; ++r) {
            const double l1 = bf16_l1(wdata.data() + r * ws, &x[tt * cols], cols);
            ASSERT_LE(std::fabs(yf[tt * 4 + r] - yr[tt * 4 + r]), 1e-5 * l1)
                << "cols=" << cols << " nr=" << nr << " nt=" << nt;
          }
        }
      }
    }
  }
  ThreadPool pool(2);
  for (int64_t cols : {int64_t{64}, int64_t{100}, int64_t{576}}) {
    for (int64_t rows : {int64_t{1}, int64_t{7}, int64_t{66}}) {
      const std::vector<uint8_t> wdata = random_weights(DType::kBF16, rows, cols, rng);
      const WeightView w{DType::kBF16, rows, cols, wdata.data()};
      constexpr int64_t kTokens = 70;
      ASSERT_FALSE(matmul_uses_sgemm(DType::kBF16, kTokens));
      std::vector<float> x(kTokens * cols);
      for (auto& v : x) v = normal(rng);
      std::vector<float> alone(kTokens * rows), y_ref(kTokens * rows);
      for (int64_t i = 0; i < kTokens; ++i) matmul(w, &x[i * cols], 1, &alone[i * rows], pool);
      matmul_reference(w, x.data(), kTokens, y_ref.data());
      const int64_t ws = dtype_row_bytes(DType::kBF16, cols);
      for (int64_t i = 0; i < kTokens * rows; ++i) {
        const double l1 = bf16_l1(wdata.data() + i % rows * ws, &x[i / rows * cols], cols);
        ASSERT_LE(std::fabs(alone[i] - y_ref[i]), 1e-5 * l1)
            << "cols=" << cols << " rows=" << rows << " i=" << i;
      }
      for (int64_t n : {int64_t{2}, int64_t{3}, int64_t{5}, int64_t{17}, kTokens}) {
        std::vector<float> y(n * rows, NAN);
        matmul(w, x.data(), n, y.data(), pool);
        ASSERT_EQ(0, std::memcmp(y.data(), alone.data(), y.size() * sizeof(float)))
            << "cols=" << cols << " rows=" << rows << " n=" << n;
      }
    }
  }
}

// The wide prefill tiles (MatmulKernels::wide) give every output exactly what the 4x4 tiles give:
// the fixed-shape tile itself against k.tile over the same block (extreme weights and an outlier
// activation included), and matmul() over batches that mix wide tiles with 4x4 tail tiles (token
// counts and row counts that are not multiples of either shape) against each token alone.
TEST(Matmul, WideTilesAreBitIdenticalToSmallTiles) {
  if (!use_avx512_kernels()) GTEST_SKIP() << "no AVX-512 VNNI (or FASTSERVE_CPU_KERNELS=avx2/scalar)";
  std::mt19937 rng(13);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  ThreadPool pool(2);
  for (DType t : {DType::kQ8_0, DType::kQ4_0, DType::kQ4_1}) {
    const MatmulKernels& k = *avx512_kernels(t);
    ASSERT_NE(k.wide.fn, nullptr) << dtype_name(t);
    const int wr = k.wide.rows, wt = k.wide.tokens;
    // The tile on its own; 1600 columns = 50 blocks, more than one pass of scale products.
    for (int64_t cols : {int64_t{32}, int64_t{576}, int64_t{1600}}) {
      std::vector<uint8_t> wdata = random_weights(t, wr, cols, rng);
      const int64_t ws = dtype_row_bytes(t, cols);
      if (t == DType::kQ8_0) {
        auto* b = reinterpret_cast<BlockQ8_0*>(wdata.data() + ws);  // row 1, first block
        for (int j = 0; j < kQK; ++j) b->qs[j] = static_cast<int8_t>(j % 2 ? -128 : 127);
      }
      std::vector<float> x(wt * cols);
      for (auto& v : x) v = normal(rng);
      x[cols + 5] = 40.0f;
      const int64_t xs = dtype_row_bytes(k.act_type, cols);
      std::vector<uint8_t> xq(wt * xs);
      for (int i = 0; i < wt; ++i) k.quantize_row(&x[i * cols], &xq[i * xs], cols);
      std::vector<float> yw(wt * wr, NAN), ys(wt * wr, NAN);
      k.wide.fn(cols, wdata.data(), ws, xq.data(), xs, yw.data(), wr);
      for (int r = 0; r < wr; r += kMaxTileRows) {
        for (int tt = 0; tt < wt; tt += kMaxTileTokens) {
          k.tile(cols, wdata.data() + r * ws, ws, std::min(kMaxTileRows, wr - r), &xq[tt * xs], xs,
                 std::min(kMaxTileTokens, wt - tt), &ys[tt * wr + r], wr);
        }
      }
      ASSERT_EQ(0, std::memcmp(yw.data(), ys.data(), yw.size() * sizeof(float)))
          << dtype_name(t) << " cols=" << cols;
    }
    // Through matmul(): the wide tile from kWideTileMinTokens tokens on, 4x4 tiles for the rest.
    const int64_t cols = 256;
    for (int64_t rows : {int64_t{6}, int64_t{13}, int64_t{30}, int64_t{50}}) {
      const std::vector<uint8_t> wdata = random_weights(t, rows, cols, rng);
      const WeightView w{t, rows, cols, wdata.data()};
      std::vector<float> x(77 * cols);
      for (auto& v : x) v = normal(rng);
      std::vector<float> alone(77 * rows);
      for (int64_t i = 0; i < 77; ++i) matmul(w, &x[i * cols], 1, &alone[i * rows], pool);
      for (int64_t n = 1; n <= 77; n += n < 29 ? 1 : 48) {
        std::vector<float> y(n * rows, NAN);
        matmul(w, x.data(), n, y.data(), pool);
        ASSERT_EQ(0, std::memcmp(y.data(), alone.data(), y.size() * sizeof(float)))
            << dtype_name(t) << " rows=" << rows << " n=" << n;
      }
    }
  }
}

// Fused Q/K/V-style calls give every weight exactly what its own matmul() gives, on every path.
TEST(Matmul, MultiIsBitIdenticalToSeparateCalls) {
  std::mt19937 rng(5);
  ThreadPool pool(3);
  for (DType t : kAllTypes) {
    const int64_t cols = 512;
    const int64_t rows[] = {96, 32, 40};
    std::vector<std::vector<uint8_t>> data;
    std::vector<WeightView> ws;
    for (int64_t r : rows) {
      data.push_back(random_weights(t, r, cols, rng));
      ws.push_back({t, r, cols, data.back().data()});
    }
    for (int64_t n : {1, 5, 70}) {
      std::vector<float> x(n * cols);
      std::normal_distribution<float> normal(0.0f, 1.0f);
      for (auto& v : x) v = normal(rng);
      std::vector<std::vector<float>> fused(3), alone(3);
      std::vector<float*> ys;
      for (int i = 0; i < 3; ++i) {
        fused[i].assign(n * rows[i], NAN);
        alone[i].assign(n * rows[i], NAN);
        ys.push_back(fused[i].data());
        matmul(ws[i], x.data(), n, alone[i].data(), pool);
      }
      matmul_multi(ws, x.data(), n, ys, pool);
      for (int i = 0; i < 3; ++i) {
        ASSERT_EQ(0, std::memcmp(fused[i].data(), alone[i].data(), fused[i].size() * sizeof(float)))
            << dtype_name(t) << " n=" << n << " weight " << i;
      }
    }
  }
}

TEST(Matmul, ZeroTokensAndKernelInfo) {
  ThreadPool pool(2);
  const std::vector<uint8_t> wdata(dtype_row_bytes(DType::kQ8_0, 64) * 2, 0);
  const WeightView w{DType::kQ8_0, 2, 64, wdata.data()};
  matmul(w, nullptr, 0, nullptr, pool);
  EXPECT_FALSE(matmul_kernel_info().empty());
}

}  // namespace
}  // namespace fs::cpu
