// Which CUDA devices this process sees. Safe to call without a driver or GPU (returns none).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace fs::cuda {

struct DeviceInfo {
  int index = 0;
  std::string name;
  int64_t total_bytes = 0;
  int compute_capability = 0;  // 90 for sm_90
  int num_sms = 0;
};

std::vector<DeviceInfo> list_devices();
std::string describe(const DeviceInfo& d);
// Runs one kernel on the current device and checks its result.
bool smoke_test();

}  // namespace fs::cuda
