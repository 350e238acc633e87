// Runs a model file on the GPU and writes JSON for comparison against transformers
// (scripts/device/cuda_vs_transformers.py): the logits of every prompt position (one prefill
// forward), then `greedy` greedy tokens decoded one per step with the logits of each step.
//   cuda_logits MODEL_PATH IDS(comma-separated) GREEDY_TOKENS OUT.json
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench_util.h"
#include "backend/cuda/cuda_model.h"

namespace {

using fs::bench::check;
using fs::bench::die;
using fs::bench::now_s;


}  // namespace

int main(int argc, char** argv) {
  fs::bench::set_tool_name("cuda_logits");
  if (argc != 5) die("usage: cuda_logits MODEL_PATH IDS GREEDY_TOKENS OUT.json");
  std::vector<int32_t> ids;
  {
    std::stringstream ss(argv[2]);
    std::string item;
    while (std::getline(ss, item, ',')) ids.push_back(std::atoi(item.c_str()));
  }
  const int greedy = std::atoi(argv[3]);
  fs::Result<fs::LoadedModel> loaded = fs::load_model(argv[1]);
  check(loaded.status());
  fs::Result<std::unique_ptr<fs::cuda::CudaModel>> made = fs::cuda::CudaModel::upload(*loaded);
  check(made.status());
  fs::cuda::CudaModel& m = **made;
  const int64_t bs = 16, total = static_cast<int64_t>(ids.size()) + greedy;
  const int64_t num_blocks = (total + bs - 1) / bs + 4;
  const fs::cuda::KvLayout layout = m.kv_layout(bs);
  fs::cuda::DeviceBuffer kv;
  check(kv.ensure(num_blocks * layout.block_elems() * 2, "KV pool"));
  const fs::cuda::KvPoolView pool{kv.as<fs::cuda::bf16>(), num_blocks, layout};
  std::vector<int32_t> table(num_blocks);
  std::iota(table.rbegin(), table.rend(), 0);  // scattered (descending) blocks

  nlohmann::json out;
  fs::ForwardSeq seq{ids, 0, table, true};
  fs::Result<std::span<const float>> logits = m.forward(std::span(&seq, 1), pool);
  check(logits.status());
  out["prompt_logits"] = std::vector<float>(logits->begin(), logits->end());
  const int64_t vocab = m.config().vocab_size;
  int32_t next = static_cast<int32_t>(std::max_element(logits->end() - vocab, logits->end()) -
                                      (logits->end() - vocab));
  std::vector<int32_t> tokens = {next};
  std::vector<float> step_logits;
  int64_t past = static_cast<int64_t>(ids.size());
  for (int i = 1; i < greedy; ++i) {
    const std::vector<int32_t> step = {next};
    fs::ForwardSeq d{step, past++, table, false};
    fs::Result<std::span<const float>> l = m.forward(std::span(&d, 1), pool);
    check(l.status());
    step_logits.insert(step_logits.end(), l->begin(), l->end());
    next = static_cast<int32_t>(std::max_element(l->begin(), l->end()) - l->begin());
    tokens.push_back(next);
  }
  out["greedy"] = tokens;
  out["decode_logits"] = step_logits;
  out["vocab"] = vocab;
  std::ofstream(argv[4]) << out.dump();
  return 0;
}
