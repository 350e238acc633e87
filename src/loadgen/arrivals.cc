#include "loadgen/arrivals.h"

#include <cmath>
#include <random>

#include "core/check.h"

namespace fs::loadgen {

std::vector<double> make_arrival_times(double rate_per_s, double burstiness, int64_t num_requests,
                                       uint64_t seed) {
  FS_CHECK(rate_per_s > 0 && burstiness > 0, "rate and burstiness must be > 0");
  std::vector<double> times(static_cast<size_t>(num_requests), 0.0);
  if (!std::isfinite(rate_per_s)) return times;
  std::mt19937_64 rng(seed ^ 0x51ed270b27e5f3a1ull);
  std::gamma_distribution<double> gap(burstiness, 1.0 / (rate_per_s * burstiness));
  double now_s = 0;
  for (size_t i = 1; i < times.size(); ++i) {
    now_s += gap(rng);
    times[i] = now_s;
  }
  return times;
}

}  // namespace fs::loadgen
