// Stop strings over streamed text: emits text as soon as it cannot be the start of a stop string,
// holds back the tail that still could, and cuts the output where a stop string begins (the stop
// string itself is not part of the output, as in the OpenAI API).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace fs {

class StopMatcher {
 public:
  StopMatcher() = default;
  explicit StopMatcher(std::vector<std::string> stops);

  struct Step {
    std::string text;      // safe to send now
    bool stopped = false;  // a stop string was found: `text` ends where it began; stop generating
  };
  // Appends `piece` (complete UTF-8 characters). With flush, nothing is held back.
  Step feed(std::string_view piece, bool flush);

 private:
  std::vector<std::string> stops_;
  std::string held_;
  bool stopped_ = false;
};

}  // namespace fs
