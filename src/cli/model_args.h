// Flags shared by the commands that load a model (generate, profile, serve), and their output helpers.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "engine/model_runtime.h"
#include "tokenizer/incremental_decoder.h"

namespace fs::cli {

struct ModelArgs {
  std::string model = "default";
  int threads = 0;  // 0: FASTSERVE_THREADS or all cores
};

void add_model_args(CLI::App& app, ModelArgs& args);

// Resolves --model, sizes the thread pool and loads the runtime. Errors name the file.
Result<ModelRuntime> load_runtime(const ModelArgs& args);

// "1,2,3" -> {1, 2, 3}.
Result<std::vector<int32_t>> parse_id_list(const std::string& text);

// Prints generated text to stdout as tokens arrive (UTF-8 safe), or ids when there is no tokenizer.
class StreamPrinter {
 public:
  StreamPrinter(const ModelRuntime& runtime, bool enabled);
  void on_token(int32_t id);
  void finish();

 private:
  const ModelRuntime& runtime_;
  bool enabled_;
  std::unique_ptr<IncrementalDecoder> decoder_;
};

}  // namespace fs::cli
