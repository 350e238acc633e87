// Helpers the engine tests share: the tiny random-weight Llama fixture and a reader that drains one
// request's event stream.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "core/status.h"
#include "engine/engine.h"

namespace fs::testing {

inline const std::string kTinyLlama =
    std::string(FASTSERVE_SOURCE_DIR) + "/tests/fixtures/models/tiny-llama";

// What one request produced: its tokens, and how it ended (finish reason, or the error).
struct Collected {
  std::vector<int32_t> tokens;
  std::string finish_reason;
  Status error;
};

// Reads events until the request finishes or fails; an event that does not come within 60 s
// is reported as kDataLoss ("timed out waiting for an event").
inline Collected collect(RequestStream& stream) {
  Collected c;
  for (;;) {
    std::optional<GenerationEvent> e = stream.next(std::chrono::seconds(60));
    if (!e) {
      c.error = make_error(StatusCode::kDataLoss, "timed out waiting for an event");
      return c;
    }
    if (e->kind == GenerationEvent::Kind::kToken) {
      c.tokens.push_back(e->token);
      continue;
    }
    c.finish_reason = e->finish_reason;
    c.error = e->error;
    return c;
  }
}

}  // namespace fs::testing
