#include "core/progress.h"

#include <algorithm>

#include <fmt/format.h>

#include "core/log.h"

namespace fs {

Progress::Progress(std::string what, uint64_t total, uint64_t min_total, Sink sink)
    : what_(std::move(what)), total_(total), on_(total > 0 && total >= min_total),
      sink_(std::move(sink)) {}

void Progress::update(uint64_t done) {
  if (!on_) return;
  done = std::min(done, total_);
  const int tenths = static_cast<int>(done * 10 / total_);
  if (tenths <= tenths_logged_) return;
  tenths_logged_ = tenths;
  const std::string line =
      fmt::format("{}: {}% ({:.1f} of {:.1f} GB, {:.1f} s)", what_, tenths * 10,
                  static_cast<double>(done) / 1e9, static_cast<double>(total_) / 1e9,
                  timer_.elapsed_s());
  if (sink_) {
    sink_(line);
  } else {
    log_info("{}", line);
  }
}

}  // namespace fs
