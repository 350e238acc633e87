// Server-sent events framing for OpenAI streams: one "data: <json>\n\n" per chunk, then "data:
// [DONE]".
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace fs::server {

std::string sse_event(const nlohmann::json& data);
inline constexpr const char* kSseDone = "data: [DONE]\n\n";

}  // namespace fs::server
