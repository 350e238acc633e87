#pragma once

#include <chrono>

namespace fs {

// Monotonic seconds since an arbitrary epoch. The scheduler never calls this; the engine passes time in.
inline double monotonic_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

class Stopwatch {
 public:
  Stopwatch() : start_(monotonic_s()) {}
  double elapsed_s() const { return monotonic_s() - start_; }
  void reset() { start_ = monotonic_s(); }

 private:
  double start_;
};

}  // namespace fs
