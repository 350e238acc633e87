// `fastserve profile`: measures this machine's prefill time vs prompt length, decode iteration time
// vs batch size and context, and KV copy bandwidth, and writes the cost model JSON the scheduler
// and the simulator read (schema in src/sched/cost_model.h). Every timing is the best of `--repeat`
// runs after a warm-up, so other load on a shared machine inflates it as little as possible.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <numeric>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "cli/command.h"
#include "cli/kv_cache_args.h"
#include "cli/model_args.h"
#include "core/check.h"
#include "core/log.h"
#include "core/timer.h"
#include "sched/cost_model.h"

namespace fs::cli {
namespace {

struct Profiler {
  CausalLm& lm;
  int repeat;
  int64_t block_size;

  // Best time of one forward over `batch` sequences, each with `new_tokens` new tokens after
  // `past` cached ones (the cache content is irrelevant to the timing).
  double time_forward(int64_t batch, int64_t new_tokens, int64_t past) {
    const int64_t per_seq_blocks = (past + new_tokens + block_size - 1) / block_size;
    cpu::KvCache cache(lm.kv_shape(batch * per_seq_blocks, block_size));
    std::vector<std::vector<int32_t>> tables(batch), tokens(batch);
    std::vector<ForwardSeq> seqs;
    for (int64_t b = 0; b < batch; ++b) {
      tables[b].resize(per_seq_blocks);
      std::iota(tables[b].begin(), tables[b].end(), static_cast<int32_t>(b * per_seq_blocks));
      tokens[b].assign(new_tokens, static_cast<int32_t>(100 + b));
      seqs.push_back({tokens[b], past, tables[b], false});
    }
    double best = 1e30;
    for (int r = 0; r <= repeat; ++r) {  // r = 0 warms up
      Stopwatch w;
      Result<std::span<const float>> out = lm.forward(seqs, cache);
      FS_CHECK(out.is_ok(), "profile forward failed: {}", out.status().to_string());
      if (r > 0) best = std::min(best, w.elapsed_s());
    }
    return best;
  }
};

double measure_copy_bandwidth(int64_t block_bytes, int repeat) {
  const int64_t num_blocks = std::max<int64_t>(1, (256ll << 20) / block_bytes);
  std::vector<char> src(num_blocks * block_bytes, 1), dst(num_blocks * block_bytes, 0);
  double best = 1e30;
  for (int r = 0; r <= repeat; ++r) {
    Stopwatch w;
    // Scattered blocks, copied one by one in reverse order: the swap engine's access pattern.
    for (int64_t b = 0; b < num_blocks; ++b) {
      std::memcpy(dst.data() + (num_blocks - 1 - b) * block_bytes, src.data() + b * block_bytes,
                  block_bytes);
    }
    if (r > 0) best = std::min(best, w.elapsed_s());
  }
  return static_cast<double>(num_blocks * block_bytes) / best;
}

int run_profile(int argc, char** argv) {
  CLI::App app{"Measure prefill/decode/swap times on this machine and write the cost model JSON."};
  ModelArgs model_args;
  add_model_args(app, model_args, /*with_device=*/false);  // the CPU forward only, for now
  KvCacheArgs kv_cache_args;
  add_kv_cache_args(app, kv_cache_args);
  std::string out_path = "profile.json";
  std::vector<int64_t> prefill_lengths = {16, 32, 64, 128, 256, 512, 1024};
  std::vector<int64_t> batch_sizes = {1, 2, 4, 8, 16, 32};
  std::vector<int64_t> contexts = {64, 512};
  int repeat = 3;
  int64_t block_size = 16;
  app.add_option("--output,-o", out_path, "where to write the cost model JSON");
  app.add_option("--prefill-lengths", prefill_lengths, "prompt lengths to time")->delimiter(',');
  app.add_option("--batch-sizes", batch_sizes, "decode batch sizes to time")->delimiter(',');
  app.add_option("--contexts", contexts, "per-sequence context lengths for the decode timings")
      ->delimiter(',');
  app.add_option("--repeat", repeat, "timed runs per point (best is kept)")->check(CLI::PositiveNumber);
  app.add_option("--block-size", block_size, "KV block size in tokens")->check(CLI::PositiveNumber);
  CLI11_PARSE(app, argc, argv);
  if (batch_sizes.size() < 2 || contexts.size() < 2) {
    // The decode cost is fitted as a plane over (batch size, context): it needs both to vary.
    std::fprintf(stderr, "fastserve profile: give at least two --batch-sizes and two --contexts\n");
    return 2;
  }

  Result<ModelRuntime> runtime = load_runtime(model_args);
  if (!runtime.is_ok()) {
    std::fprintf(stderr, "fastserve profile: %s\n", runtime.status().message().c_str());
    return 1;
  }
  if (Status st = apply_kv_cache_args(kv_cache_args, *runtime); !st.is_ok()) {
    std::fprintf(stderr, "fastserve profile: %s\n", st.message().c_str());
    return 2;
  }
  CausalLm& lm = *runtime->lm;
  const ModelConfig& c = lm.config();
  Profiler p{lm, repeat, block_size};
  sched::CostModelSpec spec;
  spec.name = fmt::format("{} on CPU, {} threads", runtime->model_path, default_pool().num_threads());
  spec.source = "fastserve profile (best of " + std::to_string(repeat) + " runs per point)";
  spec.block_size_tokens = static_cast<int32_t>(block_size);
  spec.kv_bytes_per_token = static_cast<double>(lm.kv_shape(1, 1).block_bytes());
  // The engine's default pools on the CPU (EngineConfig): 1 GiB each.
  spec.device_kv_bytes = static_cast<double>(int64_t{1} << 30);
  spec.host_kv_bytes = static_cast<double>(int64_t{1} << 30);
  for (int64_t n : prefill_lengths) {
    if (n >= c.max_position_embeddings) continue;
    const double s = p.time_forward(1, n, 0);
    spec.prefill.push_back({static_cast<double>(n), s});
    log_info("prefill {:5d} tokens: {:8.2f} ms ({:.0f} tok/s)", n, s * 1e3, n / s);
  }
  for (int64_t ctx : contexts) {
    for (int64_t b : batch_sizes) {
      const double s = p.time_forward(b, 1, ctx - 1);
      spec.decode.push_back({static_cast<double>(b), static_cast<double>(b * ctx), s});
      log_info("decode batch {:3d} context {:5d}: {:8.2f} ms ({:.1f} tok/s)", b, ctx, s * 1e3, b / s);
    }
  }
  spec.swap_bandwidth_bytes_per_s =
      measure_copy_bandwidth(static_cast<int64_t>(spec.kv_bytes_per_token * block_size), repeat);
  log_info("KV block copy: {:.1f} GB/s", spec.swap_bandwidth_bytes_per_s / 1e9);

  Result<sched::CostModel> model = sched::CostModel::from_spec(spec);
  if (!model.is_ok()) {
    std::fprintf(stderr, "fastserve profile: %s\n", model.status().message().c_str());
    return 1;
  }
  std::ofstream out(out_path);
  out << model->to_json_text() << "\n";
  if (!out.good()) {
    std::fprintf(stderr, "fastserve profile: cannot write %s\n", out_path.c_str());
    return 1;
  }
  log_info("wrote {}", out_path);
  return 0;
}

}  // namespace

FS_REGISTER_COMMAND("profile", "measure this machine and write the scheduler's cost model JSON",
                    run_profile);

}  // namespace fs::cli
