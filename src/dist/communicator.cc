#include "dist/communicator.h"

#include <cstdio>
#include <cstdlib>

#include "core/log.h"

namespace fs::dist {

void fatal(int rank, const char* what, const Status& status) {
  log_error("rank {}: {}: {}; exiting", rank, what, status.message());
  std::fflush(stdout);
  std::fflush(stderr);
  std::_Exit(1);
}

}  // namespace fs::dist
