#include "engine/generate.h"

#include <algorithm>
#include <numeric>

#include "core/timer.h"
#include "engine/cpu_executor.h"

namespace fs {

Result<GenerateResult> generate(CausalLm& lm, std::span<const int32_t> prompt,
                                const GenerateOptions& options, const TokenCallback& on_token) {
  CpuExecutor executor(lm);
  return generate(executor, prompt, options, on_token);
}

Result<GenerateResult> generate(Executor& executor, std::span<const int32_t> prompt,
                                const GenerateOptions& options, const TokenCallback& on_token) {
  FS_RETURN_IF_ERROR(options.sampling.validate());
  if (prompt.empty()) return invalid_argument("the prompt is empty");
  const int64_t ctx = executor.config().max_position_embeddings;
  const int64_t total = std::min<int64_t>(static_cast<int64_t>(prompt.size()) + options.max_tokens, ctx);
  if (static_cast<int64_t>(prompt.size()) >= ctx) {
    return make_error(StatusCode::kOutOfRange, "the prompt has {} tokens, the context holds {}",
                      prompt.size(), ctx);
  }
  const int64_t bs = options.block_size;
  const int64_t num_blocks = (total + bs - 1) / bs;
  // No swaps here; one host block because a pool may not be empty (cpu::KvCache).
  FS_RETURN_IF_ERROR(executor.allocate_kv(bs, num_blocks, /*host_blocks=*/1));
  std::vector<int32_t> table(num_blocks);
  std::iota(table.begin(), table.end(), 0);

  Sampler sampler(options.sampling);
  GenerateResult result;
  result.finish_reason = "length";
  Stopwatch watch;
  const int64_t chunk = options.prefill_chunk_tokens > 0 ? options.prefill_chunk_tokens
                                                         : static_cast<int64_t>(prompt.size());
  // Greedy without penalties or top logprobs: the executor's device pick when it has one (the
  // logits row stays on the device), except for the prompt's row when its logits are kept.
  const bool device_picks = executor.supports_greedy_picks() && sampler.greedy_only();
  std::vector<float> logits;
  GreedyPick pick;
  bool picked = false;  // the last forward's row was picked on the device
  const auto run = [&](ForwardSeq seq, bool greedy) -> Status {
    seq.greedy = greedy;
    FS_ASSIGN_OR_RETURN(std::span<const float> out, executor.forward(std::span(&seq, 1)));
    picked = greedy;
    if (greedy) {
      const std::span<const GreedyPick> picks = executor.greedy_picks();
      pick = picks.empty() ? GreedyPick{} : picks.back();
    } else {
      logits.assign(out.begin(), out.end());
    }
    return Status::ok();
  };
  int64_t done = 0;
  while (done < static_cast<int64_t>(prompt.size())) {
    const int64_t n = std::min<int64_t>(chunk, prompt.size() - done);
    FS_RETURN_IF_ERROR(run({prompt.subspan(done, n), done, table, false},
                           device_picks && !options.keep_prompt_logits));
    done += n;
  }
  if (options.keep_prompt_logits) result.prompt_logits = logits;
  int64_t pos = static_cast<int64_t>(prompt.size());
  for (int64_t i = 0; i < options.max_tokens; ++i) {
    FS_ASSIGN_OR_RETURN(SampledToken tok, picked ? Sampler::from_pick(pick)
                                                 : sampler.sample(logits, prompt, result.tokens));
    if (i == 0) result.prefill_s = watch.elapsed_s();
    result.tokens.push_back(tok.token);
    const bool stop = std::find(options.stop_token_ids.begin(), options.stop_token_ids.end(),
                                tok.token) != options.stop_token_ids.end();
    result.samples.push_back(std::move(tok));
    if (on_token && !on_token(result.samples.back())) break;
    if (stop) {
      result.finish_reason = "stop";
      break;
    }
    if (i + 1 == options.max_tokens || pos >= ctx) break;
    FS_RETURN_IF_ERROR(run({std::span(&result.tokens.back(), 1), pos, table, false}, device_picks));
    ++pos;
  }
  result.decode_s = watch.elapsed_s() - result.prefill_s;
  return result;
}

}  // namespace fs
