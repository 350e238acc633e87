// A progress line for long loads (reading a large model into memory, uploading it to a GPU):
// "what: 40% (6.4 of 16.0 GB, 3.2 s)" each time another tenth is done, and once at the end.
// Totals below min_total log nothing (small models load at once).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "core/timer.h"

namespace fs {

class Progress {
 public:
  using Sink = std::function<void(std::string_view line)>;
  static constexpr uint64_t kDefaultMinTotal = uint64_t{1} << 30;  // 1 GiB
  // sink: where lines go (default: log_info).
  Progress(std::string what, uint64_t total, uint64_t min_total = kDefaultMinTotal,
           Sink sink = nullptr);
  // `done` of `total` are done now (non-decreasing); logs when it crosses a tenth.
  void update(uint64_t done);

 private:
  std::string what_;
  uint64_t total_;
  bool on_;
  int tenths_logged_ = 0;
  Sink sink_;
  Stopwatch timer_;
};

}  // namespace fs
