#include <gtest/gtest.h>

#include "backend/cuda/device_info.h"

namespace fs::cuda {
namespace {

// Tests under tests/unit/backend_cuda run their checks only where a GPU is present (the GPU
// machines); elsewhere (CI, the dev machines) they build, link and skip.
TEST(CudaSmoke, RunsAKernel) {
  if (list_devices().empty()) GTEST_SKIP() << "no CUDA device";
  EXPECT_TRUE(smoke_test());
  for (const DeviceInfo& d : list_devices()) std::printf("%s\n", describe(d).c_str());
}

}  // namespace
}  // namespace fs::cuda
