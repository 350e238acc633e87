// Fuzzes the streamed-output path after sampling: StopMatcher over arbitrary stop strings and
// pieces, each emitted piece framed as an SSE chunk (ResponseBuilder + sse_event) and parsed back.
// Input: byte 0 = number of stop strings (low 2 bits); then segments separated by 0xff: the stop
// strings, then the pieces (the last one fed with flush). Checks: the text sent plus what is held
// equals the input up to the stop; sent text never contains a stop string; a stop is found exactly
// when the whole input contains one; every SSE event is "data: <valid JSON>\n\n" carrying the text
// (as valid UTF-8, with invalid bytes replaced).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/check.h"
#include "engine/stop_matcher.h"
#include "server/openai_response.h"
#include "server/sse.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const size_t num_stops = data[0] & 3;
  const auto endpoint =
      (data[0] & 4) ? fs::server::Endpoint::kChatCompletions : fs::server::Endpoint::kCompletions;
  std::vector<std::string> segments(1);
  for (size_t i = 1; i < size; ++i) {
    if (data[i] == 0xff) {
      segments.emplace_back();
    } else {
      segments.back().push_back(static_cast<char>(data[i]));
    }
  }
  std::vector<std::string> stops;
  size_t next = 0;
  for (; next < segments.size() && stops.size() < num_stops; ++next)
    stops.push_back(segments[next]);
  std::vector<std::string> pieces(segments.begin() + static_cast<std::ptrdiff_t>(next),
                                  segments.end());

  fs::StopMatcher matcher(stops);
  fs::server::ResponseBuilder builder(endpoint, "id", "model", -1, nullptr);
  std::string input, sent;
  bool stopped = false;
  for (size_t i = 0; i < pieces.size() && !stopped; ++i) {
    input += pieces[i];
    const bool flush = i + 1 == pieces.size();
    fs::StopMatcher::Step step = matcher.feed(pieces[i], flush);
    sent += step.text;
    stopped = step.stopped;
    FS_CHECK(input.compare(0, sent.size(), sent) == 0, "sent text is not a prefix of the input");
    if (flush && !stopped) FS_CHECK(sent == input, "flush held text back");

    fs::GenerationEvent event;
    event.token = 1;
    event.text = step.text;
    const std::string sse = fs::server::sse_event(builder.token_chunk(event));
    FS_CHECK(sse.rfind("data: ", 0) == 0 && sse.size() >= 8 && sse.substr(sse.size() - 2) == "\n\n",
             "bad SSE framing");
    const std::string_view payload(sse.data() + 6, sse.size() - 8);
    FS_CHECK(payload.find('\n') == std::string_view::npos, "newline inside an SSE event");
    const nlohmann::json parsed = nlohmann::json::parse(payload, nullptr, false);
    FS_CHECK(!parsed.is_discarded(), "SSE payload is not JSON");
  }
  for (const std::string& s : stops) {
    if (!s.empty()) FS_CHECK(sent.find(s) == std::string::npos, "sent text contains a stop string");
  }
  if (!pieces.empty()) {
    bool contains = false;
    for (const std::string& s : stops)
      contains = contains || (!s.empty() && input.find(s) != std::string::npos);
    FS_CHECK(contains == stopped, "stop found {} but the input contains one: {}", stopped,
             contains);
  }
  // After a stop, nothing more is sent.
  if (stopped) FS_CHECK(matcher.feed("x", true).text.empty(), "text after the stop");
  (void)builder.full_response("stop", 1, 1);
  return 0;
}
