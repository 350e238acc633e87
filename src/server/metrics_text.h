// Engine metrics in the Prometheus text exposition format, names parallel to vLLM's
// (vllm:num_requests_running -> fastserve:num_requests_running).
#pragma once

#include <string>

#include "engine/engine.h"

namespace fs::server {

// `model_name` becomes the model_name label on every sample.
std::string metrics_text(const EngineMetrics& m, const std::string& model_name);

}  // namespace fs::server
