#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "backend/cpu/ops.h"

namespace fs {

Status SamplingParams::validate() const {
  if (!(temperature >= 0.0f) || !std::isfinite(temperature)) {
    return invalid_argument("temperature must be >= 0, got {}", temperature);
  }
  if (!(top_p > 0.0f && top_p <= 1.0f)) return invalid_argument("top_p must be in (0, 1], got {}", top_p);
  if (!(min_p >= 0.0f && min_p <= 1.0f)) return invalid_argument("min_p must be in [0, 1], got {}", min_p);
  if (!(repetition_penalty > 0.0f) || !std::isfinite(repetition_penalty)) {
    return invalid_argument("repetition_penalty must be > 0, got {}", repetition_penalty);
  }
  if (!(presence_penalty >= -2.0f && presence_penalty <= 2.0f)) {
    return invalid_argument("presence_penalty must be in [-2, 2], got {}", presence_penalty);
  }
  if (!(frequency_penalty >= -2.0f && frequency_penalty <= 2.0f)) {
    return invalid_argument("frequency_penalty must be in [-2, 2], got {}", frequency_penalty);
  }
  if (num_top_logprobs < 0 || num_top_logprobs > 20) {
    return invalid_argument("top logprobs must be in [0, 20], got {}", num_top_logprobs);
  }
  return Status::ok();
}

Sampler::Sampler(const SamplingParams& params)
    : params_(params), rng_(params.seed ? *params.seed : std::random_device{}()) {}

void Sampler::apply_penalties(std::span<float> logits, std::span<const int32_t> prompt_tokens,
                              std::span<const int32_t> output_tokens) {
  const bool repetition = params_.repetition_penalty != 1.0f;
  const bool additive = params_.presence_penalty != 0.0f || params_.frequency_penalty != 0.0f;
  if (!repetition && !additive) return;
  const int64_t vocab = static_cast<int64_t>(logits.size());
  auto in_vocab = [vocab](int32_t t) { return t >= 0 && t < vocab; };
  if (repetition) {
    seen_.assign(vocab, 0);
    for (int32_t t : prompt_tokens) if (in_vocab(t)) seen_[t] = 1;
    for (int32_t t : output_tokens) if (in_vocab(t)) seen_[t] = 1;
    for (int64_t t = 0; t < vocab; ++t) {
      if (!seen_[t]) continue;
      logits[t] = logits[t] > 0 ? logits[t] / params_.repetition_penalty
                                : logits[t] * params_.repetition_penalty;
    }
  }
  if (additive) {
    counts_.assign(vocab, 0);
    for (int32_t t : output_tokens) if (in_vocab(t)) ++counts_[t];
    for (int32_t t : output_tokens) {
      if (!in_vocab(t) || counts_[t] == 0) continue;
      logits[t] -= params_.frequency_penalty * counts_[t] + params_.presence_penalty;
      counts_[t] = 0;  // apply once per distinct token
    }
  }
}

GreedyPick greedy_pick(std::span<const float> logits) {
  constexpr float kInf = std::numeric_limits<float>::infinity();
  const int64_t vocab = static_cast<int64_t>(logits.size());
  if (vocab == 0) return {};
  int32_t best = 0;
  float best_logit = logits[0];  // kept in a register: logits[best] is reloaded per element
  for (int64_t t = 0; t < vocab; ++t) {
    const float x = logits[t];
    if (std::isnan(x) || x == kInf) return {};
    if (x > best_logit) {
      best = static_cast<int32_t>(t);
      best_logit = x;
    }
  }
  if (best_logit == -kInf) return {};
  return {best, best_logit - cpu::log_sum_exp(logits.data(), vocab)};
}

bool Sampler::greedy_only() const {
  return params_.temperature == 0.0f && params_.repetition_penalty == 1.0f &&
         params_.presence_penalty == 0.0f && params_.frequency_penalty == 0.0f &&
         params_.num_top_logprobs == 0;
}

Result<SampledToken> Sampler::from_pick(const GreedyPick& pick) {
  if (pick.token < 0) {
    return make_error(StatusCode::kInternal,
                      "the model produced NaN or infinite logits, or none finite (greedy pick on "
                      "the device)");
  }
  SampledToken t;
  t.token = pick.token;
  t.logprob = pick.logprob;
  return t;
}

Result<SampledToken> Sampler::sample(std::span<float> logits, std::span<const int32_t> prompt_tokens,
                                     std::span<const int32_t> output_tokens) {
  constexpr float kInf = std::numeric_limits<float>::infinity();
  const int64_t vocab = static_cast<int64_t>(logits.size());
  SampledToken result;

  // Raw log-softmax for the reported log-probabilities (before any processing). A NaN or +inf
  // logit is a fault in the forward pass (overflow, bad weights): it fails this request only.
  float max_raw = -kInf;
  for (int64_t t = 0; t < vocab; ++t) {
    const float x = logits[t];
    if (std::isnan(x) || x == kInf) {
      return make_error(StatusCode::kInternal, "the model produced {} logits (token {})",
                        std::isnan(x) ? "NaN" : "infinite", t);
    }
    max_raw = std::max(max_raw, x);
  }
  if (max_raw == -kInf) {
    return make_error(StatusCode::kInternal, "the model produced no finite logits ({} tokens)", vocab);
  }
  // In f32 with AVX2: the double std::exp loop it replaces took ~0.3 ms per token over SmolLM2's
  // 49152-entry vocabulary.
  const float log_z = cpu::log_sum_exp(logits.data(), vocab);
  if (params_.num_top_logprobs > 0) {
    candidates_.resize(vocab);
    for (int64_t t = 0; t < vocab; ++t) candidates_[t] = {logits[t], static_cast<int32_t>(t)};
    const int64_t n = std::min<int64_t>(params_.num_top_logprobs, vocab);
    std::partial_sort(candidates_.begin(), candidates_.begin() + n, candidates_.end(),
                      [](const auto& a, const auto& b) {
                        return a.first > b.first || (a.first == b.first && a.second < b.second);
                      });
    for (int64_t i = 0; i < n; ++i) result.top.push_back({candidates_[i].second, candidates_[i].first - log_z});
  }
  const bool need_raw = params_.repetition_penalty != 1.0f || params_.presence_penalty != 0.0f ||
                        params_.frequency_penalty != 0.0f;
  // Penalties change logits; remember the raw value of whichever token is chosen afterwards.
  if (need_raw) raw_.assign(logits.begin(), logits.end());
  apply_penalties(logits, prompt_tokens, output_tokens);
  // A penalty can push a huge finite logit to -inf; the draw below needs one finite logit.
  const float max_logit = need_raw ? *std::max_element(logits.begin(), logits.end()) : max_raw;
  if (max_logit == -kInf) {
    return make_error(StatusCode::kInternal, "no finite logits are left after the penalties");
  }

  if (params_.temperature == 0.0f) {
    int32_t best = 0;
    for (int64_t t = 1; t < vocab; ++t) if (logits[t] > logits[best]) best = static_cast<int32_t>(t);
    result.token = best;
  } else {
    // Candidates sorted by logit descending, then truncated by top-k, top-p and min-p. The max is
    // subtracted before dividing by the temperature: a tiny temperature then sends the others to
    // -inf (greedy in the limit) instead of overflowing the max to +inf (and every probability to
    // NaN).
    candidates_.resize(vocab);
    for (int64_t t = 0; t < vocab; ++t) {
      candidates_[t] = {(logits[t] - max_logit) / params_.temperature, static_cast<int32_t>(t)};
    }
    int64_t n = vocab;
    auto by_logit = [](const auto& a, const auto& b) {
      return a.first > b.first || (a.first == b.first && a.second < b.second);
    };
    if (params_.top_k > 0 && params_.top_k < vocab) {
      n = params_.top_k;
      std::partial_sort(candidates_.begin(), candidates_.begin() + n, candidates_.end(), by_logit);
    } else {
      std::sort(candidates_.begin(), candidates_.end(), by_logit);
    }
    const float max_l = candidates_[0].first;
    double total = 0.0;
    std::vector<double>& probs = probs_;
    probs.resize(n);
    for (int64_t i = 0; i < n; ++i) total += (probs[i] = std::exp(static_cast<double>(candidates_[i].first) - max_l));
    int64_t keep = n;
    if (params_.min_p > 0.0f) {
      const double threshold = params_.min_p * probs[0];  // probs[0] is the max
      keep = 1;
      while (keep < n && probs[keep] >= threshold) ++keep;
    }
    if (params_.top_p < 1.0f) {
      double cum = 0.0;
      int64_t k = 0;
      while (k < keep) {
        cum += probs[k] / total;
        ++k;
        if (cum >= params_.top_p) break;
      }
      keep = std::max<int64_t>(k, 1);
    }
    double kept_total = 0.0;
    for (int64_t i = 0; i < keep; ++i) kept_total += probs[i];
    std::uniform_real_distribution<double> uniform(0.0, kept_total);
    const double u = uniform(rng_);
    double cum = 0.0;
    int64_t chosen = keep - 1;
    for (int64_t i = 0; i < keep; ++i) {
      cum += probs[i];
      if (u < cum) {
        chosen = i;
        break;
      }
    }
    result.token = candidates_[chosen].second;
  }
  result.logprob = (need_raw ? raw_[result.token] : logits[result.token]) - log_z;
  return result;
}

}  // namespace fs
