// `fastserve generate`: one prompt in, tokens out, straight on the model (no server, no scheduler).
#include <cstdio>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "cli/kv_cache_args.h"
#include "cli/model_args.h"
#include "core/log.h"
#include "engine/generate.h"

namespace fs::cli {
namespace {

int run_generate(int argc, char** argv) {
  CLI::App app{"Generate text from a prompt with the model on this machine's CPU or GPU."};
  ModelArgs model_args;
  add_model_args(app, model_args);
  KvCacheArgs kv_cache_args;
  add_kv_cache_args(app, kv_cache_args);
  std::string prompt, prompt_ids;
  GenerateOptions options;
  bool json_output = false, chat = false, ignore_eos = false;
  float temperature = 0.0f;
  int64_t seed = -1;
  app.add_option("--prompt", prompt, "prompt text");
  app.add_option("--prompt-ids", prompt_ids, "prompt as comma-separated token ids (no tokenizer)");
  app.add_flag("--chat", chat, "wrap the prompt as a user message in the model's chat template");
  app.add_option("--max-tokens", options.max_tokens, "tokens to generate")->check(CLI::PositiveNumber);
  app.add_option("--temperature", temperature, "0 = greedy (default)")->check(CLI::NonNegativeNumber);
  app.add_option("--top-k", options.sampling.top_k, "keep the k most likely tokens (0 = all)");
  app.add_option("--top-p", options.sampling.top_p, "nucleus sampling mass");
  app.add_option("--min-p", options.sampling.min_p, "drop tokens below min_p * p_max");
  app.add_option("--repetition-penalty", options.sampling.repetition_penalty, "HF-style, 1 = off");
  app.add_option("--seed", seed, "RNG seed for sampling");
  app.add_option("--prefill-chunk", options.prefill_chunk_tokens, "prefill in chunks of N tokens");
  app.add_flag("--ignore-eos", ignore_eos, "do not stop at the end-of-sequence token");
  std::string logits_out;
  app.add_option("--logits-out", logits_out, "write the prompt's last-token logits (raw f32) here");
  app.add_flag("--json", json_output, "print one JSON object: token_ids, text, timings");
  CLI11_PARSE(app, argc, argv);
  if (prompt.empty() == prompt_ids.empty()) {
    std::fprintf(stderr, "fastserve generate: give exactly one of --prompt and --prompt-ids\n");
    return 2;
  }
  options.sampling.temperature = temperature;
  if (seed >= 0) options.sampling.seed = static_cast<uint64_t>(seed);

  Result<ModelSetup> setup = load_model_setup(model_args);
  if (!setup.is_ok()) {
    std::fprintf(stderr, "fastserve generate: %s\n", setup.status().message().c_str());
    return 1;
  }
  if (Status st = apply_kv_cache_args(kv_cache_args, *setup); !st.is_ok()) {
    std::fprintf(stderr, "fastserve generate: %s\n", st.message().c_str());
    return 2;
  }
  if (setup->worker) return run_dist_worker(*setup, "generate");  // MPI rank > 0: rank 0 prints
  ModelRuntime* runtime = &setup->runtime;
  std::vector<int32_t> ids;
  if (!prompt_ids.empty()) {
    Result<std::vector<int32_t>> parsed = parse_id_list(prompt_ids);
    if (!parsed.is_ok()) {
      std::fprintf(stderr, "fastserve generate: --prompt-ids: %s\n", parsed.status().message().c_str());
      return 2;
    }
    ids = *parsed;
  } else {
    Result<std::vector<int32_t>> encoded =
        chat ? runtime->encode_chat(nlohmann::json::array({{{"role", "user"}, {"content", prompt}}}),
                                    /*add_generation_prompt=*/true)
             : runtime->encode_text(prompt);
    if (!encoded.is_ok()) {
      std::fprintf(stderr, "fastserve generate: %s\n", encoded.status().message().c_str());
      return 1;
    }
    ids = *encoded;
  }
  options.keep_prompt_logits = !logits_out.empty();
  if (!ignore_eos) options.stop_token_ids = runtime->stop_token_ids;

  StreamPrinter printer(*runtime, /*enabled=*/!json_output);
  const auto on_token = [&](const SampledToken& t) {
    printer.on_token(t.token);
    return true;
  };
  Result<GenerateResult> result = setup->executor
                                      ? generate(*setup->executor, ids, options, on_token)
                                      : generate(*runtime->lm, ids, options, on_token);
  printer.finish();
  if (!result.is_ok()) {
    std::fprintf(stderr, "fastserve generate: %s\n", result.status().message().c_str());
    return 1;
  }
  const GenerateResult& r = *result;
  if (!logits_out.empty()) {
    std::FILE* f = std::fopen(logits_out.c_str(), "wb");
    if (f == nullptr || std::fwrite(r.prompt_logits.data(), sizeof(float), r.prompt_logits.size(), f) !=
                            r.prompt_logits.size()) {
      std::fprintf(stderr, "fastserve generate: cannot write %s\n", logits_out.c_str());
      if (f) std::fclose(f);
      return 1;
    }
    std::fclose(f);
  }
  const double decode_tps = r.tokens.size() > 1 ? (r.tokens.size() - 1) / r.decode_s : 0.0;
  if (json_output) {
    nlohmann::json j;
    j["prompt_token_ids"] = ids;
    j["token_ids"] = r.tokens;
    // As the server returns it: special tokens (the EOS that ended the run) are not text.
    j["text"] = runtime->tokenizer ? runtime->tokenizer->decode(r.tokens, /*skip_special_tokens=*/true)
                                   : std::string();
    j["finish_reason"] = r.finish_reason;
    nlohmann::json logprobs = nlohmann::json::array();
    for (const SampledToken& s : r.samples) logprobs.push_back(s.logprob);
    j["logprobs"] = logprobs;
    j["timings"] = {{"prompt_tokens", ids.size()},
                    {"prefill_s", r.prefill_s},
                    {"decode_s", r.decode_s},
                    {"prefill_tokens_per_s", ids.size() / r.prefill_s},
                    {"decode_tokens_per_s", decode_tps}};
    std::printf("%s\n", j.dump().c_str());
  } else {
    log_info("prompt {} tokens in {:.3f} s ({:.1f} tok/s); {} tokens generated at {:.1f} tok/s",
             ids.size(), r.prefill_s, ids.size() / r.prefill_s, r.tokens.size(), decode_tps);
  }
  return 0;
}

}  // namespace

FS_REGISTER_COMMAND("generate", "generate text from a prompt (no server)", run_generate);

}  // namespace fs::cli
