// Single-sequence generation straight on a model: the loop behind `fastserve generate` and the
// numerics tests (the serving engine batches many sequences under the scheduler instead).
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "backend/executor.h"
#include "core/status.h"
#include "engine/sampler.h"
#include "model/causal_lm.h"

namespace fs {

struct GenerateOptions {
  int64_t max_tokens = 64;
  SamplingParams sampling;
  std::vector<int32_t> stop_token_ids;  // generation ends after emitting one of these
  int64_t block_size = 16;              // KV block size in tokens
  int64_t prefill_chunk_tokens = 0;     // > 0: prefill in chunks of this many tokens
  bool keep_prompt_logits = false;      // return the logits of the prompt's last token
};

struct GenerateResult {
  std::vector<int32_t> tokens;        // generated ids (a stop token included when it ended the run)
  std::vector<SampledToken> samples;  // per generated token: logprobs
  std::string finish_reason;          // "stop" | "length"
  double prefill_s = 0.0;             // time to first token
  double decode_s = 0.0;              // time for the remaining tokens
  std::vector<float> prompt_logits;   // [vocab] when keep_prompt_logits
};

// Called after each token; return false to stop early.
using TokenCallback = std::function<bool(const SampledToken&)>;

// Generates up to max_tokens tokens after `prompt`. Errors: empty prompt, a prompt or token past
// the context length, invalid sampling parameters.
Result<GenerateResult> generate(CausalLm& lm, std::span<const int32_t> prompt,
                                const GenerateOptions& options, const TokenCallback& on_token = {});
// The same on any executor (CPU or CUDA). Allocates the executor's KV pools (the sequence's blocks,
// one host block), which an executor does once: one generate per executor.
Result<GenerateResult> generate(Executor& executor, std::span<const int32_t> prompt,
                                const GenerateOptions& options, const TokenCallback& on_token = {});

}  // namespace fs
