// The CUDA model runtime at a real shape with dummy bf16 weights made on the device (Llama-3-8B by
// default): measured HBM bandwidth (device-to-device copy) and bf16 cuBLAS peak, decode tokens/s at
// several batch sizes against the HBM roofline (weight + KV bytes per step / bandwidth), and
// prefill TFLOP/s of one long prompt against the GEMM peak. Prints markdown tables.
// Decode steps are timed eagerly, replayed from CUDA graphs (CudaModel::set_cuda_graphs), and from
// graphs with programmatic dependent launch (set_programmatic_launch).
//   model_bench [--shape llama3-8b|opt-13b] [--model FILE.gguf] [--batches 1,16,64,256]
//               [--context 512] [--steps 32] [--prefill 2048] [--swap-mib 0]
//               [--decode-kernel auto|tensor-core|register|generic] [--mma-warps 0|3|4]
//               [--fused-gemv MASK]
// --fused-gemv: which kernels of decode batches run inside the GEMVs (kernels.h set_fused_gemv, a
// mask: 1 the norms, 2 SwiGLU in the down GEMV, 4 SwiGLU in the gate/up GEMV (with 1); default 5,
// 0 none; A/B runs). --prefill 0 skips the prefill benchmark.
// --decode-kernel: the split-K decode attention kernel (kernels.h DecodeKernel; A/B runs);
// --mma-warps: warps per block of the tensor-core one (0: its automatic choice).
// --swap-mib M: also time each batch's graph + PDL decode steps while the KV swap engine moves M MiB
// of 16-token blocks each way per step (offloads and uploads of other blocks, enqueued after each
// step and overlapped with the next on the copy streams): the issue's "iteration time under swaps
// <= 1.05x of the same batch without".
// --model loads real weights (any dtype the loader reads; a BF16 GGUF travels as is) instead of
// dummy ones: the peer comparison (scripts/device/peers.sh) runs llama.cpp on the same file.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "bench_util.h"
#include "backend/cuda/attention_decode_mma.h"
#include "backend/cuda/cuda_model.h"
#include "backend/cuda/device_info.h"
#include "backend/cuda/kv_swap.h"
#include "model/model_weights.h"

namespace {

using fs::bench::check;
using fs::bench::die;
using fs::bench::now_s;

using fs::ForwardSeq;
using fs::ModelConfig;
using fs::cuda::CudaModel;
using fs::cuda::KvPoolView;


ModelConfig shape_config(const std::string& shape) {
  ModelConfig c;
  if (shape == "llama3-8b") {
    c.arch = fs::ModelArch::kLlama;
    c.arch_name = "llama";
    c.vocab_size = 128256;
    c.hidden_size = 4096;
    c.intermediate_size = 14336;
    c.num_layers = 32;
    c.num_heads = 32;
    c.num_kv_heads = 8;
    c.head_dim = 128;
    c.max_position_embeddings = 8192;
    c.rope_theta = 500000;
    c.norm_eps = 1e-5;
  } else if (shape == "opt-13b") {
    c.arch = fs::ModelArch::kOpt;
    c.arch_name = "opt";
    c.vocab_size = 50272;
    c.hidden_size = 5120;
    c.intermediate_size = 20480;
    c.num_layers = 40;
    c.num_heads = 40;
    c.num_kv_heads = 40;
    c.head_dim = 128;
    c.max_position_embeddings = 2048;
    c.norm = fs::NormKind::kLayerNorm;
    c.activation = fs::Activation::kRelu;
    c.position = fs::PositionKind::kLearned;
    c.learned_pos_offset = 2;
    c.qkv_bias = c.attn_out_bias = c.mlp_bias = true;
    c.tie_word_embeddings = true;
  } else {
    die("unknown --shape " + shape);
  }
  return c;
}

// Device-to-device copy bandwidth, bytes read + written per second.
double measure_d2d_bytes_per_s() {
  const size_t bytes = size_t{4} << 30;
  void *a = nullptr, *b = nullptr;
  check(cudaMalloc(&a, bytes), "cudaMalloc");
  check(cudaMalloc(&b, bytes), "cudaMalloc");
  cudaEvent_t e0, e1;
  cudaEventCreate(&e0);
  cudaEventCreate(&e1);
  for (int i = 0; i < 2; ++i) check(cudaMemcpy(b, a, bytes, cudaMemcpyDeviceToDevice), "copy");
  const int reps = 10;
  cudaEventRecord(e0);
  for (int i = 0; i < reps; ++i) cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice);
  cudaEventRecord(e1);
  check(cudaEventSynchronize(e1), "sync");
  float ms = 0;
  cudaEventElapsedTime(&ms, e0, e1);
  cudaFree(a);
  cudaFree(b);
  return 2.0 * bytes * reps / (ms * 1e-3);
}

// bf16 GEMM FLOP/s (f32 accumulate) of an m x n x k product through cuBLAS.
double measure_gemm_flops(int m, int n, int k) {
  void *a, *b, *c;
  check(cudaMalloc(&a, size_t{2} * m * k), "cudaMalloc");
  check(cudaMalloc(&b, size_t{2} * k * n), "cudaMalloc");
  check(cudaMalloc(&c, size_t{2} * m * n), "cudaMalloc");
  cudaMemset(a, 0x3c, size_t{2} * m * k);  // ~0.01-ish bf16 values, not zeros
  cudaMemset(b, 0x3c, size_t{2} * k * n);
  cublasHandle_t h;
  cublasCreate(&h);
  const float alpha = 1, beta = 0;
  auto run = [&] {
    cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &alpha, a, CUDA_R_16BF, k, b, CUDA_R_16BF, k,
                 &beta, c, CUDA_R_16BF, m, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
  };
  for (int i = 0; i < 3; ++i) run();
  cudaEvent_t e0, e1;
  cudaEventCreate(&e0);
  cudaEventCreate(&e1);
  const int reps = 10;
  cudaEventRecord(e0);
  for (int i = 0; i < reps; ++i) run();
  cudaEventRecord(e1);
  check(cudaEventSynchronize(e1), "gemm");
  float ms = 0;
  cudaEventElapsedTime(&ms, e0, e1);
  cublasDestroy(h);
  cudaFree(a);
  cudaFree(b);
  cudaFree(c);
  return 2.0 * m * n * k * reps / (ms * 1e-3);
}

std::string fmt_phase(int batch, const std::string& name, double ms) {
  char buf[160];
  std::snprintf(buf, sizeof(buf), "| %d | %s | %.3f |\n", batch, name.c_str(), ms);
  return buf;
}

std::vector<int> parse_list(const std::string& s) {
  std::vector<int> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) out.push_back(std::atoi(item.c_str()));
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  fs::bench::set_tool_name("model_bench");
  std::string shape = "llama3-8b", model_path;
  std::vector<int> batches = {1, 16, 64, 256};
  int context = 512, steps = 32, prefill = 2048, swap_mib = 0;
  std::string decode_kernel = "auto";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i], v = argv[i + 1];
    if (a == "--shape")
      shape = v;
    else if (a == "--model")
      model_path = v;
    else if (a == "--batches")
      batches = parse_list(v);
    else if (a == "--context")
      context = std::atoi(v.c_str());
    else if (a == "--steps")
      steps = std::atoi(v.c_str());
    else if (a == "--prefill")
      prefill = std::atoi(v.c_str());
    else if (a == "--swap-mib")
      swap_mib = std::atoi(v.c_str());
    else if (a == "--decode-kernel")
      decode_kernel = v;
    else if (a == "--fused-gemv")
      fs::cuda::set_fused_gemv(std::atoi(v.c_str()));
    else if (a == "--mma-warps")
      fs::cuda::set_decode_mma_warps(std::atoi(v.c_str()));
    else
      die("unknown option " + a);
  }
  if (decode_kernel == "auto")
    fs::cuda::set_decode_kernel(fs::cuda::DecodeKernel::kAuto);
  else if (decode_kernel == "tensor-core")
    fs::cuda::set_decode_kernel(fs::cuda::DecodeKernel::kTensorCore);
  else if (decode_kernel == "register")
    fs::cuda::set_decode_kernel(fs::cuda::DecodeKernel::kRegister);
  else if (decode_kernel == "generic")
    fs::cuda::set_decode_kernel(fs::cuda::DecodeKernel::kGeneric);
  else
    die("unknown --decode-kernel " + decode_kernel);
  const std::vector<fs::cuda::DeviceInfo> devices = fs::cuda::list_devices();
  if (devices.empty()) die("no CUDA device");
  std::printf("device: %s; decode kernel: %s; fused gemv: %d\n",
              fs::cuda::describe(devices[0]).c_str(), decode_kernel.c_str(),
              fs::cuda::fused_gemv());

  const double bw = measure_d2d_bytes_per_s();
  const double peak = measure_gemm_flops(8192, 8192, 8192);
  std::printf(
      "measured: device-to-device copy %.2f TB/s (read + write); bf16 cuBLAS 8192^3 %.0f "
      "TFLOP/s\n\n",
      bw / 1e12, peak / 1e12);

  const double t0 = now_s();
  std::unique_ptr<CudaModel> model;
  if (model_path.empty()) {
    fs::Result<std::unique_ptr<CudaModel>> made = CudaModel::dummy(shape_config(shape), 1);
    check(made.status());
    model = std::move(*made);
    std::printf("%s: dummy bf16 weights %.2f GB made on the device in %.2f s\n\n", shape.c_str(),
                model->weight_bytes() / 1e9, now_s() - t0);
  } else {
    fs::Result<fs::LoadedModel> loaded = fs::load_model(model_path);
    check(loaded.status());
    fs::Result<std::unique_ptr<CudaModel>> made = CudaModel::upload(*loaded);
    check(made.status());
    model = std::move(*made);
    std::printf("%s: %.2f GB of bf16 weights loaded and uploaded in %.2f s\n\n", model_path.c_str(),
                model->weight_bytes() / 1e9, now_s() - t0);
  }
  CudaModel& m = *model;
  const ModelConfig c = m.config();

  const int64_t bs = 16;
  const int max_batch = *std::max_element(batches.begin(), batches.end());
  const int64_t blocks_per_seq = (std::max(context + 4 * steps + 16, prefill) + bs - 1) / bs;
  const int64_t num_blocks = blocks_per_seq * std::max(max_batch, 1);
  const fs::cuda::KvLayout layout = m.kv_layout(bs);
  void* kv_mem = nullptr;
  check(cudaMalloc(&kv_mem, num_blocks * layout.block_elems() * 2), "KV pool");
  check(cudaMemset(kv_mem, 0, num_blocks * layout.block_elems() * 2), "KV pool");
  const KvPoolView pool{static_cast<fs::cuda::bf16*>(kv_mem), num_blocks, layout};
  const double kv_bytes_per_token = 2.0 * c.num_layers * c.num_kv_heads * c.head_dim * 2;

  // Swap traffic beside the forward: its own arena (blocks of the same size), n_swap blocks
  // offloaded (device i -> host i) and n_swap uploaded (host n_swap + i -> device n_swap + i) per step.
  const int64_t swap_block_bytes = layout.block_elems() * 2;
  const int64_t n_swap = (int64_t{swap_mib} << 20) / swap_block_bytes;
  std::unique_ptr<fs::cuda::KvArena> swap_arena;
  std::unique_ptr<fs::cuda::SwapEngine> swapper;
  std::vector<fs::BlockCopy> swap_out, swap_in;
  if (n_swap > 0) {
    auto arena = fs::cuda::KvArena::create(swap_block_bytes, 2 * n_swap, 2 * n_swap);
    check(arena.status());
    swap_arena = std::move(*arena);
    auto engine = fs::cuda::SwapEngine::create(*swap_arena);
    check(engine.status());
    swapper = std::move(*engine);
    for (int32_t i = 0; i < n_swap; ++i) {
      swap_out.push_back({i, i});
      swap_in.push_back({static_cast<int32_t>(n_swap + i), static_cast<int32_t>(n_swap + i)});
    }
  }
  std::vector<std::string> swap_rows;

  // Decode: every sequence has `context` cached tokens (the pool's contents: the cost is the same)
  // and decodes `steps` tokens, greedy on the GPU, one forward_greedy (with its host sync) per
  // step; first eagerly, then with CUDA graphs (the same context bucket: same kernels).
  std::printf(
      "| batch | context | eager step ms | graph step ms | graph + PDL step ms | tokens/s | HBM "
      "bytes/step (weights + KV) | roofline ms | of roofline | step ms, back-to-back (GPU) | of "
      "roofline |\n|---|---|---|---|---|---|---|---|---|---|---|\n");
  std::vector<std::string> profiles;
  for (int b : batches) {
    std::vector<std::vector<int32_t>> tables(b), tokens(b, std::vector<int32_t>{1});
    for (int i = 0; i < b; ++i) {
      tables[i].resize(blocks_per_seq);
      std::iota(tables[i].begin(), tables[i].end(), static_cast<int32_t>(i * blocks_per_seq));
    }
    std::vector<ForwardSeq> seqs(b);
    auto set_seqs = [&](int s) {
      for (int i = 0; i < b; ++i) seqs[i] = ForwardSeq{tokens[i], context + s, tables[i], false};
    };
    auto step = [&](int s) {
      set_seqs(s);
      fs::Result<std::span<const int32_t>> r = m.forward_greedy(seqs, pool);
      check(r.status());
      for (int i = 0; i < b; ++i) tokens[i][0] = (*r)[i];
    };
    // Host-synced steps from `first`: seconds per step (the first two are warm-up / capture).
    auto timed = [&](int first) {
      step(first);
      step(first + 1);
      const double start = now_s();
      for (int s = first + 2; s < first + steps; ++s) step(s);
      return (now_s() - start) / (steps - 2);
    };
    // Eager, graphs, graphs with programmatic dependent launch (each kernel starts while the one
    // before it finishes): the same context bucket, so the same kernels.
    fs::cuda::set_programmatic_launch(false);
    m.set_cuda_graphs(false);
    const double eager_step = timed(0);
    m.set_cuda_graphs(true);
    const double graph_step = timed(steps);
    fs::cuda::set_programmatic_launch(true);
    m.set_cuda_graphs(false);  // drop the graphs captured without PDL
    m.set_cuda_graphs(true);
    const double pdl_step = timed(2 * steps);
    if (swapper) {
      // Graph + PDL steps again, now with a swap call enqueued after each (overlapping the next).
      auto swapped_step = [&](int s) {
        step(s);
        check(swapper->enqueue(swap_out, swap_in, m.stream()));
      };
      const double base_step = timed(3 * steps);  // no swaps, the same contexts
      swapped_step(3 * steps);
      swapped_step(3 * steps + 1);
      const double start = now_s();
      for (int s = 3 * steps + 2; s < 4 * steps; ++s) swapped_step(s);
      check(swapper->synchronize());
      const double swap_step = (now_s() - start) / (steps - 2);
      const double moved = 2.0 * n_swap * swap_block_bytes;
      char row[256];
      std::snprintf(row, sizeof row, "| %d | %.3f | %.3f | %.3fx | %.0f MiB | %.1f GB/s |\n", b,
                    base_step * 1e3, swap_step * 1e3, swap_step / base_step, moved / (1 << 20),
                    moved / swap_step / 1e9);
      swap_rows.push_back(row);
    }
    // The same steps enqueued back to back (no host sync in between): GPU time per step.
    const double pstart = now_s();
    for (int s = 2 * steps + 2; s < 3 * steps; ++s) {
      set_seqs(s);
      check(m.enqueue_forward(seqs, pool).status());
    }
    check(cudaStreamSynchronize(m.stream()), "sync");
    const double gpu_step = (now_s() - pstart) / (steps - 2);
    // Where the GPU time goes (eager, CUDA events between phases; adds a little overhead).
    m.set_profiling(true);
    const int prof_steps = 4;
    for (int s = 0; s < prof_steps; ++s) step(3 * steps + s);
    for (const auto& [name, ms] : m.phase_times_ms()) {
      profiles.push_back(fmt_phase(b, name, ms / prof_steps));
    }
    m.set_profiling(false);
    const double bytes =
        static_cast<double>(m.weight_bytes()) + kv_bytes_per_token * b * (context + 2 * steps);
    const double roof = bytes / bw;
    std::printf(
        "| %d | %d | %.3f | %.3f | %.3f | %.0f | %.2f GB | %.3f | %.0f%% | %.3f | %.0f%% |\n", b,
        context, eager_step * 1e3, graph_step * 1e3, pdl_step * 1e3, b / pdl_step, bytes / 1e9,
        roof * 1e3, 100.0 * roof / pdl_step, gpu_step * 1e3, 100.0 * roof / gpu_step);
    std::fflush(stdout);
  }
  if (!swap_rows.empty()) {
    std::printf(
        "\nDecode steps (graph + PDL) with the swap engine moving %d MiB each way per step:\n\n"
        "| batch | step ms | step ms with swaps | ratio | moved per step | swap rate |\n"
        "|---|---|---|---|---|---|\n",
        swap_mib);
    for (const std::string& row : swap_rows) std::printf("%s", row.c_str());
  }
  std::printf(
      "\nGPU time per decode step by phase (ms):\n\n| batch | phase | ms |\n|---|---|---|\n");
  for (const std::string& line : profiles) std::printf("%s", line.c_str());

  // Prefill: one prompt of `prefill` tokens, logits of its last token.
  if (prefill > 0) {
    std::vector<int32_t> prompt(prefill);
    for (int i = 0; i < prefill; ++i) prompt[i] = (i * 7919) % static_cast<int>(c.vocab_size);
    std::vector<int32_t> table(blocks_per_seq);
    std::iota(table.begin(), table.end(), 0);
    const ForwardSeq seq{prompt, 0, table, false};
    for (int i = 0; i < 2; ++i) check(m.forward(std::span(&seq, 1), pool).status());
    const int reps = 5;
    const double start = now_s();
    for (int i = 0; i < reps; ++i) check(m.forward(std::span(&seq, 1), pool).status());
    const double t = (now_s() - start) / reps;
    m.set_profiling(true);
    check(m.forward(std::span(&seq, 1), pool).status());
    std::printf("\nGPU time of the %d-token prefill by phase (ms):\n\n| phase | ms |\n|---|---|\n",
                prefill);
    for (const auto& [name, ms] : m.phase_times_ms())
      std::printf("| %s | %.2f |\n", name.c_str(), ms);
    m.set_profiling(false);
    const double qd = c.num_heads * c.head_dim, kvd = c.num_kv_heads * c.head_dim;
    const double up = c.activation == fs::Activation::kSiluGated ? 2.0 * c.intermediate_size
                                                                 : c.intermediate_size;
    const double layer_params = c.hidden_size * (qd + 2 * kvd) + qd * c.hidden_size +
                                c.hidden_size * (up + c.intermediate_size);
    const double gemm_flops =
        2.0 * prefill * layer_params * c.num_layers + 2.0 * c.hidden_size * c.vocab_size;
    // Causal attention: QK^T and PV over the lower triangle.
    const double attn_flops =
        2.0 * 2.0 * c.num_heads * c.head_dim * (prefill * (prefill + 1) / 2.0) * c.num_layers;
    const double flops = gemm_flops + attn_flops;
    std::printf(
        "\n| prefill tokens | time ms | tokens/s | TFLOP/s (GEMM + attention) | of cuBLAS "
        "peak |\n|---|---|---|---|---|\n| %d | %.2f | %.0f | %.0f | %.0f%% |\n",
        prefill, t * 1e3, prefill / t, flops / t / 1e12, 100.0 * flops / t / peak);
  }
  cudaFree(kv_mem);
  return 0;
}
