// Settings read from the environment (FASTSERVE_* tuning knobs).
#pragma once

#include <cstdint>
#include <optional>

#include "core/status.h"

namespace fs {

// An integer setting: nullopt when `name` is unset or empty, kInvalidArgument naming the variable
// when it is not an integer in [lo, hi].
Result<std::optional<int64_t>> int_from_env(const char* name, int64_t lo, int64_t hi);
// The same setting with a default: `fallback` when unset, or when invalid (logged as a warning).
int64_t int_from_env_or(const char* name, int64_t lo, int64_t hi, int64_t fallback);

}  // namespace fs
