// Turns one row of logits into the next token: penalties, temperature, top-k, top-p, min-p, a seeded
// draw; and log-probabilities of the chosen and top-n tokens. Order as in vLLM: penalties, then
// temperature, then the truncations, then the draw. One Sampler per sequence (it owns the RNG state);
// not thread-safe, distinct samplers may run concurrently.
#pragma once

#include <cstdint>
#include <optional>
#include <random>
#include <span>
#include <vector>

#include "core/status.h"
#include "model/forward_seq.h"

namespace fs {

struct SamplingParams {
  float temperature = 1.0f;  // 0: greedy (argmax after penalties)
  int32_t top_k = 0;         // 0 or negative: off
  float top_p = 1.0f;        // (0, 1]
  float min_p = 0.0f;        // [0, 1]: drop tokens with p < min_p * p_max
  float repetition_penalty = 1.0f;  // > 0; HF/vLLM rule over prompt and output tokens
  float presence_penalty = 0.0f;    // [-2, 2]; OpenAI rule over output tokens
  float frequency_penalty = 0.0f;   // [-2, 2]; OpenAI rule over output tokens
  std::optional<uint64_t> seed;     // unset: seeded from std::random_device
  int32_t num_top_logprobs = 0;     // top-n alternatives reported per token (0..20)

  // Checks the ranges above; the message names the offending field.
  Status validate() const;
};

struct TokenLogprob {
  int32_t token = 0;
  float logprob = 0.0f;
};

struct SampledToken {
  int32_t token = 0;
  float logprob = 0.0f;              // log-softmax of the raw logits (as vLLM reports by default)
  std::vector<TokenLogprob> top;     // num_top_logprobs best raw log-probabilities, best first
};

// The greedy pick of one row as Sampler::sample makes it for greedy_only() params: the first
// largest logit and its log-softmax; token -1 for a NaN or +inf logit or no finite one.
GreedyPick greedy_pick(std::span<const float> logits);

class Sampler {
 public:
  explicit Sampler(const SamplingParams& params);

  // logits: [vocab] raw model output; modified in place (scratch). prompt/output: token ids so far,
  // for the penalties. Errors (kInternal, naming the token): a NaN or +inf logit, or no finite
  // logit at all -- a fault in the model's output that fails this one request. -inf is a masked
  // token and is never chosen.
  Result<SampledToken> sample(std::span<float> logits, std::span<const int32_t> prompt_tokens,
                              std::span<const int32_t> output_tokens);

  const SamplingParams& params() const { return params_; }

  // True when sample() returns the raw logits' argmax and reports only its log-probability (greedy,
  // no penalties, no top logprobs): a GreedyPick made on the device then gives the same token and
  // log-probability (from_pick) without the row.
  bool greedy_only() const;
  // The token of a device pick; kInternal (as sample() for a faulty row) when the pick is -1.
  static Result<SampledToken> from_pick(const GreedyPick& pick);

 private:
  void apply_penalties(std::span<float> logits, std::span<const int32_t> prompt_tokens,
                       std::span<const int32_t> output_tokens);

  SamplingParams params_;
  std::mt19937_64 rng_;
  std::vector<int32_t> counts_;                // [vocab] scratch: output-token counts
  std::vector<uint8_t> seen_;                  // [vocab] scratch: in prompt or output
  std::vector<std::pair<float, int32_t>> candidates_;  // scratch for the truncations
  std::vector<double> probs_;                  // scratch: candidate probabilities
  std::vector<float> raw_;                     // scratch: logits before penalties
};

}  // namespace fs
