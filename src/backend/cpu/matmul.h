// Weight matrix times activations on the CPU: the GEMV/GEMM of every linear layer.
//
// Weight types: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q6_K in ggml's bit-exact block layouts (as
// stored in GGUF). For quantized weights and small batches (decode) the activations are quantized
// per block (Q8_0 for Q8_0/Q4_0, Q8_1 for Q4_1, Q8_K for Q4_K/Q6_K) and the dot products run in
// integers, as llama.cpp does; large batches (prefill) dequantize the weights per row block and use
// OpenBLAS sgemm on unquantized activations. docs/KERNELS.md gives the error bound of each path
// against exact dot products.
//
// Kernels: an AVX2+FMA+F16C path chosen at run time when the CPU has it, and a scalar reference
// path (always available; forced with FASTSERVE_CPU_KERNELS=scalar, read once in matmul_scalar.cc).
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "core/dtype.h"
#include "core/thread_pool.h"

namespace fs::cpu {

// A weight matrix [rows, cols], row-major; quantized types are blocked along cols (ggml layout, as
// in GGUF). cols must be a multiple of dtype_block_size(dtype). Non-owning.
struct WeightView {
  DType dtype;
  int64_t rows;
  int64_t cols;
  const void* data;
};

// y[t, r] = sum_c W[r, c] * x[t, c] for t < n_tokens, r < w.rows.
// x: [n_tokens, cols] f32 contiguous; y: [n_tokens, rows] f32 contiguous; y must not alias x.
// Threaded over `pool` (the caller must not be inside pool.run). Steady-state decode calls allocate
// nothing (scratch for quantized activations is reused). Not reentrant on the same pool.
void matmul(const WeightView& w, const float* x, int64_t n_tokens, float* y, ThreadPool& pool);

// ys[i] = x W_i^T for several weights of one dtype and one cols (fused Q/K/V, gate/up): the
// activations are quantized once and all rows of all weights are shared out in one pass over the
// pool. Each ys[i] is bit-identical to matmul(ws[i], x, n_tokens, ys[i], pool). At most 4 weights.
void matmul_multi(std::span<const WeightView> ws, const float* x, int64_t n_tokens,
                  std::span<float* const> ys, ThreadPool& pool);

// Same contract, computed by the scalar reference kernels on the calling thread (tests, debugging).
void matmul_reference(const WeightView& w, const float* x, int64_t n_tokens, float* y);

// Dequantizes rows [row_begin, row_begin + num_rows) into out [num_rows, cols] f32 (embedding
// lookup, tests). Single-threaded; bit-exact with ggml's dequantization.
void dequantize_rows(const WeightView& w, int64_t row_begin, int64_t num_rows, float* out);

// Which kernels matmul() uses on this machine, for logs: e.g. "avx2+fma+f16c" or "scalar (forced)".
std::string matmul_kernel_info();

}  // namespace fs::cpu
