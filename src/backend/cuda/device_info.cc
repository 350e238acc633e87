// Which CUDA devices this process sees, for logs and `fastserve inspect --devices`.
#include "backend/cuda/device_info.h"

#include <cuda_runtime.h>

#include <fmt/format.h>

namespace fs::cuda {

std::vector<DeviceInfo> list_devices() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver / no device" error
    return {};
  }
  std::vector<DeviceInfo> out;
  for (int i = 0; i < n; ++i) {
    cudaDeviceProp p{};
    if (cudaGetDeviceProperties(&p, i) != cudaSuccess) continue;
    out.push_back({i, p.name, static_cast<int64_t>(p.totalGlobalMem), p.major * 10 + p.minor,
                   p.multiProcessorCount});
  }
  return out;
}

std::string describe(const DeviceInfo& d) {
  return fmt::format("cuda:{} {} (sm_{}, {} SMs, {:.0f} GiB)", d.index, d.name, d.compute_capability,
                     d.num_sms, d.total_bytes / 1073741824.0);
}

}  // namespace fs::cuda
