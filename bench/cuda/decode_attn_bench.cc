// The split-K decode attention kernels side by side (kernels.h DecodeKernel) at the Llama-3-8B
// head shape (32 query heads, 8 KV heads, head_dim 128, 16-token blocks): per batch size and split
// length, the time of one layer's launch_attention_decode (kernel + merge), and the KV bytes it
// must read over that time. Each (batch, split, kernel) runs `reps` launches back to back over
// `layers` layers in turn (the KV of one layer at batch 1 fits in L2; several do not), timed with
// events; the table gives the median of 5 such runs, kernels alternating.
//   decode_attn_bench [--batches 1,16,64,256] [--context 512] [--spread 96] [--split-lens 0,...]
//                     [--heads 32] [--kv-heads 8] [--head-dim 128] [--layers 8] [--mma-warps 0]
// --mma-warps: a list of warps per block of the tensor-core kernel (0 = its automatic choice, 3,
// 4), each timed as its own row.
// --split-lens: 0 = plan_decode_splits (what the model runs), else a fixed split length.
// Contexts: sequence i has context + (i * 37) % spread positions (the model bench's range).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

#include <cuda_runtime.h>

#include "backend/cuda/attention_decode_mma.h"
#include "backend/cuda/kernels.h"
#include "bench_util.h"
#include "core/dtype.h"

namespace {

using fs::bench::check;
using fs::bench::die;
using fs::cuda::bf16;
using fs::cuda::DecodeKernel;

std::vector<int> parse_list(const std::string& s) {
  std::vector<int> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) out.push_back(std::atoi(item.c_str()));
  return out;
}

const char* kernel_name(DecodeKernel k) {
  switch (k) {
    case DecodeKernel::kAuto:
      return "auto";
    case DecodeKernel::kTensorCore:
      return "tensor-core";
    case DecodeKernel::kRegister:
      return "register";
    case DecodeKernel::kGeneric:
      return "generic";
  }
  return "?";
}

}  // namespace

int main(int argc, char** argv) {
  fs::bench::set_tool_name("decode_attn_bench");
  std::vector<int> batches = {1, 16, 64, 256}, split_lens = {0}, mma_warps = {0};
  int context = 512, spread = 96, heads = 32, kv_heads = 8, head_dim = 128, layers = 8;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i], v = argv[i + 1];
    if (a == "--batches")
      batches = parse_list(v);
    else if (a == "--context")
      context = std::atoi(v.c_str());
    else if (a == "--spread")
      spread = std::max(1, std::atoi(v.c_str()));
    else if (a == "--split-lens")
      split_lens = parse_list(v);
    else if (a == "--heads")
      heads = std::atoi(v.c_str());
    else if (a == "--kv-heads")
      kv_heads = std::atoi(v.c_str());
    else if (a == "--head-dim")
      head_dim = std::atoi(v.c_str());
    else if (a == "--layers")
      layers = std::atoi(v.c_str());
    else if (a == "--mma-warps")
      mma_warps = parse_list(v);
    else
      die("unknown option " + a);
  }
  int num_sms = 0;
  check(cudaDeviceGetAttribute(&num_sms, cudaDevAttrMultiProcessorCount, 0), "SM count");
  const int group = heads / kv_heads, bs = 16;
  const fs::cuda::KvLayout kv{
      .num_layers = layers, .block_size = bs, .num_kv_heads = kv_heads, .head_dim = head_dim};
  const int max_batch = *std::max_element(batches.begin(), batches.end());
  const int max_ctx = context + spread;
  const int64_t blocks_per_seq = (max_ctx + bs - 1) / bs;
  const int64_t num_blocks = blocks_per_seq * max_batch;
  bf16* cache = nullptr;
  check(cudaMalloc(&cache, num_blocks * kv.block_elems() * 2), "KV pool");
  fs::cuda::launch_fill_uniform(cache, num_blocks * kv.block_elems(), 7, 1.0f, nullptr);
  const int64_t q_elems = int64_t{max_batch} * heads * head_dim;
  bf16 *q = nullptr, *out = nullptr, *out_ref = nullptr;
  check(cudaMalloc(&q, q_elems * 2), "q");
  check(cudaMalloc(&out, q_elems * 2), "out");
  check(cudaMalloc(&out_ref, q_elems * 2), "out");
  fs::cuda::launch_fill_uniform(q, q_elems, 8, 3.0f, nullptr);
  // Sequence i owns blocks [i * blocks_per_seq, ...) in a scattered order (stride 7 mod n).
  std::vector<int32_t> tables(num_blocks);
  for (int64_t i = 0; i < num_blocks; ++i) tables[i] = static_cast<int32_t>((i * 7) % num_blocks);
  if (num_blocks % 7 == 0) std::iota(tables.begin(), tables.end(), 0);
  int32_t* dtables = nullptr;
  check(cudaMalloc(&dtables, tables.size() * 4), "tables");
  check(cudaMemcpy(dtables, tables.data(), tables.size() * 4, cudaMemcpyHostToDevice), "tables");
  int32_t* ddescs = nullptr;
  check(cudaMalloc(&ddescs, int64_t{max_batch} * 16), "descs");
  float* partials = nullptr;
  size_t partial_bytes = 0;
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  cudaEvent_t e0, e1;
  cudaEventCreate(&e0);
  cudaEventCreate(&e1);
  // (kernel, tensor-core warps) per row; the register kernel last.
  std::vector<DecodeKernel> kernels;
  std::vector<int> warps_of;
  for (const int w : mma_warps) {
    kernels.push_back(DecodeKernel::kTensorCore);
    warps_of.push_back(w);
  }
  kernels.push_back(DecodeKernel::kRegister);
  warps_of.push_back(0);
  auto select = [&](size_t ki) {
    fs::cuda::set_decode_kernel(kernels[ki]);
    fs::cuda::set_decode_mma_warps(warps_of[ki]);
  };

  std::printf("device SMs %d; heads %d, kv heads %d, head_dim %d, %d layers cycled\n\n", num_sms,
              heads, kv_heads, head_dim, layers);
  std::printf(
      "| batch | contexts | split_len x max_splits | kernel | us per layer (median of 5) | min | "
      "KV GB/s | max abs diff vs register |\n|---|---|---|---|---|---|---|---|\n");
  for (const int b : batches) {
    for (const int split_opt : split_lens) {
      int64_t bucket = 256;
      while (bucket < max_ctx) bucket *= 2;
      fs::cuda::DecodeSplits splits{};
      if (split_opt > 0) {
        splits = {split_opt, static_cast<int32_t>((bucket + split_opt - 1) / split_opt)};
      }
      std::vector<int32_t> descs;
      double kv_bytes = 0;
      int ctx_lo = max_ctx, ctx_hi = 0;
      for (int i = 0; i < b; ++i) {
        const int ctx = context + (i * 37) % spread;
        ctx_lo = std::min(ctx_lo, ctx);
        ctx_hi = std::max(ctx_hi, ctx);
        kv_bytes += 2.0 * ctx * kv_heads * head_dim * 2;
        descs.insert(descs.end(), {i, ctx - 1, static_cast<int32_t>(i * blocks_per_seq), 0});
      }
      std::vector<double> t_ms(kernels.size() * 5);
      std::vector<float> diffs(kernels.size(), 0.0f);
      for (size_t ki = 0; ki < kernels.size(); ++ki) {
        select(ki);
        if (split_opt == 0) {
          splits = fs::cuda::plan_decode_splits(b, kv_heads, head_dim, group, bucket, num_sms);
        }
        for (int i = 0; i < b; ++i)
          descs[4 * i + 3] = (descs[4 * i + 1] + splits.split_len) / splits.split_len;
        check(cudaMemcpy(ddescs, descs.data(), descs.size() * 4, cudaMemcpyHostToDevice), "descs");
        const size_t need = sizeof(float) * b * heads * splits.max_splits * (head_dim + 2);
        if (need > partial_bytes) {
          cudaFree(partials);
          check(cudaMalloc(&partials, need), "partials");
          partial_bytes = need;
        }
        auto launch = [&](int layer, bf16* o) {
          fs::cuda::launch_attention_decode(
              q, cache, kv, layer, reinterpret_cast<const fs::cuda::DecodeDesc*>(ddescs), dtables,
              b, splits.max_splits, splits.split_len, heads, scale, partials, o, nullptr);
        };
        launch(0, kernels[ki] == DecodeKernel::kRegister ? out_ref : out);
        check(cudaDeviceSynchronize(), "warm-up");
      }
      // Outputs of layer 0 compared (both ran above).
      {
        std::vector<uint16_t> a(int64_t{b} * heads * head_dim), r(a.size());
        check(cudaMemcpy(a.data(), out, a.size() * 2, cudaMemcpyDeviceToHost), "out");
        check(cudaMemcpy(r.data(), out_ref, r.size() * 2, cudaMemcpyDeviceToHost), "out");
        float md = 0;
        for (size_t i = 0; i < a.size(); ++i) {
          const float x = fs::bf16_to_fp32(a[i]), y = fs::bf16_to_fp32(r[i]);
          md = std::isnan(x - y) ? INFINITY : std::max(md, std::abs(x - y));
        }
        diffs[0] = md;
      }
      const int reps = std::max(4, std::min(64, 2048 / b)) * layers / 4;
      for (int run = 0; run < 5; ++run) {
        for (size_t ki = 0; ki < kernels.size(); ++ki) {
          select(ki);
          if (split_opt == 0) {
            splits = fs::cuda::plan_decode_splits(b, kv_heads, head_dim, group, bucket, num_sms);
          }
          for (int i = 0; i < b; ++i)
            descs[4 * i + 3] = (descs[4 * i + 1] + splits.split_len) / splits.split_len;
          check(cudaMemcpy(ddescs, descs.data(), descs.size() * 4, cudaMemcpyHostToDevice),
                "descs");
          cudaEventRecord(e0);
          for (int r = 0; r < reps; ++r) {
            fs::cuda::launch_attention_decode(q, cache, kv, r % layers,
                                              reinterpret_cast<const fs::cuda::DecodeDesc*>(ddescs),
                                              dtables, b, splits.max_splits, splits.split_len,
                                              heads, scale, partials, out, nullptr);
          }
          cudaEventRecord(e1);
          check(cudaEventSynchronize(e1), "timed launches");
          float ms = 0;
          cudaEventElapsedTime(&ms, e0, e1);
          t_ms[ki * 5 + run] = ms / reps;
        }
      }
      for (size_t ki = 0; ki < kernels.size(); ++ki) {
        std::vector<double> v(t_ms.begin() + ki * 5, t_ms.begin() + ki * 5 + 5);
        std::sort(v.begin(), v.end());
        select(ki);
        if (split_opt == 0) {
          splits = fs::cuda::plan_decode_splits(b, kv_heads, head_dim, group, bucket, num_sms);
        }
        char name[48];
        if (kernels[ki] != DecodeKernel::kTensorCore) {
          std::snprintf(name, sizeof name, "%s", kernel_name(kernels[ki]));
        } else if (warps_of[ki] == 0) {
          std::snprintf(name, sizeof name, "%s auto", kernel_name(kernels[ki]));
        } else {
          std::snprintf(name, sizeof name, "%s %dw", kernel_name(kernels[ki]), warps_of[ki]);
        }
        std::printf("| %d | %d-%d | %s%d x %d | %s | %.1f | %.1f | %.0f | %s |\n", b, ctx_lo,
                    ctx_hi, split_opt == 0 ? "plan " : "", splits.split_len, splits.max_splits,
                    name, v[2] * 1e3, v[0] * 1e3, kv_bytes / (v[2] * 1e-3) / 1e9,
                    ki == 0 ? std::to_string(diffs[0]).c_str() : "-");
      }
      std::fflush(stdout);
    }
  }
  fs::cuda::set_decode_kernel(DecodeKernel::kAuto);
  fs::cuda::set_decode_mma_warps(0);
  check(cudaGetLastError(), "launches");
  cudaFree(cache);
  cudaFree(q);
  cudaFree(out);
  cudaFree(out_ref);
  cudaFree(dtables);
  cudaFree(ddescs);
  cudaFree(partials);
  return 0;
}
