// FS_CHECK: for bugs only (broken invariants). Aborts with file:line and a message.
#pragma once

#include <cstdio>
#include <cstdlib>

#include <fmt/format.h>

namespace fs::detail {
[[noreturn]] void check_failed(const char* file, int line, const char* cond, const std::string& msg);
}  // namespace fs::detail

#define FS_CHECK(cond, ...)                                                              \
  do {                                                                                   \
    if (!(cond)) [[unlikely]] {                                                          \
      ::fs::detail::check_failed(__FILE__, __LINE__, #cond, ::fmt::format("" __VA_ARGS__)); \
    }                                                                                    \
  } while (0)

#ifdef NDEBUG
#define FS_DCHECK(cond, ...) \
  do {                       \
  } while (0)
#else
#define FS_DCHECK(cond, ...) FS_CHECK(cond, __VA_ARGS__)
#endif
