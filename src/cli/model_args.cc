#include "cli/model_args.h"

#include <charconv>
#include <cstdio>

#include "core/thread_pool.h"
#include "model/model_path.h"

namespace fs::cli {

void add_model_args(CLI::App& app, ModelArgs& args) {
  app.add_option("--model", args.model,
                 "a .gguf file or an HF folder; 'default' = SmolLM2-135M-Instruct (Q4_1)");
  app.add_option("--threads", args.threads, "CPU threads (default: FASTSERVE_THREADS or all cores)");
}

Result<ModelRuntime> load_runtime(const ModelArgs& args) {
  if (args.threads > 0) set_default_pool_threads(args.threads);
  FS_ASSIGN_OR_RETURN(std::string path, resolve_model_path(args.model));
  return load_model_runtime(path);
}

Result<std::vector<int32_t>> parse_id_list(const std::string& text) {
  std::vector<int32_t> ids;
  size_t pos = 0;
  while (pos <= text.size()) {
    const size_t comma = std::min(text.find(',', pos), text.size());
    int32_t id = 0;
    const auto [end, ec] = std::from_chars(text.data() + pos, text.data() + comma, id);
    if (ec != std::errc() || end != text.data() + comma || pos == comma) {
      return invalid_argument("'{}' is not a comma-separated list of token ids", text);
    }
    ids.push_back(id);
    pos = comma + 1;
  }
  return ids;
}

StreamPrinter::StreamPrinter(const ModelRuntime& runtime, bool enabled)
    : runtime_(runtime), enabled_(enabled) {
  if (runtime.tokenizer) {
    decoder_ = std::make_unique<IncrementalDecoder>(*runtime.tokenizer, /*skip_special_tokens=*/true);
  }
}

void StreamPrinter::on_token(int32_t id) {
  if (!enabled_) return;
  if (decoder_) {
    const std::string piece = decoder_->feed(id);
    std::fwrite(piece.data(), 1, piece.size(), stdout);
  } else {
    std::printf("%d ", id);
  }
  std::fflush(stdout);
}

void StreamPrinter::finish() {
  if (!enabled_) return;
  if (decoder_) {
    const std::string rest = decoder_->finish();
    std::fwrite(rest.data(), 1, rest.size(), stdout);
  }
  std::printf("\n");
  std::fflush(stdout);
}

}  // namespace fs::cli
