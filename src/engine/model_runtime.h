// Everything a command needs to run a model: the network, its tokenizer, its chat template and its
// stop tokens, loaded from one path (a .gguf file or an HF folder).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/status.h"
#include "model/causal_lm.h"
#include "tokenizer/template/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace fs {

struct ModelRuntime {
  std::string model_path;  // the file or folder; for dummy weights the shape name or config path
  std::unique_ptr<CausalLm> lm;  // the CPU model; null when the weights live only on a GPU
  std::unique_ptr<Tokenizer> tokenizer;        // null when the model has none (token ids only)
  std::optional<ChatTemplate> chat_template;   // the model's own, when it has one
  std::vector<int32_t> stop_token_ids;         // EOS and end-of-turn ids

  // Renders messages with the model's chat template and encodes the result (no BOS added twice:
  // templates that print the BOS text produce the BOS id themselves). The template sees the
  // messages' object keys in their stored order (a request's order, as jinja2 would).
  Result<std::vector<int32_t>> encode_chat(const nlohmann::ordered_json& messages,
                                           bool add_generation_prompt) const;
  // Plain text with the tokenizer's default special tokens (BOS when add_bos).
  Result<std::vector<int32_t>> encode_text(const std::string& text) const;
};

// Loads the model at `path` (already resolved, see model/model_path.h) with its tokenizer and template.
Result<ModelRuntime> load_model_runtime(const std::string& path);

// A runtime for weights that come without files (--load-format dummy): `lm` may be null (weights
// made on a GPU). The tokenizer, chat template and stop tokens come from tokenizer_path (a .gguf
// file or a folder with tokenizer.json; none when empty); `config` adds its EOS ids. Errors name
// the tokenizer path.
Result<ModelRuntime> make_dummy_runtime(const std::string& name, std::unique_ptr<CausalLm> lm,
                                        const ModelConfig& config,
                                        const std::string& tokenizer_path);

}  // namespace fs
