// `fastserve profile`: measures prefill time vs prompt length, decode iteration time vs batch size
// and context, and KV swap bandwidth of a deployment, and writes the cost model JSON the scheduler
// and the simulator read (schema in src/sched/cost_model.h). It measures through the Executor the
// server runs (`fastserve serve` builds it from the same flags): the CPU, --device cuda, and
// --tp/--pp ranks under MPI. Every timing is the best of `--repeat` runs after a warm-up, so other
// load on a shared machine inflates it as little as possible.
//
// With --tp/--pp the KV numbers (kv_bytes_per_token, pool bytes, swap bandwidth) are one rank's
// share, as in the engine's own estimate: every rank holds and moves its part of each block in
// parallel, so the block counts and swap times they give are those of the whole deployment.
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <numeric>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "cli/command.h"
#include "cli/kv_cache_args.h"
#include "cli/model_args.h"
#include "core/log.h"
#include "core/thread_pool.h"
#include "core/timer.h"
#include "engine/cpu_executor.h"
#include "engine/engine.h"
#include "sched/cost_model.h"

namespace fs::cli {
namespace {

// Bytes moved per swap measurement (fewer when the pools are smaller): large enough that the
// probe forward subtracted from it (below) is a small part of the time.
constexpr int64_t kSwapBytes = int64_t{256} << 20;

class Profiler {
 public:
  Profiler(Executor& ex, int repeat, int64_t block_size, int64_t device_blocks, int64_t host_blocks)
      : ex_(ex),
        repeat_(repeat),
        block_size_(block_size),
        device_blocks_(device_blocks),
        host_blocks_(host_blocks),
        greedy_(ex.supports_greedy_picks()) {}

  // Device blocks a forward of `batch` sequences of `tokens` positions each needs.
  int64_t blocks_needed(int64_t batch, int64_t tokens) const {
    return batch * ((tokens + block_size_ - 1) / block_size_);
  }
  int64_t device_blocks() const { return device_blocks_; }

  // Best time of one forward over `batch` sequences, each with `new_tokens` new tokens after
  // `past` cached ones, in disjoint blocks of the device pool (their content is irrelevant to the
  // timing). Greedy rows when the executor picks on the device, as a temperature-0 server batch:
  // the logits then stay where they are computed.
  Result<double> time_forward(int64_t batch, int64_t new_tokens, int64_t past) {
    const int64_t per_seq_blocks = blocks_needed(1, past + new_tokens);
    std::vector<std::vector<int32_t>> tables(batch), tokens(batch);
    std::vector<ForwardSeq> seqs;
    for (int64_t b = 0; b < batch; ++b) {
      tables[b].resize(per_seq_blocks);
      std::iota(tables[b].begin(), tables[b].end(), static_cast<int32_t>(b * per_seq_blocks));
      tokens[b].assign(new_tokens, static_cast<int32_t>(100 + b));
      seqs.push_back(
          {.tokens = tokens[b], .num_past = past, .block_table = tables[b], .greedy = greedy_});
    }
    double best = 1e30;
    for (int r = 0; r <= repeat_; ++r) {  // r = 0 warms up
      Stopwatch w;
      FS_RETURN_IF_ERROR(ex_.forward(seqs).status());  // host logits: the forward is complete
      if (r > 0) best = std::min(best, w.elapsed_s());
    }
    return best;
  }

  // Swap bandwidth in bytes/s (of this rank's part of each block), averaged over both directions:
  // what CostModel::swap_time_s assumes for a mix of offloads and uploads.
  // swap() only starts the moves, so each measurement ends with a probe: a one-token forward whose
  // block table is the last block uploaded. The forward waits for the swap() call that wrote it,
  // and that call is ordered after every earlier one (Executor::swap), so it returns once every
  // move is done; the probe's own time (measured without swaps) is subtracted. Measured:
  //   upload:     swap(n host -> device) + probe
  //   round trip: swap(n device -> host), then swap(the same n host blocks -> device) + probe
  // n blocks are scattered (block b goes to n - 1 - b), as a scheduler's swap plans are.
  Result<double> measure_swap_bandwidth(int64_t block_bytes) {
    const int64_t n =
        std::max<int64_t>(1, std::min({kSwapBytes / block_bytes, device_blocks_, host_blocks_}));
    std::vector<BlockCopy> offloads(n), uploads(n);
    for (int64_t b = 0; b < n; ++b) {
      offloads[b] = {static_cast<int32_t>(b), static_cast<int32_t>(n - 1 - b)};
      uploads[b] = {static_cast<int32_t>(n - 1 - b), static_cast<int32_t>(b)};
    }
    const int32_t probe_block = uploads.back().dst;
    const std::vector<int32_t> probe_table = {probe_block}, probe_token = {100};
    const ForwardSeq probe{.tokens = probe_token, .block_table = probe_table, .greedy = greedy_};
    auto best_of = [&](bool offload, bool upload) -> Result<double> {
      double best = 1e30;
      for (int r = 0; r <= repeat_; ++r) {
        Stopwatch w;
        if (offload) FS_RETURN_IF_ERROR(ex_.swap(offloads, {}));
        if (upload) FS_RETURN_IF_ERROR(ex_.swap({}, uploads));
        FS_RETURN_IF_ERROR(ex_.forward({&probe, 1}).status());
        if (r > 0) best = std::min(best, w.elapsed_s());
      }
      return best;
    };
    FS_ASSIGN_OR_RETURN(const double probe_s, best_of(false, false));
    FS_ASSIGN_OR_RETURN(const double upload_s, best_of(false, true));
    FS_ASSIGN_OR_RETURN(const double round_trip_s, best_of(true, true));
    const double bytes = static_cast<double>(n * block_bytes);
    log_info(
        "KV swap of {} blocks ({:.0f} MiB): probe forward {:.2f} ms, upload {:.2f} ms, "
        "offload + upload {:.2f} ms",
        n, bytes / 1048576.0, probe_s * 1e3, upload_s * 1e3, round_trip_s * 1e3);
    double moves_s = round_trip_s - probe_s;
    if (moves_s <= 0.05 * round_trip_s) {  // noise larger than the moves: the whole time is a bound
      log_warn("KV swap time lost in the probe forward's noise; using the whole round trip");
      moves_s = round_trip_s;
    }
    log_info("KV swap: upload {:.1f} GB/s, offload {:.1f} GB/s",
             bytes / std::max(upload_s - probe_s, 1e-9) / 1e9,
             bytes / std::max(round_trip_s - upload_s, 1e-9) / 1e9);
    return 2.0 * bytes / moves_s;
  }

 private:
  Executor& ex_;
  int repeat_;
  int64_t block_size_;
  int64_t device_blocks_;
  int64_t host_blocks_;
  bool greedy_;
};

int fail(const Status& s) {
  std::fprintf(stderr, "fastserve profile: %s\n", s.message().c_str());
  return 1;
}

int run_profile(int argc, char** argv) {
  CLI::App app{"Measure prefill/decode/swap times of a deployment and write the cost model JSON."};
  ModelArgs model_args;
  add_model_args(app, model_args);
  KvCacheArgs kv_cache_args;
  add_kv_cache_args(app, kv_cache_args);
  std::string out_path = "profile.json";
  std::vector<int64_t> prefill_lengths = {16, 32, 64, 128, 256, 512, 1024};
  std::vector<int64_t> batch_sizes = {1, 2, 4, 8, 16, 32};
  std::vector<int64_t> contexts = {64, 512};
  int repeat = 3;
  EngineConfig pools;  // the serve flags that size the KV pools recorded in the cost model
  app.add_option("--output,-o", out_path, "where to write the cost model JSON");
  app.add_option("--prefill-lengths", prefill_lengths, "prompt lengths to time")->delimiter(',');
  app.add_option("--batch-sizes", batch_sizes, "decode batch sizes to time")->delimiter(',');
  app.add_option("--contexts", contexts, "per-sequence context lengths for the decode timings")
      ->delimiter(',');
  app.add_option("--repeat", repeat, "timed runs per point (best is kept)")
      ->check(CLI::PositiveNumber);
  app.add_option("--block-size", pools.kv_block_size, "KV block size in tokens")
      ->check(CLI::PositiveNumber);
  app.add_option("--device-kv-blocks", pools.device_kv_blocks,
                 "device KV pool of the server this profile is for, in blocks (0: serve's default)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--host-kv-blocks", pools.host_kv_blocks,
                 "host KV pool of the server this profile is for, in blocks (0: serve's default)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--max-num-batched-tokens", pools.max_num_batched_tokens,
                 "the server's token budget per iteration: its activations size the default device "
                 "KV pool on a GPU")
      ->check(CLI::PositiveNumber);
  CLI11_PARSE(app, argc, argv);
  if (batch_sizes.size() < 2 || contexts.size() < 2) {
    // The decode cost is fitted as a plane over (batch size, context): it needs both to vary.
    std::fprintf(stderr, "fastserve profile: give at least two --batch-sizes and two --contexts\n");
    return 2;
  }

  Result<ModelSetup> setup = load_model_setup(model_args);
  if (!setup.is_ok()) return fail(setup.status());
  if (Status st = apply_kv_cache_args(kv_cache_args, *setup); !st.is_ok()) {
    std::fprintf(stderr, "fastserve profile: %s\n", st.message().c_str());
    return 2;
  }
  if (setup->worker) return run_dist_worker(*setup, "profile");  // MPI rank > 0: rank 0 measures
  // Declared after setup: destroyed (the workers told to exit) before the runtime it may wrap.
  std::unique_ptr<Executor> executor = std::move(setup->executor);
  if (!executor) executor = std::make_unique<CpuExecutor>(*setup->runtime.lm);
  Executor& ex = *executor;
  const ModelConfig& c = ex.config();
  const int64_t bs = pools.kv_block_size;
  const int64_t block_bytes = ex.kv_block_bytes(bs);

  // The points that fit the context, and the one pool that holds the largest of them.
  std::erase_if(prefill_lengths, [&](int64_t n) { return n >= c.max_position_embeddings; });
  std::erase_if(contexts, [&](int64_t ctx) {
    if (ctx <= c.max_position_embeddings) return false;
    log_info("decode context {} skipped: the model's context is {}", ctx,
             c.max_position_embeddings);
    return true;
  });
  int64_t need_blocks = 1, max_forward_tokens = 1;
  for (int64_t n : prefill_lengths) {
    need_blocks = std::max(need_blocks, (n + bs - 1) / bs);
    max_forward_tokens = std::max(max_forward_tokens, n);
  }
  for (int64_t ctx : contexts) {
    for (int64_t b : batch_sizes) need_blocks = std::max(need_blocks, b * ((ctx + bs - 1) / bs));
  }
  for (int64_t b : batch_sizes) max_forward_tokens = std::max(max_forward_tokens, b);
  const int64_t fit =
      ex.max_device_blocks(bs, std::max<int64_t>(pools.max_num_batched_tokens, max_forward_tokens));
  // The swap measurement moves up to kSwapBytes between the two pools.
  const int64_t swap_blocks = std::max<int64_t>(1, kSwapBytes / block_bytes);
  need_blocks = std::max(need_blocks, swap_blocks);
  const int64_t device_blocks = fit > 0 ? std::min(need_blocks, fit) : need_blocks;
  const int64_t host_blocks = std::min(swap_blocks, device_blocks);
  if (Status s = ex.allocate_kv(bs, device_blocks, host_blocks); !s.is_ok()) return fail(s);
  log_info("profiling {} on {}: KV pools of {} device and {} host blocks of {} tokens",
           setup->runtime.model_path, ex.device_name(), device_blocks, host_blocks, bs);
  Profiler p(ex, repeat, bs, device_blocks, host_blocks);

  Result<KvPoolBlocks> served_pools = kv_pool_blocks(ex, pools);
  if (!served_pools.is_ok()) return fail(served_pools.status());
  sched::CostModelSpec spec;
  // "<model> on cuda:0 NVIDIA H200 x 4 ranks (tp 4, pp 1, NCCL + MPI)"; "..., 2 threads" on CPUs.
  spec.name = fmt::format("{} on {}", setup->runtime.model_path, ex.device_name());
  if (ex.device_name().rfind("cpu", 0) == 0) {
    spec.name += fmt::format(", {} threads{}", default_pool().num_threads(),
                             model_args.tp * model_args.pp > 1 ? " a rank" : "");
  }
  spec.source = "fastserve profile (best of " + std::to_string(repeat) + " runs per point)";
  spec.block_size_tokens = static_cast<int32_t>(bs);
  spec.kv_bytes_per_token = static_cast<double>(block_bytes) / static_cast<double>(bs);
  // The pools `fastserve serve` makes with the same flags.
  spec.device_kv_bytes = static_cast<double>(served_pools->device_blocks * block_bytes);
  spec.host_kv_bytes = static_cast<double>(served_pools->host_blocks * block_bytes);

  auto fits = [&](int64_t blocks, const std::string& what) {
    if (blocks <= p.device_blocks()) return true;
    log_info("{} skipped: needs {} KV blocks, {} fit on {}", what, blocks, p.device_blocks(),
             ex.device_name());
    return false;
  };
  for (int64_t n : prefill_lengths) {
    if (!fits(p.blocks_needed(1, n), fmt::format("prefill {}", n))) continue;
    Result<double> s = p.time_forward(1, n, 0);
    if (!s.is_ok()) return fail(s.status());
    spec.prefill.push_back({static_cast<double>(n), *s});
    log_info("prefill {:5d} tokens: {:8.2f} ms ({:.0f} tok/s)", n, *s * 1e3, n / *s);
  }
  for (int64_t ctx : contexts) {
    for (int64_t b : batch_sizes) {
      if (!fits(p.blocks_needed(b, ctx), fmt::format("decode batch {} context {}", b, ctx)))
        continue;
      Result<double> s = p.time_forward(b, 1, ctx - 1);
      if (!s.is_ok()) return fail(s.status());
      spec.decode.push_back({static_cast<double>(b), static_cast<double>(b * ctx), *s});
      log_info("decode batch {:3d} context {:5d}: {:8.2f} ms ({:.1f} tok/s)", b, ctx, *s * 1e3,
               b / *s);
    }
  }
  Result<double> swap_bandwidth = p.measure_swap_bandwidth(block_bytes);
  if (!swap_bandwidth.is_ok()) return fail(swap_bandwidth.status());
  spec.swap_bandwidth_bytes_per_s = *swap_bandwidth;
  log_info("KV swap bandwidth (both directions): {:.1f} GB/s",
           spec.swap_bandwidth_bytes_per_s / 1e9);

  Result<sched::CostModel> model = sched::CostModel::from_spec(spec);
  if (!model.is_ok()) return fail(model.status());
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

FS_REGISTER_COMMAND("profile", "measure a deployment and write the scheduler's cost model JSON",
                    run_profile);

}  // namespace fs::cli
