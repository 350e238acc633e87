#include "core/env.h"

#include <cstdlib>

#include "core/log.h"

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

int64_t int_from_env_or(const char* name, int64_t lo, int64_t hi, int64_t fallback) {
  Result<std::optional<int64_t>> v = int_from_env(name, lo, hi);
  if (!v.is_ok()) {
    log_warn("{}; using {}", v.status().message(), fallback);
    return fallback;
  }
  return v->value_or(fallback);
}

}  // namespace fs
