#include "server/sse.h"

#include "server/openai_response.h"

namespace fs::server {

std::string sse_event(const nlohmann::json& data) { return "data: " + dump_json(data) + "\n\n"; }

}  // namespace fs::server
