#include "loadgen/sse_parser.h"

#include <nlohmann/json.hpp>

namespace fs::loadgen {

void SseParser::feed(std::string_view bytes, std::vector<std::string>* events) {
  for (char c : bytes) {
    if (c == '\n' && last_was_cr_) {  // the LF of a CRLF: the line already ended at the CR
      last_was_cr_ = false;
      continue;
    }
    last_was_cr_ = c == '\r';
    if (c == '\n' || c == '\r') {
      take_line(line_, events);
      line_.clear();
    } else {
      line_ += c;
    }
  }
}

void SseParser::finish(std::vector<std::string>* events) {
  if (!line_.empty()) take_line(line_, events);
  line_.clear();
  take_line("", events);
}

void SseParser::take_line(std::string_view line, std::vector<std::string>* events) {
  if (line.empty()) {  // event boundary
    if (has_data_) events->push_back(std::move(data_));
    data_.clear();
    has_data_ = false;
    return;
  }
  if (line.front() == ':') return;  // comment (keep-alive)
  const size_t colon = line.find(':');
  const std::string_view field = line.substr(0, colon);
  std::string_view value = colon == std::string_view::npos ? "" : line.substr(colon + 1);
  if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  if (field != "data") return;  // event:, id:, retry:
  if (has_data_) data_ += '\n';
  data_.append(value);
  has_data_ = true;
}

namespace {

void append_string(const nlohmann::json& obj, const char* key, std::string* out) {
  auto it = obj.find(key);
  if (it != obj.end() && it->is_string()) *out += it->get_ref<const std::string&>();
}

std::optional<int64_t> get_int(const nlohmann::json& obj, const char* key) {
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_number()) return std::nullopt;
  return it->get<int64_t>();
}

}  // namespace

StreamChunk parse_stream_chunk(std::string_view data) {
  StreamChunk chunk;
  size_t begin = data.find_first_not_of(" \t\r\n");
  if (begin == std::string_view::npos) return chunk;  // empty event: nothing
  data.remove_prefix(begin);
  if (data.substr(0, 6) == "[DONE]") {
    chunk.done = true;
    return chunk;
  }
  const auto j = nlohmann::json::parse(data, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    chunk.error = "malformed stream event: " + std::string(data.substr(0, 200));
    return chunk;
  }
  if (auto err = j.find("error"); err != j.end() && !err->is_null()) {
    if (err->is_object() && err->contains("message") && (*err)["message"].is_string()) {
      chunk.error = (*err)["message"].get<std::string>();
    } else {
      chunk.error = err->dump();
    }
    if (chunk.error.empty()) chunk.error = "error event";
    return chunk;
  }
  if (auto choices = j.find("choices");
      choices != j.end() && choices->is_array() && !choices->empty() && (*choices)[0].is_object()) {
    const nlohmann::json& choice = (*choices)[0];
    append_string(choice, "text", &chunk.text);
    bool has_text = choice.contains("text") && choice["text"].is_string();
    if (auto delta = choice.find("delta"); delta != choice.end() && delta->is_object()) {
      append_string(*delta, "reasoning_content", &chunk.text);
      append_string(*delta, "reasoning", &chunk.text);
      append_string(*delta, "content", &chunk.text);
      if (!delta->contains("role")) {
        for (const char* k : {"content", "reasoning_content", "reasoning"}) {
          if (delta->contains(k) && (*delta)[k].is_string()) has_text = true;
        }
      }
    }
    append_string(choice, "finish_reason", &chunk.finish_reason);
    chunk.token = has_text && !(chunk.text.empty() && !chunk.finish_reason.empty());
  }
  if (auto usage = j.find("usage"); usage != j.end() && usage->is_object()) {
    chunk.num_prompt_tokens = get_int(*usage, "prompt_tokens");
    chunk.num_completion_tokens = get_int(*usage, "completion_tokens");
  }
  return chunk;
}

}  // namespace fs::loadgen
