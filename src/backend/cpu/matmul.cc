// matmul() driver. Small batches (decode): quantizes activations once per call, then splits weight
// rows over the pool and walks register tiles (kMaxTileRows rows x kMaxTileTokens tokens), so each
// loaded weight block is reused across tokens. Large batches (prefill, n_tokens >=
// MatmulKernels::sgemm_min_tokens): converts blocks of kBlasRowBlock rows to f32 per pool thread
// and calls single-threaded OpenBLAS sgemm on them.
#include "backend/cpu/matmul.h"

#include <algorithm>
#include <cstring>
#include <mutex>
#include <vector>

#include <cblas.h>

#include "backend/cpu/matmul_kernels.h"
#include "backend/cpu/quant_blocks.h"
#include "core/check.h"

namespace fs::cpu {
namespace {

// Tokens per cache block of the prefill loop: the quantized activations of this many tokens stay in
// L1/L2 while a thread sweeps its rows.
constexpr int64_t kTokenBlock = 64;
// Rows per sgemm call: large enough that OpenBLAS's packing of x is amortized (64 was measurably
// slower), small enough that the f32 copy of the rows (kBlasRowBlock * cols floats) stays in L2.
constexpr int64_t kBlasRowBlock = 256;

const MatmulKernels& kernels_for(DType t) {
  if (use_avx512_kernels()) {
    if (const MatmulKernels* k = avx512_kernels(t)) return *k;
  }
  return use_avx2_kernels() ? avx2_kernels(t) : scalar_kernels(t);
}

void check_view(const WeightView& w) {
  FS_CHECK(w.rows >= 0 && w.cols >= 0 && (w.data != nullptr || w.rows * w.cols == 0));
  FS_CHECK(w.cols % dtype_block_size(w.dtype) == 0,
           "matmul: cols {} not a multiple of the {} block", w.cols, dtype_name(w.dtype));
}

// Quantized activations [n_tokens, row bytes]; owned by the calling (executor) thread and reused,
// so steady-state calls do not allocate.
std::vector<uint8_t>& activation_scratch() {
  thread_local std::vector<uint8_t> scratch;
  return scratch;
}

// Runs k.tile on rows [r, r + nr) x tokens [t, t + nt), in pieces of at most the tile's size.
void run_tile_pieces(const MatmulKernels& k, int64_t cols, const uint8_t* w, int64_t w_stride,
                     int64_t nr, const uint8_t* x, int64_t x_stride, int64_t nt, float* y,
                     int64_t ldy) {
  for (int64_t r = 0; r < nr; r += kMaxTileRows) {
    const int tr = static_cast<int>(std::min<int64_t>(kMaxTileRows, nr - r));
    for (int64_t t = 0; t < nt; t += kMaxTileTokens) {
      const int tt = static_cast<int>(std::min<int64_t>(kMaxTileTokens, nt - t));
      k.tile(cols, w + r * w_stride, w_stride, tr, x + t * x_stride, x_stride, tt, y + t * ldy + r,
             ldy);
    }
  }
}

// Runs the tiles of rows [row_begin, row_end) x all tokens: k.wide's full tiles where it has one and
// the batch is prefill-sized, k.tile for the rest (the same value for every output either way).
void run_tiles(const MatmulKernels& k, const WeightView& w, const uint8_t* xa, int64_t xa_stride,
               int64_t n_tokens, float* y, int64_t row_begin, int64_t row_end) {
  const int64_t w_stride = dtype_row_bytes(w.dtype, w.cols);
  const auto* wdata = static_cast<const uint8_t*>(w.data);
  const bool use_wide = k.wide.fn != nullptr && n_tokens >= kWideTileMinTokens;
  const int64_t tile_rows = use_wide ? k.wide.rows : kMaxTileRows;
  const int64_t tile_tokens = use_wide ? k.wide.tokens : kMaxTileTokens;
  for (int64_t tb = 0; tb < n_tokens; tb += kTokenBlock) {
    const int64_t te = std::min(n_tokens, tb + kTokenBlock);
    for (int64_t r = row_begin; r < row_end; r += tile_rows) {
      const int64_t nr = std::min(tile_rows, row_end - r);
      for (int64_t t = tb; t < te; t += tile_tokens) {
        const int64_t nt = std::min(tile_tokens, te - t);
        const uint8_t* wr = wdata + r * w_stride;
        const uint8_t* xt = xa + t * xa_stride;
        float* yt = y + t * w.rows + r;
        if (use_wide && nr == tile_rows && nt == tile_tokens) {
          k.wide.fn(w.cols, wr, w_stride, xt, xa_stride, yt, w.rows);
        } else {
          run_tile_pieces(k, w.cols, wr, w_stride, nr, xt, xa_stride, nt, yt, w.rows);
        }
      }
    }
  }
}

// y = x W^T through OpenBLAS sgemm, one call per block of up to kBlasRowBlock rows (converted to
// f32 by k.to_f32 unless W is f32).
void matmul_blas(const MatmulKernels& k, const WeightView& w, const float* x, int64_t n_tokens,
                 float* y, ThreadPool& pool) {
  static std::once_flag once;
  // Our pool owns the threads; OpenBLAS runs single-threaded inside each pool task.
  std::call_once(once, [] { openblas_set_num_threads(1); });
  const int64_t grain = std::max<int64_t>(
      16,
      std::min(kBlasRowBlock, (w.rows + 2 * pool.num_threads() - 1) / (2 * pool.num_threads())));
  // Dynamic grains: a descheduled thread's rows are taken over by the others.
  pool.parallel_for_dynamic(w.rows, grain, [&](int64_t b, int64_t e) {
    thread_local std::vector<float> wbuf;  // [kBlasRowBlock, cols] per worker, reused
    for (int64_t r = b; r < e; r += kBlasRowBlock) {
      const int64_t n = std::min(kBlasRowBlock, e - r);
      const float* wf;
      if (w.dtype == DType::kF32) {
        wf = static_cast<const float*>(w.data) + r * w.cols;
      } else {
        if (wbuf.size() < static_cast<size_t>(n * w.cols)) wbuf.resize(n * w.cols);
        k.to_f32(static_cast<const uint8_t*>(w.data) + r * dtype_row_bytes(w.dtype, w.cols), n,
                 w.cols, wbuf.data());
        wf = wbuf.data();
      }
      // y[t, r..r+n) = x[t, :] . W[r.., :]  (C = A * B^T, row-major).
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(n_tokens),
                  static_cast<int>(n), static_cast<int>(w.cols), 1.0f, x, static_cast<int>(w.cols),
                  wf, static_cast<int>(w.cols), 0.0f, y + r, static_cast<int>(w.rows));
    }
  });
}

// x rounded to the 8-bit activation blocks the integer tiles use (quantize, then dequantize), so
// the sgemm path of a quantized weight computes what the tiles compute, up to f32 summation order:
// a sequence's logits then do not depend on how many other tokens share its batch (which picks the
// path). out: [n_tokens, cols].
void round_activations(const MatmulKernels& k, const float* x, int64_t n_tokens, int64_t cols,
                       float* out, ThreadPool& pool) {
  const int64_t row_bytes = dtype_row_bytes(k.act_type, cols);
  pool.parallel_for(n_tokens, 4, [&](int64_t b, int64_t e) {
    thread_local std::vector<uint8_t> q;
    if (q.size() < static_cast<size_t>(row_bytes)) q.resize(row_bytes);
    for (int64_t t = b; t < e; ++t) {
      k.quantize_row(x + t * cols, q.data(), cols);
      float* o = out + t * cols;
      if (k.act_type == DType::kQ8_0) {
        dequantize_row_q8_0(reinterpret_cast<const BlockQ8_0*>(q.data()), o, cols);
      } else if (k.act_type == DType::kQ8_1) {
        const auto* blocks = reinterpret_cast<const BlockQ8_1*>(q.data());
        for (int64_t i = 0; i < cols / kQK; ++i) {
          const float d = fp16_to_fp32(blocks[i].d);
          for (int j = 0; j < kQK; ++j) o[i * kQK + j] = d * blocks[i].qs[j];
        }
      } else {
        FS_CHECK(k.act_type == DType::kQ8_K, "{} is not an activation type",
                 dtype_name(k.act_type));
        const auto* blocks = reinterpret_cast<const BlockQ8_K*>(q.data());
        for (int64_t i = 0; i < cols / kQKK; ++i) {
          for (int j = 0; j < kQKK; ++j) o[i * kQKK + j] = blocks[i].d * blocks[i].qs[j];
        }
      }
    }
  });
}

}  // namespace

bool matmul_uses_sgemm(DType t, int64_t n_tokens) {
  return use_avx2_kernels() && n_tokens >= kernels_for(t).sgemm_min_tokens;
}

void matmul(const WeightView& w, const float* x, int64_t n_tokens, float* y, ThreadPool& pool) {
  matmul_multi(std::span(&w, 1), x, n_tokens, std::span(&y, 1), pool);
}

void matmul_multi(std::span<const WeightView> ws, const float* x, int64_t n_tokens,
                  std::span<float* const> ys, ThreadPool& pool) {
  constexpr size_t kMaxWeights = 4;
  FS_CHECK(!ws.empty() && ws.size() <= kMaxWeights && ws.size() == ys.size(),
           "matmul_multi: {} weights, {} outputs", ws.size(), ys.size());
  for (const WeightView& w : ws) {
    check_view(w);
    FS_CHECK(w.dtype == ws[0].dtype && w.cols == ws[0].cols,
             "matmul_multi: weights differ in dtype or cols");
  }
  const int64_t cols = ws[0].cols;
  if (n_tokens <= 0) return;
  const MatmulKernels& k = kernels_for(ws[0].dtype);
  if (matmul_uses_sgemm(ws[0].dtype, n_tokens)) {
    if (k.act_type != DType::kF32) {
      thread_local std::vector<float> rounded;  // [n_tokens, cols], caller thread's, reused
      if (rounded.size() < static_cast<size_t>(n_tokens * cols)) rounded.resize(n_tokens * cols);
      round_activations(k, x, n_tokens, cols, rounded.data(), pool);
      x = rounded.data();
    }
    for (size_t i = 0; i < ws.size(); ++i) {
      if (ws[i].rows > 0) matmul_blas(k, ws[i], x, n_tokens, ys[i], pool);
    }
    return;
  }
  const uint8_t* xa = reinterpret_cast<const uint8_t*>(x);
  int64_t xa_stride = cols * static_cast<int64_t>(sizeof(float));
  if (k.act_type != DType::kF32) {
    xa_stride = dtype_row_bytes(k.act_type, cols);
    std::vector<uint8_t>& scratch = activation_scratch();
    if (scratch.size() < static_cast<size_t>(n_tokens * xa_stride)) {
      scratch.resize(n_tokens * xa_stride);
    }
    uint8_t* q = scratch.data();
    auto quantize = [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t) k.quantize_row(x + t * cols, q + t * xa_stride, cols);
    };
    if (n_tokens < 8) {
      quantize(0, n_tokens);  // not worth waking the pool
    } else {
      pool.parallel_for(n_tokens, 4, quantize);
    }
    xa = q;
  }
  // Rows are handed out in grains (multiples of the tile, about four per thread and weight) from a
  // shared counter, so a descheduled thread's rows are taken over by the others; each grain is a
  // contiguous stream of one W. A row's result does not depend on its grain.
  int64_t grain_end[kMaxWeights];  // grain_end[i]: grains of weights 0..i
  int64_t grain_rows[kMaxWeights];
  int64_t num_grains = 0;
  for (size_t i = 0; i < ws.size(); ++i) {
    const int64_t per_grain = (ws[i].rows + 4 * pool.num_threads() - 1) / (4 * pool.num_threads());
    grain_rows[i] =
        std::max<int64_t>(16, (per_grain + kMaxTileRows - 1) / kMaxTileRows * kMaxTileRows);
    num_grains += (ws[i].rows + grain_rows[i] - 1) / grain_rows[i];
    grain_end[i] = num_grains;
  }
  pool.parallel_for_dynamic(num_grains, 1, [&](int64_t gb, int64_t ge) {
    for (int64_t g = gb; g < ge; ++g) {
      size_t i = 0;
      while (g >= grain_end[i]) ++i;
      const int64_t first = i == 0 ? 0 : grain_end[i - 1];
      const int64_t r = (g - first) * grain_rows[i];
      run_tiles(k, ws[i], xa, xa_stride, n_tokens, ys[i], r,
                std::min(ws[i].rows, r + grain_rows[i]));
    }
  });
}

void matmul_reference(const WeightView& w, const float* x, int64_t n_tokens, float* y) {
  check_view(w);
  const MatmulKernels& k = scalar_kernels(w.dtype);
  const uint8_t* xa = reinterpret_cast<const uint8_t*>(x);
  int64_t xa_stride = w.cols * static_cast<int64_t>(sizeof(float));
  std::vector<uint8_t> q;
  if (k.act_type != DType::kF32) {
    xa_stride = dtype_row_bytes(k.act_type, w.cols);
    q.resize(n_tokens * xa_stride);
    for (int64_t t = 0; t < n_tokens; ++t)
      k.quantize_row(x + t * w.cols, &q[t * xa_stride], w.cols);
    xa = q.data();
  }
  run_tiles(k, w, xa, xa_stride, n_tokens, y, 0, w.rows);
}

void dequantize_rows(const WeightView& w, int64_t row_begin, int64_t num_rows, float* out) {
  check_view(w);
  FS_CHECK(row_begin >= 0 && num_rows >= 0 && row_begin + num_rows <= w.rows);
  const int64_t row_bytes = dtype_row_bytes(w.dtype, w.cols);
  for (int64_t i = 0; i < num_rows; ++i) {
    const void* src = static_cast<const uint8_t*>(w.data) + (row_begin + i) * row_bytes;
    float* dst = out + i * w.cols;
    const int64_t n = w.cols;
    switch (w.dtype) {
      case DType::kF32:
        std::memcpy(dst, src, n * sizeof(float));
        break;
      case DType::kF16:
        for (int64_t c = 0; c < n; ++c) dst[c] = fp16_to_fp32(static_cast<const uint16_t*>(src)[c]);
        break;
      case DType::kBF16:
        for (int64_t c = 0; c < n; ++c) dst[c] = bf16_to_fp32(static_cast<const uint16_t*>(src)[c]);
        break;
      case DType::kQ4_0:
        dequantize_row_q4_0(static_cast<const BlockQ4_0*>(src), dst, n);
        break;
      case DType::kQ4_1:
        dequantize_row_q4_1(static_cast<const BlockQ4_1*>(src), dst, n);
        break;
      case DType::kQ8_0:
        dequantize_row_q8_0(static_cast<const BlockQ8_0*>(src), dst, n);
        break;
      case DType::kQ4_K:
        dequantize_row_q4_k(static_cast<const BlockQ4_K*>(src), dst, n);
        break;
      case DType::kQ6_K:
        dequantize_row_q6_k(static_cast<const BlockQ6_K*>(src), dst, n);
        break;
      case DType::kQ8_1:
      case DType::kQ8_K:
        FS_CHECK(false, "dequantize_rows: {} is not a weight type", dtype_name(w.dtype));
    }
  }
}

std::string matmul_kernel_info() {
  if (use_avx512_kernels())
    return "avx2+fma+f16c with avx512 tiles (vnni int8 for Q8_0/Q4_x at every batch, f16 below 256 "
           "tokens, bf16 below 128, f32 below 64; OpenBLAS sgemm for larger float/K-quant "
           "batches)";
  if (use_avx2_kernels())
    return "avx2+fma+f16c (int8 tiles for decode, OpenBLAS sgemm for prefill)";
  return "scalar (reference kernels; FASTSERVE_CPU_KERNELS=scalar or no AVX2)";
}

}  // namespace fs::cpu
