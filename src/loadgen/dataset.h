// Benchmark requests (prompt text, prompt length, target output length) sampled from the datasets
// in
// ../shared/datasets (see its README): text files (JSONL {prompt, output}) and length traces (CSV
// prompt_tokens,output_tokens), plus vLLM's "random" dataset.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace fs {
class Tokenizer;
}

namespace fs::loadgen {

struct BenchRequest {
  std::string prompt;
  int32_t num_prompt_tokens = 0;  // as the client counts them (tokenizer or chars / 4)
  int32_t num_output_tokens = 0;  // target: sent as max_tokens
};

struct DatasetOptions {
  std::string name = "sharegpt";  // sharegpt | alpaca | random | a .jsonl or .csv path
  std::string path;               // overrides the file that name maps to
  std::string datasets_dir = "../shared/datasets";
  int64_t num_prompts = 1000;
  uint64_t seed = 0;
  int32_t random_input_len = 1024;  // random: tokens per prompt
  int32_t random_output_len = 128;  // random: output tokens
  double random_range_ratio = 0;    // random: lengths uniform in [len * (1 - r), len * (1 + r)]
  int32_t max_output_len = 0;       // > 0: caps every target output length
};

// Tokens in text: the tokenizer's count without special tokens when there is one, else
// ceil(chars / 4). Thread-safe.
int32_t count_tokens(const Tokenizer* tokenizer, std::string_view text);

// A prompt of num_tokens tokens (exact with a tokenizer, else by ceil(chars / 4)) made of common
// words drawn with rng_seed; distinct seeds give distinct prompts, so no prefix is shared.
std::string synthesize_prompt(int32_t num_tokens, uint64_t rng_seed, const Tokenizer* tokenizer);

// Samples options.num_prompts requests, deterministic in options.seed. Text records are drawn
// without replacement in a seeded shuffle (again, reshuffled, when more are asked than there are);
// "sharegpt" keeps vLLM's filter (prompt and output >= 4 tokens, prompt <= 1024, prompt + output
// <= 2048), other files only drop empty prompts and zero output lengths. Length-trace prompts are
// synthesized. Errors (kNotFound, kDataLoss, kInvalidArgument) name the file or the option.
Result<std::vector<BenchRequest>> sample_requests(const DatasetOptions& options,
                                                  const Tokenizer* tokenizer);

// The file that options.name / options.path maps to ("" for random).
std::string dataset_file(const DatasetOptions& options);

}  // namespace fs::loadgen
