// Named model shapes for dummy-weight runs (`--load-format dummy --model llama-3-8b`), as vLLM's
// dummy load format and the paper's experiments use: benchmarks at 8B-13B shapes with no weight
// files. Each shape is the model's own Hugging Face config.json, parsed by
// ModelConfig::from_hf_config, so a named shape and the real checkpoint's folder agree.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "core/dtype.h"
#include "core/status.h"
#include "model/model_config.h"

namespace fs {

struct NamedShape {
  const char* name;            // "llama-3-8b"
  const char* hf_id;           // where the config comes from: "meta-llama/Meta-Llama-3-8B"
  const char* hf_config_json;  // that repository's config.json
};

// Every named shape, in a fixed order.
std::span<const NamedShape> named_shapes();

// The config of a named shape; kNotFound listing the names for an unknown one.
Result<ModelConfig> named_shape_config(std::string_view name);

// The config of a dummy model: a named shape, an HF config.json file, or a folder holding one.
// Errors name the spec (kNotFound: neither a shape nor a file; parse errors from the file).
Result<ModelConfig> dummy_model_config(const std::string& spec);

// Parameters of the model's weights (embeddings, matrices, norms, biases; a tied LM head once).
int64_t num_parameters(const ModelConfig& config);

}  // namespace fs
