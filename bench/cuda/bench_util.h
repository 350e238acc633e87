// Small helpers the CUDA benchmarks share: exit with a message on any CUDA or FastServe error (a
// benchmark has nothing to recover), and a monotonic clock in seconds. Each tool sets its name for
// the messages with set_tool_name.
#pragma once

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include <cuda_runtime.h>

#include "core/status.h"

namespace fs::bench {

inline const char*& tool_name() {
  static const char* name = "bench";
  return name;
}
inline void set_tool_name(const char* name) { tool_name() = name; }

[[noreturn]] inline void die(const std::string& what) {
  std::fprintf(stderr, "%s: %s\n", tool_name(), what.c_str());
  std::exit(1);
}
inline void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess) die(std::string(what) + ": " + cudaGetErrorString(err));
}
inline void check(const Status& s) {
  if (!s.is_ok()) die(s.to_string());
}

inline double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace fs::bench
