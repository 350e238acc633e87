// KV swap bandwidth on the GPU: batched offload (D2H) / upload (H2D) of --total-mib of scattered
// blocks through fs::cuda::SwapEngine, per method, against one large pinned cudaMemcpy of the same
// size (the bandwidth ceiling). Block sizes: 2 MiB (our whole-block layout on a Llama-3-8B shape:
// 32 layers x K,V x 16 tokens x 8 kv heads x 128 x bf16) and 64 KiB (one layer of that block, the
// per-layer layout of vLLM). Prints a markdown table.
//   swap_bench [--total-mib 1024] [--repeats 7]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include <cuda_runtime.h>

#include "bench_util.h"
#include "backend/cuda/device_info.h"
#include "backend/cuda/kv_swap.h"

namespace {

using fs::bench::check;
using fs::bench::die;
using fs::bench::now_s;

using fs::BlockCopy;
using fs::cuda::KvArena;
using fs::cuda::SwapEngine;
using fs::cuda::SwapMethod;
using fs::cuda::SwapOptions;


double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// GB/s (1e9) of one large pinned copy per direction, and of both directions at once.
struct Ceiling {
  double h2d = 0, d2h = 0, both = 0;
};

Ceiling measure_ceiling(KvArena& arena, int64_t bytes, int repeats) {
  cudaStream_t a, b;
  check(cudaStreamCreateWithFlags(&a, cudaStreamNonBlocking), "stream");
  check(cudaStreamCreateWithFlags(&b, cudaStreamNonBlocking), "stream");
  std::vector<double> h2d, d2h, both;
  uint8_t* dev = arena.device_base();
  uint8_t* host = arena.host_base();
  for (int r = 0; r < repeats; ++r) {
    double t = now_s();
    check(cudaMemcpyAsync(dev, host, bytes, cudaMemcpyHostToDevice, a), "h2d");
    check(cudaStreamSynchronize(a), "sync");
    h2d.push_back(bytes / (now_s() - t) / 1e9);
    t = now_s();
    check(cudaMemcpyAsync(host, dev, bytes, cudaMemcpyDeviceToHost, a), "d2h");
    check(cudaStreamSynchronize(a), "sync");
    d2h.push_back(bytes / (now_s() - t) / 1e9);
    t = now_s();
    check(cudaMemcpyAsync(dev, host, bytes / 2, cudaMemcpyHostToDevice, a), "h2d");
    check(cudaMemcpyAsync(host + bytes, dev + bytes, bytes / 2, cudaMemcpyDeviceToHost, b), "d2h");
    check(cudaStreamSynchronize(a), "sync");
    check(cudaStreamSynchronize(b), "sync");
    both.push_back(bytes / (now_s() - t) / 1e9);
  }
  cudaStreamDestroy(a);
  cudaStreamDestroy(b);
  return {median(h2d), median(d2h), median(both)};
}

struct Result {
  double offload = 0, upload = 0, both = 0;  // GB/s
};

Result measure_method(KvArena& arena, const SwapOptions& options, int64_t n, int repeats,
                      uint32_t seed) {
  fs::Result<std::unique_ptr<SwapEngine>> created = SwapEngine::create(arena, options);
  check(created.status());
  SwapEngine& engine = **created;
  cudaStream_t compute;
  check(cudaStreamCreateWithFlags(&compute, cudaStreamNonBlocking), "stream");
  std::mt19937 rng(seed);
  std::vector<int32_t> dev(arena.num_device_blocks()), host(arena.num_host_blocks());
  std::iota(dev.begin(), dev.end(), 0);
  std::iota(host.begin(), host.end(), 0);
  std::shuffle(dev.begin(), dev.end(), rng);
  std::shuffle(host.begin(), host.end(), rng);
  // n scattered blocks each way: offload dev[i] -> host[i], upload host[i] -> dev[n + i].
  std::vector<BlockCopy> offloads, uploads, half_off, half_up;
  for (int64_t i = 0; i < n; ++i) {
    offloads.push_back({dev[i], host[i]});
    uploads.push_back({host[i], dev[n + i]});
  }
  // Both directions at once: n/2 offloads and n/2 uploads touching disjoint blocks.
  for (int64_t i = 0; i < n / 2; ++i) {
    half_off.push_back({dev[i], host[n + i]});
    half_up.push_back({host[i], dev[n + i]});
  }
  const double bytes = static_cast<double>(n) * arena.block_bytes();
  const auto time_one = [&](std::span<const BlockCopy> off, std::span<const BlockCopy> up) {
    check(engine.synchronize());
    const double t = now_s();
    check(engine.enqueue(off, up, compute));
    check(engine.synchronize());
    return bytes / (now_s() - t) / 1e9;
  };
  std::vector<double> o, u, b;
  time_one(offloads, {});  // warm-up
  for (int r = 0; r < repeats; ++r) {
    o.push_back(time_one(offloads, {}));
    u.push_back(time_one({}, uploads));
    b.push_back(time_one(half_off, half_up));
  }
  cudaStreamDestroy(compute);
  return {median(o), median(u), median(b)};
}

}  // namespace

int main(int argc, char** argv) {
  fs::bench::set_tool_name("swap_bench");
  int64_t total_mib = 1024;
  int repeats = 7;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--total-mib") == 0)
      total_mib = std::atoll(argv[i + 1]);
    else if (std::strcmp(argv[i], "--repeats") == 0)
      repeats = std::atoi(argv[i + 1]);
    else
      die(std::string("unknown flag ") + argv[i]);
  }
  const std::vector<fs::cuda::DeviceInfo> devices = fs::cuda::list_devices();
  if (devices.empty()) die("no CUDA device");
  std::printf("device: %s\n", fs::cuda::describe(devices[0]).c_str());
  const int64_t total = total_mib << 20;
  std::printf(
      "moving %lld MiB of scattered blocks per direction; GB/s = 1e9 B/s, median of %d; %% of the "
      "pinned single-copy ceiling\n\n",
      static_cast<long long>(total_mib), repeats);
  std::printf("| block | method | offload D2H GB/s | upload H2D GB/s | both at once GB/s |\n");
  std::printf("|---|---|---|---|---|\n");
  for (const int64_t block_bytes : {int64_t{2} << 20, int64_t{64} << 10}) {
    const int64_t n = total / block_bytes;
    // Twice the moved size in each pool, so blocks are scattered over a larger range.
    fs::Result<std::unique_ptr<KvArena>> arena = KvArena::create(block_bytes, 2 * n, 2 * n);
    check(arena.status());
    const Ceiling c = measure_ceiling(**arena, total, repeats);
    const std::string block = block_bytes >= (1 << 20) ? std::to_string(block_bytes >> 20) + " MiB"
                                                       : std::to_string(block_bytes >> 10) + " KiB";
    std::printf("| %s | one pinned cudaMemcpy (ceiling) | %.1f | %.1f | %.1f |\n", block.c_str(),
                c.d2h, c.h2d, c.both);
    struct Variant {
      SwapMethod method;
      int ctas;
      const char* name;
    };
    for (const Variant& v :
         {Variant{SwapMethod::kMemcpyPerRun, 0, "cudaMemcpyAsync per block"},
          Variant{SwapMethod::kBatchedMemcpy, 0, "cudaMemcpyBatchAsync (default)"},
          Variant{SwapMethod::kKernel, 16, "gather/scatter kernel, 16 CTAs"},
          Variant{SwapMethod::kKernel, 64, "gather/scatter kernel, 64 CTAs"},
          Variant{SwapMethod::kKernel, 132, "gather/scatter kernel, 132 CTAs"}}) {
      SwapOptions options;
      options.method = v.method;
      if (v.ctas > 0) options.kernel_ctas = v.ctas;
      const Result r = measure_method(**arena, options, n, repeats, 42);
      std::printf("| %s | %s | %.1f (%.0f%%) | %.1f (%.0f%%) | %.1f (%.0f%%) |\n", block.c_str(),
                  v.name, r.offload, 100 * r.offload / c.d2h, r.upload, 100 * r.upload / c.h2d,
                  r.both, 100 * r.both / c.both);
      std::fflush(stdout);
    }
  }
  return 0;
}
