// `fastserve tokenize --model M (--text T | --jsonl F)`: prints token ids as a JSON array (for
// --jsonl, whose lines are JSON strings, one array per line). `fastserve detokenize --model M --ids
// 1,2,3`: prints the text. M is a .gguf file, a tokenizer.json, an HF folder, or "default".
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "model/model_path.h"
#include "tokenizer/tokenizer.h"

namespace fs::cli {
namespace {

std::unique_ptr<Tokenizer> load_tokenizer(const char* command, const std::string& model) {
  Result<std::string> path = resolve_model_path(model);
  if (!path.is_ok()) {
    std::fprintf(stderr, "fastserve %s: %s\n", command, path.status().message().c_str());
    return nullptr;
  }
  Result<std::unique_ptr<Tokenizer>> tok = Tokenizer::load(*path);
  if (!tok.is_ok()) {
    std::fprintf(stderr, "fastserve %s: %s\n", command, tok.status().to_string().c_str());
    return nullptr;
  }
  return std::move(tok).value();
}

// Encodes texts `rounds` times on this thread; prints bytes, tokens and MB/s of the best round.
int run_bench(const Tokenizer& tok, const std::vector<std::string>& texts,
              const EncodeOptions& options, int rounds) {
  size_t num_bytes = 0;
  for (const std::string& t : texts) num_bytes += t.size();
  double best_s = 1e30;
  size_t num_tokens = 0;
  for (int r = 0; r < rounds; ++r) {
    num_tokens = 0;
    const auto start = std::chrono::steady_clock::now();
    for (const std::string& t : texts) num_tokens += tok.encode(t, options).size();
    const std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - start;
    best_s = std::min(best_s, elapsed.count());
  }
  std::printf(
      "{\"strings\": %zu, \"bytes\": %zu, \"tokens\": %zu, \"seconds\": %.4f, "
      "\"mb_per_s\": %.2f}\n",
      texts.size(), num_bytes, num_tokens, best_s, num_bytes / best_s / 1e6);
  return 0;
}

int run_tokenize(int argc, char** argv) {
  CLI::App app{"Print the token ids of text as JSON."};
  std::string model = "default";
  std::string text;
  std::string jsonl;
  bool no_special = false;
  bool no_parse_special = false;
  int bench_rounds = 0;
  app.add_option("--model", model, "a .gguf file, a tokenizer.json, an HF folder, or 'default'");
  auto* text_opt = app.add_option("--text", text, "the text to tokenize");
  auto* jsonl_opt =
      app.add_option("--jsonl", jsonl, "file ('-' = stdin) of JSON strings, one per line");
  text_opt->excludes(jsonl_opt);
  app.add_flag("--no-special", no_special, "do not add BOS/EOS");
  app.add_flag("--no-parse-special", no_parse_special,
               "treat special tokens in the text as plain text");
  app.add_option("--bench", bench_rounds,
                 "encode the --jsonl strings this many times and print throughput, not ids");
  CLI11_PARSE(app, argc, argv);
  if (text_opt->count() == 0 && jsonl_opt->count() == 0) {
    std::fprintf(stderr, "fastserve tokenize: give --text or --jsonl\n");
    return 2;
  }
  std::unique_ptr<Tokenizer> tok = load_tokenizer("tokenize", model);
  if (tok == nullptr) return 1;
  EncodeOptions options;
  options.add_special = !no_special;
  options.parse_special = !no_parse_special;
  if (text_opt->count() > 0) {
    std::printf("%s\n", nlohmann::json(tok->encode(text, options)).dump().c_str());
    return 0;
  }
  std::ifstream file;
  if (jsonl != "-") {
    file.open(jsonl);
    if (!file) {
      std::fprintf(stderr, "fastserve tokenize: cannot open %s\n", jsonl.c_str());
      return 1;
    }
  }
  std::istream& in = jsonl == "-" ? std::cin : file;
  std::string line;
  std::vector<std::string> texts;
  for (int line_no = 1; std::getline(in, line); ++line_no) {
    auto value = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!value.is_string()) {
      std::fprintf(stderr, "fastserve tokenize: %s:%d: not a JSON string\n", jsonl.c_str(),
                   line_no);
      return 1;
    }
    if (bench_rounds > 0) {
      texts.push_back(value.get<std::string>());
    } else {
      std::printf("%s\n",
                  nlohmann::json(tok->encode(value.get<std::string>(), options)).dump().c_str());
    }
  }
  if (bench_rounds > 0) return run_bench(*tok, texts, options, bench_rounds);
  return 0;
}

int run_detokenize(int argc, char** argv) {
  CLI::App app{"Print the text of token ids."};
  std::string model = "default";
  std::string ids_arg;
  bool skip_special = false;
  app.add_option("--model", model, "a .gguf file, a tokenizer.json, an HF folder, or 'default'");
  app.add_option("--ids", ids_arg, "comma-separated token ids, e.g. 1,2,3")->required();
  app.add_flag("--skip-special", skip_special, "leave out special tokens");
  CLI11_PARSE(app, argc, argv);
  std::vector<int32_t> ids;
  for (size_t pos = 0; pos <= ids_arg.size();) {
    size_t end = ids_arg.find(',', pos);
    if (end == std::string::npos) end = ids_arg.size();
    const std::string item = ids_arg.substr(pos, end - pos);
    pos = end + 1;
    if (item.empty()) continue;
    char* rest = nullptr;
    const long id = std::strtol(item.c_str(), &rest, 10);
    if (*rest != '\0' || id < 0 || id > INT32_MAX) {
      std::fprintf(stderr, "fastserve detokenize: bad id '%s'\n", item.c_str());
      return 2;
    }
    ids.push_back(static_cast<int32_t>(id));
  }
  std::unique_ptr<Tokenizer> tok = load_tokenizer("detokenize", model);
  if (tok == nullptr) return 1;
  for (int32_t id : ids) {
    if (!tok->is_valid_id(id)) {
      std::fprintf(stderr, "fastserve detokenize: id %d is not below the vocabulary size %d\n", id,
                   tok->vocab_size());
      return 2;
    }
  }
  const std::string text = tok->decode(ids, skip_special);
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fputc('\n', stdout);
  return 0;
}

FS_REGISTER_COMMAND("tokenize", "print the token ids of text as JSON", run_tokenize);
FS_REGISTER_COMMAND("detokenize", "print the text of token ids", run_detokenize);

}  // namespace
}  // namespace fs::cli
