// Client side of OpenAI-style server-sent event streams: the byte stream split into events, and
// one event's data interpreted as a completion or chat-completion chunk. Tolerant of the shapes
// real servers send (vLLM, llama.cpp server, ours): role-only and empty deltas, a final
// usage-only chunk with no choices, "usage": null on every chunk, CRLF line ends.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace fs::loadgen {

// Splits bytes, fed in arbitrary pieces, into events (WHATWG server-sent events: "data:" lines
// joined by '\n', an empty line ends the event, ':' lines are comments, other fields ignored).
// Not thread-safe; one per stream.
class SseParser {
 public:
  // Appends the data of every event completed by bytes to events.
  void feed(std::string_view bytes, std::vector<std::string>* events);
  // At the end of the stream: an event the server did not end with an empty line, if any.
  void finish(std::vector<std::string>* events);

 private:
  void take_line(std::string_view line, std::vector<std::string>* events);
  std::string line_;  // the partial line not yet ended
  std::string data_;  // data of the event in progress
  bool has_data_ = false;
  bool last_was_cr_ = false;
};

struct StreamChunk {
  bool done = false;  // the "[DONE]" sentinel
  std::string text;   // choices[0].text, or delta.content (+ reasoning_content / reasoning)
  // The event carries a generated token, its text possibly empty (part of a character, a token the
  // tokenizer renders as nothing): choices[0] has a string "text", or a delta with string content
  // and no "role" (a chat stream's opening chunk), and it is not a text-less finish chunk. vLLM's
  // benchmark times every such event ("text could be empty here, e.g. for special tokens").
  bool token = false;
  std::string finish_reason;
  std::optional<int64_t> num_prompt_tokens;      // usage.prompt_tokens
  std::optional<int64_t> num_completion_tokens;  // usage.completion_tokens
  std::string error;  // non-empty: the event was an error object, or not JSON
};

// Interprets one event's data. Never fails: a malformed event comes back with error set.
StreamChunk parse_stream_chunk(std::string_view data);

}  // namespace fs::loadgen
