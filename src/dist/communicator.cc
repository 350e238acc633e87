#include "dist/communicator.h"

#include <cstdio>
#include <cstdlib>

#include "core/log.h"

namespace fs::dist {

double timeout_from_env_s() {
  constexpr double kDefaultTimeoutS = 60.0;
  const char* v = std::getenv("FASTSERVE_DIST_TIMEOUT_S");
  if (v == nullptr || *v == '\0') return kDefaultTimeoutS;
  char* end = nullptr;
  const double s = std::strtod(v, &end);
  return end != v && s > 0 ? s : kDefaultTimeoutS;
}

void fatal(int rank, const char* what, const Status& status) {
  log_error("rank {}: {}: {}; exiting", rank, what, status.message());
  std::fflush(stdout);
  std::fflush(stderr);
  std::_Exit(1);
}

}  // namespace fs::dist
