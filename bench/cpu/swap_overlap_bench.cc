// CPU swap overlap (issue 6): how much of a proactive swap the copy thread hides behind a decode
// forward. For each swap size: the forward alone, the swap alone (swap() + wait_for_swaps()), and
// the two as the engine issues them (swap(), forward(), wait_for_swaps()), median of --steps;
// hidden = forward + swap - overlapped, per step (the three runs of one step are adjacent in time).
//
//   swap_overlap_bench [--model PATH] [--threads N] [--batch 8] [--context 256] [--steps 20]
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "core/timer.h"
#include "engine/cpu_executor.h"
#include "model/causal_lm.h"

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  std::string model = "models/SmolLM2-135M-Instruct.Q4_1.gguf";
  int batch = 8, context = 256, steps = 20;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--model")
      model = argv[i + 1];
    else if (a == "--batch")
      batch = std::atoi(argv[i + 1]);
    else if (a == "--context")
      context = std::atoi(argv[i + 1]);
    else if (a == "--steps")
      steps = std::atoi(argv[i + 1]);
    else if (a == "--threads")
      setenv("FASTSERVE_THREADS", argv[i + 1], 1);
  }
  fs::Result<std::unique_ptr<fs::CausalLm>> lm = fs::CausalLm::load(model);
  if (!lm.is_ok()) {
    std::fprintf(stderr, "%s\n", lm.status().to_string().c_str());
    return 1;
  }
  constexpr int kBlockSize = 16;
  const int max_swap_blocks = 128;
  const int ctx_blocks = (context + steps + kBlockSize) / kBlockSize + 1;
  const int device_blocks = batch * ctx_blocks + 2 * max_swap_blocks;
  fs::CpuExecutor ex(**lm);
  if (!ex.allocate_kv(kBlockSize, device_blocks, 2 * max_swap_blocks).is_ok()) return 1;

  // The decode batch: `batch` sequences of `context` prompt tokens, blocks [s * ctx_blocks, ...).
  std::vector<std::vector<int32_t>> tables(batch), tokens(batch);
  for (int s = 0; s < batch; ++s) {
    for (int b = 0; b < ctx_blocks; ++b) tables[s].push_back(s * ctx_blocks + b);
    for (int t = 0; t < context; ++t) tokens[s].push_back(3 + (s * 131 + t * 7) % 1000);
    fs::ForwardSeq seq{tokens[s], 0, tables[s], false};
    if (!ex.forward(std::span(&seq, 1)).is_ok()) return 1;
  }
  int64_t pos = context;
  std::vector<int32_t> next(batch, 42);
  auto decode = [&] {
    std::vector<fs::ForwardSeq> seqs;
    for (int s = 0; s < batch; ++s) seqs.push_back({std::span(&next[s], 1), pos, tables[s], false});
    if (!ex.forward(seqs).is_ok()) std::abort();
    ++pos;
  };
  // Proactive moves: blocks outside the batch, offloaded to host and back in turn.
  const int first_free = batch * ctx_blocks;
  bool out = true;
  auto proactive = [&](int n) {
    std::vector<fs::BlockCopy> moves;
    for (int i = 0; i < n; ++i)
      moves.push_back({out ? first_free + i : i, out ? i : first_free + i});
    const fs::Status s = out ? ex.swap(moves, {}) : ex.swap({}, moves);
    if (!s.is_ok()) std::abort();
    out = !out;
  };
  const double block_mib = ex.kv_block_bytes(kBlockSize) / 1048576.0;
  std::printf("model %s, batch %d at context %d, KV block %.2f MiB (16 tokens)\n", model.c_str(),
              batch, context, block_mib);
  std::printf(
      "| swap blocks | MiB | forward alone (ms) | swap alone (ms) | sum (ms) | "
      "swap + forward, overlapped (ms) | swap time hidden (ms, median per step) |\n"
      "|---:|---:|---:|---:|---:|---:|---:|\n");
  for (int n : {16, 32, 64, 128}) {
    std::vector<double> f, sw, both, hidden;
    for (int i = 0; i < steps; ++i) {
      pos = context;  // the same positions every time: overwrite the same slots
      double t = fs::monotonic_s();
      decode();
      f.push_back(fs::monotonic_s() - t);
      t = fs::monotonic_s();
      proactive(n);
      ex.wait_for_swaps();
      sw.push_back(fs::monotonic_s() - t);
      pos = context;
      t = fs::monotonic_s();
      proactive(n);
      decode();
      ex.wait_for_swaps();
      both.push_back(fs::monotonic_s() - t);
      hidden.push_back(f.back() + sw.back() - both.back());  // this step's own pair: less noise
    }
    const double mf = median(f) * 1e3, ms = median(sw) * 1e3, mb = median(both) * 1e3;
    const double mh = median(hidden) * 1e3;
    std::printf("| %d | %.0f | %.1f | %.1f | %.1f | %.1f | %.1f (%.0f%%) |\n", n, n * block_mib, mf,
                ms, mf + ms, mb, mh, 100.0 * std::clamp(mh / ms, 0.0, 1.0));
  }
  return 0;
}
