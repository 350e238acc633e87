// Microbenchmark of fs::cpu::matmul over the SmolLM2-135M shapes, plus the machine's memory
// bandwidth (read-only and stream-triad loops, 1 and N threads) as the roofline for decode.
//
//   build-kernels/bench/matmul_bench [--threads N] [--types Q8_0,Q4_1,...] [--tokens 1,8,32,512]
//                                    [--min-ms 200] [--no-stream] [--hot] [--model Q4_1]
//
// --model TYPE times all weight matmuls of a SmolLM2-135M forward pass (layers in TYPE: F16, Q8_0,
// Q4_1 or Q4_0; LM head Q8_0) for each --tokens count.
//
// Weights are random valid blocks. Decode-sized runs cycle through enough copies of the matrix to
// exceed the L3 cache (64 MiB in all), so GB/s is from DRAM, as in a real forward pass whose
// weights do not fit in cache. Each case reports the best of repeated timings (others share the
// machine).
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "backend/cpu/matmul.h"
#include "core/dtype.h"
#include "core/thread_pool.h"

namespace {

using Clock = std::chrono::steady_clock;
using fs::DType;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Best time of fn over repetitions lasting at least min_s in all (and at least 3 runs).
template <typename F>
double best_time(double min_s, F&& fn) {
  fn();  // warm up
  double best = 1e30, total = 0.0;
  for (int i = 0; i < 3 || total < min_s; ++i) {
    const auto t0 = Clock::now();
    fn();
    const double s = seconds_since(t0);
    best = std::min(best, s);
    total += s;
  }
  return best;
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');) out.push_back(item);
  return out;
}

std::vector<uint8_t> random_weights(DType t, int64_t rows, int64_t cols, std::mt19937& rng) {
  std::vector<uint8_t> data(rows * fs::dtype_row_bytes(t, cols));
  std::uniform_int_distribution<int> byte(0, 255);
  for (auto& b : data) b = static_cast<uint8_t>(byte(rng));
  if (t == DType::kF32 || t == DType::kF16 || t == DType::kBF16) {
    // Plain floats in [-1, 1) so no NaN/Inf slows anything down.
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    const int64_t n = rows * cols;
    for (int64_t i = 0; i < n; ++i) {
      const float v = u(rng);
      if (t == DType::kF32) {
        std::memcpy(&data[4 * i], &v, 4);
      } else {
        const uint16_t h = t == DType::kF16 ? fs::fp32_to_fp16(v) : fs::fp32_to_bf16(v);
        std::memcpy(&data[2 * i], &h, 2);
      }
    }
    return data;
  }
  const int64_t block_bytes = fs::dtype_block_bytes(t);
  const uint16_t scale = fs::fp32_to_fp16(0.01f);
  const int64_t scale_offset = t == DType::kQ6_K ? 208 : 0;  // keep scales finite
  for (size_t off = 0; off < data.size(); off += block_bytes) {
    std::memcpy(&data[off + scale_offset], &scale, 2);
    if (t == DType::kQ4_1 || t == DType::kQ4_K) std::memcpy(&data[off + 2], &scale, 2);
  }
  return data;
}

void bench_memory(fs::ThreadPool& pool, double min_s) {
  const int64_t n = int64_t{16} << 20;  // floats per array: 64 MiB each
  std::vector<float> a(n, 1.0f), b(n, 2.0f), c(n, 3.0f);
  std::vector<uint64_t> sink(64);
  const auto* words = reinterpret_cast<const uint64_t*>(b.data());
  const double read_s = best_time(min_s, [&] {
    pool.parallel_for(n / 2, 4096, [&](int64_t lo, int64_t hi) {
      uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      for (int64_t i = lo; i < hi; i += 4) {  // chunks are multiples of the grain, 4096
        s0 += words[i];
        s1 += words[i + 1];
        s2 += words[i + 2];
        s3 += words[i + 3];
      }
      sink[(lo * 7) % 64] += s0 + s1 + s2 + s3;
    });
  });
  const double triad_s = best_time(min_s, [&] {
    pool.parallel_for(n, 4096, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) a[i] = b[i] + 3.0f * c[i];
    });
  });
  std::printf("memory  threads=%d  read %.1f GB/s  triad %.1f GB/s (3 x 64 MiB arrays)%s\n",
              pool.num_threads(), n * 4.0 / read_s / 1e9, 3.0 * n * 4.0 / triad_s / 1e9,
              sink[0] == 42 ? " " : "");
}

// All the weight matmuls of one SmolLM2-135M forward pass over n tokens, with the layout of the
// released Q4_1 GGUF: 30 layers of q, k, v, o, gate, up, down in `layer_type`, and the tied 49152 x
// 576 embedding as LM head in Q8_0 (its logits for the last token only when n > 1, as an engine
// does). 96 MiB of weights, more than the L3, so decode streams them from DRAM like the real thing.
void bench_model(fs::ThreadPool& pool, DType layer_type, const std::vector<int64_t>& token_counts,
                 double min_s, std::mt19937& rng) {
  struct Layer {
    int64_t rows, cols;
    std::vector<uint8_t> data;
  };
  std::vector<Layer> layers;
  int64_t bytes = 0;
  for (int l = 0; l < 30; ++l) {
    for (auto [rows, cols] : std::vector<std::pair<int64_t, int64_t>>{{576, 576},
                                                                      {192, 576},
                                                                      {192, 576},
                                                                      {576, 576},
                                                                      {1536, 576},
                                                                      {1536, 576},
                                                                      {576, 1536}}) {
      layers.push_back({rows, cols, random_weights(layer_type, rows, cols, rng)});
      bytes += static_cast<int64_t>(layers.back().data.size());
    }
  }
  const std::vector<uint8_t> head = random_weights(DType::kQ8_0, 49152, 576, rng);
  bytes += static_cast<int64_t>(head.size());
  for (int64_t n : token_counts) {
    std::vector<float> x(n * 1536), y(std::max<int64_t>(n * 1536, 49152));
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    for (auto& v : x) v = u(rng);
    auto forward = [&] {
      for (const Layer& l : layers) {
        fs::cpu::matmul({layer_type, l.rows, l.cols, l.data.data()}, x.data(), n, y.data(), pool);
      }
      const int64_t last = (n - 1) * 576;
      fs::cpu::matmul({DType::kQ8_0, 49152, 576, head.data()}, x.data() + last, 1, y.data(), pool);
    };
    const double sec = best_time(min_s, forward);
    // On a shared machine the wall time includes time the process was not running. CPU time of the
    // whole process over a few passes, relative to their wall time, gives the share it got; with
    // one thread, cpu_s per pass is the uncontended estimate (pool workers spin, so not for > 1).
    timespec c0, c1;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
    const auto w0 = Clock::now();
    int passes = 0;
    while (passes < 3 || seconds_since(w0) < min_s) {
      forward();
      ++passes;
    }
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
    const double cpu_s = (c1.tv_sec - c0.tv_sec) + (c1.tv_nsec - c0.tv_nsec) * 1e-9;
    const double cpu_share = cpu_s / seconds_since(w0);
    const double cpu_per_pass = cpu_s / passes;
    const double flops = 2.0 * (static_cast<double>(bytes - static_cast<int64_t>(head.size())) /
                                    fs::dtype_row_bytes(layer_type, 576) * 576 * n +
                                49152.0 * 576);
    std::printf(
        "model   SmolLM2-135M %s+Q8_0 head  threads=%d  tokens=%4lld  best %8.2f ms  %6.1f GB/s  "
        "%6.1f GFLOP/s  %7.1f tokens/s | cpu share %3.0f%%, cpu %8.2f ms/pass -> %6.1f "
        "GFLOP/s per cpu-s\n",
        std::string(fs::dtype_name(layer_type)).c_str(), pool.num_threads(),
        static_cast<long long>(n), sec * 1e3, bytes / sec / 1e9, flops / sec / 1e9, n / sec,
        cpu_share * 100.0, cpu_per_pass * 1e3, flops / cpu_per_pass / 1e9);
    std::fflush(stdout);
  }
}

struct Shape {
  const char* name;
  int64_t rows, cols;
};

}  // namespace

int main(int argc, char** argv) {
  int threads = 2;
  std::string types = "F32,F16,BF16,Q8_0,Q4_0,Q4_1,Q4_K,Q6_K";
  std::string tokens = "1,8,32,512";
  double min_s = 0.2;
  bool stream = true;
  bool hot = false;   // weights stay in cache (no cycling through copies)
  std::string model;  // --model TYPE: the whole-model pass instead of the per-shape table
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto next = [&] { return i + 1 < argc ? std::string(argv[++i]) : std::string(); };
    if (arg == "--threads") {
      threads = std::atoi(next().c_str());
    } else if (arg == "--types") {
      types = next();
    } else if (arg == "--tokens") {
      tokens = next();
    } else if (arg == "--min-ms") {
      min_s = std::atof(next().c_str()) / 1000.0;
    } else if (arg == "--no-stream") {
      stream = false;
    } else if (arg == "--hot") {
      hot = true;
    } else if (arg == "--model") {
      model = next();
    } else {
      std::fprintf(stderr, "unknown argument %s\n", arg.c_str());
      return 2;
    }
  }
  std::printf("kernels: %s\n", fs::cpu::matmul_kernel_info().c_str());
  if (stream) {
    fs::ThreadPool pool1(1);
    bench_memory(pool1, min_s);
    if (threads > 1) {
      fs::ThreadPool pool_n(threads);
      bench_memory(pool_n, min_s);
    }
  }
  fs::ThreadPool pool(threads);
  if (!model.empty()) {
    std::mt19937 model_rng(2);
    std::vector<int64_t> counts;
    for (const std::string& tok : split(tokens)) counts.push_back(std::atoll(tok.c_str()));
    for (DType c : {DType::kF16, DType::kQ8_0, DType::kQ4_1, DType::kQ4_0}) {
      if (fs::dtype_name(c) == model) bench_model(pool, c, counts, min_s, model_rng);
    }
    return 0;
  }
  const Shape shapes[] = {{"attn_q/o", 576, 576},
                          {"attn_k/v", 192, 576},
                          {"ffn_up/gate", 1536, 576},
                          {"ffn_down", 576, 1536},
                          {"lm_head", 49152, 576}};
  std::mt19937 rng(1);
  std::printf("%-5s %-12s %6s %5s %6s %10s %9s %9s\n", "type", "shape", "rows", "cols", "tokens",
              "us", "GB/s", "GFLOP/s");
  for (const std::string& type_name : split(types)) {
    DType t{};
    bool found = false;
    for (DType c : {DType::kF32, DType::kF16, DType::kBF16, DType::kQ8_0, DType::kQ4_0,
                    DType::kQ4_1, DType::kQ4_K, DType::kQ6_K}) {
      if (fs::dtype_name(c) == type_name) {
        t = c;
        found = true;
      }
    }
    if (!found) {
      std::fprintf(stderr, "unknown type %s\n", type_name.c_str());
      return 2;
    }
    for (const Shape& s : shapes) {
      if (s.cols % fs::dtype_block_size(t) != 0) continue;  // K-quants need cols % 256 == 0
      if (std::string(s.name) == "lm_head" && t != DType::kQ8_0 && t != DType::kF16) continue;
      const int64_t bytes = s.rows * fs::dtype_row_bytes(t, s.cols);
      const int64_t num_copies =
          std::max<int64_t>(1, std::min<int64_t>(256, (int64_t{64} << 20) / bytes));
      std::vector<std::vector<uint8_t>> copies;
      for (int64_t i = 0; i < num_copies; ++i)
        copies.push_back(random_weights(t, s.rows, s.cols, rng));
      for (const std::string& tok : split(tokens)) {
        const int64_t n = std::atoll(tok.c_str());
        std::vector<float> x(n * s.cols), y(n * s.rows);
        std::uniform_real_distribution<float> u(-1.0f, 1.0f);
        for (auto& v : x) v = u(rng);
        // Large batches are compute bound: one copy (in cache) is the honest case there too.
        const int64_t cycle = n >= 32 || hot ? 1 : num_copies;
        int64_t next_copy = 0;
        const double sec = best_time(min_s, [&] {
          const fs::cpu::WeightView w{t, s.rows, s.cols, copies[next_copy].data()};
          next_copy = (next_copy + 1) % cycle;
          fs::cpu::matmul(w, x.data(), n, y.data(), pool);
        });
        std::printf("%-5s %-12s %6lld %5lld %6lld %10.1f %9.1f %9.1f\n", type_name.c_str(), s.name,
                    static_cast<long long>(s.rows), static_cast<long long>(s.cols),
                    static_cast<long long>(n), sec * 1e6, bytes / sec / 1e9,
                    2.0 * s.rows * s.cols * n / sec / 1e9);
        std::fflush(stdout);
      }
    }
  }
  return 0;
}
