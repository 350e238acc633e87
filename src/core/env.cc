#include "core/env.h"

#include <cstdlib>

namespace fs {

Result<std::optional<int64_t>> int_from_env(const char* name, int64_t lo, int64_t hi) {
  const char* env = std::getenv(name);
  if (env == nullptr || *env == '\0') return std::optional<int64_t>();
  char* end = nullptr;
  const long long v = std::strtoll(env, &end, 10);
  if (*end != '\0' || v < lo || v > hi) {
    return invalid_argument("{}='{}': expected {}..{}", name, env, lo, hi);
  }
  return std::optional<int64_t>(v);
}

}  // namespace fs
