// Settings read from the environment (FASTSERVE_* tuning knobs).
#pragma once

#include <cstdint>
#include <optional>

#include "core/status.h"

namespace fs {

// An integer setting: nullopt when `name` is unset or empty, kInvalidArgument naming the variable
// when it is not an integer in [lo, hi].
Result<std::optional<int64_t>> int_from_env(const char* name, int64_t lo, int64_t hi);

}  // namespace fs
