// Fuzzes the scheduler's cost-model JSON (`fastserve profile` writes it; `serve`/`sim
// --model-profile` read it) through CostModel::from_json_text. Checks: no crash or sanitizer
// report; an accepted model predicts finite, non-negative times for any batch, context and swap
// size, and its JSON round-trips to a model with the same predictions.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/check.h"
#include "sched/cost_model.h"

namespace {

void check_predictions(const fs::sched::CostModel& m, const fs::sched::CostModel& again) {
  for (double tokens : {0.0, 1.0, 17.0, 4096.0, 1e6}) {
    const double t = m.prefill_time_s(tokens);
    FS_CHECK(std::isfinite(t) && t >= 0, "prefill_time_s({}) = {}", tokens, t);
    FS_CHECK(t == again.prefill_time_s(tokens), "round trip changed prefill_time_s({})", tokens);
  }
  for (double batch : {1.0, 16.0, 256.0}) {
    for (double context : {0.0, 512.0, 1e6}) {
      const double t = m.decode_time_s(batch, context);
      FS_CHECK(std::isfinite(t) && t >= 0, "decode_time_s({}, {}) = {}", batch, context, t);
    }
  }
  for (double bytes : {0.0, 4096.0, 1e12}) {
    const double t = m.swap_time_s(bytes);
    FS_CHECK(std::isfinite(t) && t >= 0, "swap_time_s({}) = {}", bytes, t);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto model = fs::sched::CostModel::from_json_text(text);
  if (!model.is_ok()) return 0;
  auto again = fs::sched::CostModel::from_json_text(model->to_json_text());
  FS_CHECK(again.is_ok(), "own JSON rejected: {}", again.status().to_string());
  check_predictions(*model, *again);
  return 0;
}
