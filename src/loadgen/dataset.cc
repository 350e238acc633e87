#include "loadgen/dataset.h"

#include <algorithm>
#include <array>
#include <numeric>
#include <random>

#include "core/workload_file.h"
#include "tokenizer/tokenizer.h"

namespace fs::loadgen {
namespace {

// Three-letter words with a leading space: 4 chars each, and one token each in byte-level BPE
// vocabularies, so n words are about n tokens by either count.
constexpr std::array<const char*, 32> kWords = {
    " the", " and", " for", " you", " not", " are", " but", " all", " can", " had", " one",
    " out", " day", " way", " new", " man", " old", " see", " two", " how", " its", " now",
    " who", " did", " get", " may", " use", " her", " say", " she", " his", " any"};

bool ends_with(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Record indices in the order they are tried: seeded shuffles, repeated until `needed` are out
// (the caller stops early once enough records pass its filter).
class ShuffledIndices {
 public:
  ShuffledIndices(size_t size, uint64_t seed) : order_(size), rng_(seed) { reshuffle(); }
  size_t next() {
    if (pos_ == order_.size()) reshuffle();
    return order_[pos_++];
  }

 private:
  void reshuffle() {
    std::iota(order_.begin(), order_.end(), size_t{0});
    std::shuffle(order_.begin(), order_.end(), rng_);
    pos_ = 0;
  }
  std::vector<size_t> order_;
  std::mt19937_64 rng_;
  size_t pos_ = 0;
};

int32_t cap_output(int32_t n, const DatasetOptions& o) {
  return o.max_output_len > 0 ? std::min(n, o.max_output_len) : n;
}

Result<std::vector<BenchRequest>> sample_text(const std::string& path, bool sharegpt_filter,
                                              const DatasetOptions& o, const Tokenizer* tok) {
  FS_ASSIGN_OR_RETURN(std::vector<TextRow> records, read_text_rows(path, "dataset"));
  std::vector<BenchRequest> out;
  std::vector<char> rejected(records.size(), 0);
  size_t num_rejected = 0;
  ShuffledIndices order(records.size(), o.seed);
  while (static_cast<int64_t>(out.size()) < o.num_prompts) {
    if (num_rejected == records.size()) {
      return data_loss("dataset {}: no record passes the length filter", path);
    }
    const size_t i = order.next();
    if (rejected[i]) continue;
    const TextRow& r = records[i];
    const int32_t num_prompt = count_tokens(tok, r.prompt);
    const int32_t num_output = count_tokens(tok, r.output);
    bool keep = num_prompt >= 1 && num_output >= 1;
    if (sharegpt_filter) {  // vLLM sample_sharegpt_requests
      keep = keep && num_prompt >= 4 && num_output >= 4 && num_prompt <= 1024 &&
             num_prompt + num_output <= 2048;
    }
    if (!keep) {
      rejected[i] = 1;
      ++num_rejected;
      continue;
    }
    out.push_back(BenchRequest{r.prompt, num_prompt, cap_output(num_output, o)});
  }
  return out;
}

Result<std::vector<BenchRequest>> sample_lengths(const std::string& path, const DatasetOptions& o,
                                                 const Tokenizer* tok) {
  FS_ASSIGN_OR_RETURN(std::vector<LengthRow> records, read_length_rows(path, "dataset"));
  const bool any_usable = std::any_of(records.begin(), records.end(), [](const LengthRow& r) {
    return r.prompt_tokens >= 1 && r.output_tokens >= 1;
  });
  if (!any_usable) return data_loss("dataset {}: no record with prompt and output >= 1", path);
  std::vector<BenchRequest> out;
  ShuffledIndices order(records.size(), o.seed);
  std::mt19937_64 rng(o.seed + 1);
  while (static_cast<int64_t>(out.size()) < o.num_prompts) {
    const LengthRow& r = records[order.next()];
    if (r.prompt_tokens < 1 || r.output_tokens < 1) continue;
    std::string prompt = synthesize_prompt(r.prompt_tokens, rng(), tok);
    const int32_t num_prompt = count_tokens(tok, prompt);
    out.push_back(BenchRequest{std::move(prompt), num_prompt, cap_output(r.output_tokens, o)});
  }
  return out;
}

Result<std::vector<BenchRequest>> sample_random(const DatasetOptions& o, const Tokenizer* tok) {
  if (o.random_input_len < 1 || o.random_output_len < 1) {
    return invalid_argument("--random-input-len and --random-output-len must be >= 1");
  }
  if (o.random_range_ratio < 0 || o.random_range_ratio >= 1) {
    return invalid_argument("--random-range-ratio must be in [0, 1), got {}", o.random_range_ratio);
  }
  std::mt19937_64 rng(o.seed);
  auto draw = [&](int32_t len) {
    const auto lo = static_cast<int32_t>(std::max(1.0, len * (1 - o.random_range_ratio)));
    const auto hi = static_cast<int32_t>(len * (1 + o.random_range_ratio));
    return std::uniform_int_distribution<int32_t>(lo, std::max(lo, hi))(rng);
  };
  std::vector<BenchRequest> out;
  for (int64_t i = 0; i < o.num_prompts; ++i) {
    const int32_t num_input = draw(o.random_input_len);
    const int32_t num_output = draw(o.random_output_len);
    std::string prompt = synthesize_prompt(num_input, rng(), tok);
    const int32_t num_prompt = count_tokens(tok, prompt);
    out.push_back(BenchRequest{std::move(prompt), num_prompt, cap_output(num_output, o)});
  }
  return out;
}

}  // namespace

int32_t count_tokens(const Tokenizer* tokenizer, std::string_view text) {
  if (tokenizer == nullptr) return static_cast<int32_t>((text.size() + 3) / 4);
  return static_cast<int32_t>(tokenizer->encode(text, EncodeOptions{false, false}).size());
}

std::string synthesize_prompt(int32_t num_tokens, uint64_t rng_seed, const Tokenizer* tokenizer) {
  std::mt19937_64 rng(rng_seed);
  std::uniform_int_distribution<size_t> pick(0, kWords.size() - 1);
  std::vector<const char*> words;
  auto build = [&] {
    std::string text;
    for (const char* w : words) text += w;
    return text;
  };
  words.reserve(static_cast<size_t>(std::max(num_tokens, 1)));
  for (int32_t i = 0; i < std::max(num_tokens, 1); ++i) words.push_back(kWords[pick(rng)]);
  std::string text = build();
  // A tokenizer may merge or split words: correct the word count by the difference, a few rounds.
  for (int round = 0; tokenizer != nullptr && round < 8; ++round) {
    const int32_t diff = count_tokens(tokenizer, text) - num_tokens;
    if (diff == 0) break;
    if (diff > 0) {
      words.resize(std::max<size_t>(1, words.size() - static_cast<size_t>(diff)));
    } else {
      for (int32_t i = 0; i < -diff; ++i) words.push_back(kWords[pick(rng)]);
    }
    text = build();
  }
  return text;
}

std::string dataset_file(const DatasetOptions& o) {
  if (!o.path.empty()) return o.path;
  if (o.name == "sharegpt") return o.datasets_dir + "/sharegpt.jsonl";
  if (o.name == "alpaca") return o.datasets_dir + "/alpaca.jsonl";
  if (o.name == "random") return "";
  return o.name;
}

Result<std::vector<BenchRequest>> sample_requests(const DatasetOptions& o,
                                                  const Tokenizer* tokenizer) {
  if (o.num_prompts < 1) return invalid_argument("--num-prompts must be >= 1");
  if (o.name == "random") return sample_random(o, tokenizer);
  const std::string path = dataset_file(o);
  if (ends_with(path, ".csv")) return sample_lengths(path, o, tokenizer);
  return sample_text(path, o.name == "sharegpt", o, tokenizer);
}

}  // namespace fs::loadgen
