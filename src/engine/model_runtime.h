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
  std::string model_path;
  std::unique_ptr<CausalLm> lm;
  std::unique_ptr<Tokenizer> tokenizer;        // null when the model has none (token ids only)
  std::optional<ChatTemplate> chat_template;   // the model's own, when it has one
  std::vector<int32_t> stop_token_ids;         // EOS and end-of-turn ids

  // Renders messages with the model's chat template and encodes the result (no BOS added twice:
  // templates that print the BOS text produce the BOS id themselves).
  Result<std::vector<int32_t>> encode_chat(const nlohmann::json& messages,
                                           bool add_generation_prompt) const;
  // Plain text with the tokenizer's default special tokens (BOS when add_bos).
  Result<std::vector<int32_t>> encode_text(const std::string& text) const;
};

// Loads the model at `path` (already resolved, see model/model_path.h) with its tokenizer and template.
Result<ModelRuntime> load_model_runtime(const std::string& path);

}  // namespace fs
