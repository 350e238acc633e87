#include "sched/cost_model.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

namespace fs::sched {

namespace {

// Upper bounds that no real profile comes near; they keep every prediction finite.
constexpr double kMaxSeconds = 1e6;
constexpr double kMaxCount = 1e12;  // tokens, batch sizes, bytes per token

bool in_range(double v, double hi) { return std::isfinite(v) && std::fabs(v) <= hi; }

}  // namespace

Status CostModelSpec::validate() const {
  if (block_size_tokens <= 0) return invalid_argument("cost model: block_size_tokens must be > 0");
  if (!in_range(kv_bytes_per_token, kMaxCount) || !in_range(swap_bandwidth_bytes_per_s, 1e18) ||
      !in_range(device_kv_bytes, 1e18) || !in_range(host_kv_bytes, 1e18)) {
    return invalid_argument("cost model: a byte count or bandwidth is out of range");
  }
  for (const auto& p : prefill) {
    if (!in_range(p.tokens, kMaxCount) || !in_range(p.seconds, kMaxSeconds)) {
      return invalid_argument("cost model: prefill point ({}, {}) is out of range", p.tokens,
                              p.seconds);
    }
  }
  for (size_t i = 0; i < prefill.size(); ++i) {
    for (size_t k = i + 1; k < prefill.size(); ++k) {
      if (prefill[i].tokens == prefill[k].tokens) {
        return invalid_argument("cost model: two prefill points at {} tokens", prefill[i].tokens);
      }
    }
  }
  for (const auto& p : decode) {
    if (!in_range(p.batch_size, kMaxCount) || !in_range(p.context_tokens, kMaxCount) ||
        !in_range(p.seconds, kMaxSeconds)) {
      return invalid_argument("cost model: decode point ({}, {}, {}) is out of range",
                              p.batch_size, p.context_tokens, p.seconds);
    }
  }
  if (!(kv_bytes_per_token > 0))
    return invalid_argument("cost model: kv_bytes_per_token must be > 0");
  if (prefill.empty()) return invalid_argument("cost model: prefill needs at least one point");
  if (decode.empty()) return invalid_argument("cost model: decode needs at least one point");
  if (!(swap_bandwidth_bytes_per_s > 0)) {
    return invalid_argument("cost model: swap_bandwidth_bytes_per_s must be > 0");
  }
  for (const auto& p : prefill) {
    if (!(p.tokens > 0) || !(p.seconds > 0)) {
      return invalid_argument("cost model: prefill point ({}, {}) must be positive", p.tokens,
                              p.seconds);
    }
  }
  for (const auto& p : decode) {
    if (!(p.batch_size >= 1) || p.context_tokens < 0 || !(p.seconds > 0)) {
      return invalid_argument("cost model: bad decode point ({}, {}, {})", p.batch_size,
                              p.context_tokens, p.seconds);
    }
  }
  return Status::ok();
}

namespace {

// Solves the 3x3 system a x = b by Gaussian elimination with partial pivoting; false if singular.
bool solve3(double a[3][3], double b[3], double x[3]) {
  for (int col = 0; col < 3; ++col) {
    int piv = col;
    for (int r = col + 1; r < 3; ++r) {
      if (std::fabs(a[r][col]) > std::fabs(a[piv][col])) piv = r;
    }
    if (std::fabs(a[piv][col]) < 1e-300) return false;
    std::swap(a[col], a[piv]);
    std::swap(b[col], b[piv]);
    for (int r = col + 1; r < 3; ++r) {
      const double f = a[r][col] / a[col][col];
      for (int c = col; c < 3; ++c) a[r][c] -= f * a[col][c];
      b[r] -= f * b[col];
    }
  }
  for (int r = 2; r >= 0; --r) {
    double s = b[r];
    for (int c = r + 1; c < 3; ++c) s -= a[r][c] * x[c];
    x[r] = s / a[r][r];
  }
  return true;
}

}  // namespace

Result<CostModel> CostModel::from_spec(CostModelSpec spec) {
  FS_RETURN_IF_ERROR(spec.validate());
  std::sort(spec.prefill.begin(), spec.prefill.end(),
            [](const PrefillPoint& a, const PrefillPoint& b) { return a.tokens < b.tokens; });
  CostModel m;
  m.spec_ = std::move(spec);
  // Least squares over the features (1, batch, context), scaled so the normal equations are well
  // conditioned; a feature that does not vary gets coefficient 0.
  const auto& pts = m.spec_.decode;
  double max_b = 1, max_c = 1;
  bool b_varies = false, c_varies = false;
  for (const auto& p : pts) {
    max_b = std::max(max_b, p.batch_size);
    max_c = std::max(max_c, p.context_tokens);
    b_varies |= p.batch_size != pts[0].batch_size;
    c_varies |= p.context_tokens != pts[0].context_tokens;
  }
  double ata[3][3] = {}, atb[3] = {}, x[3] = {0, 0, 0};
  for (const auto& p : pts) {
    const double f[3] = {1.0, b_varies ? p.batch_size / max_b : 0.0,
                         c_varies ? p.context_tokens / max_c : 0.0};
    for (int i = 0; i < 3; ++i) {
      for (int j = 0; j < 3; ++j) ata[i][j] += f[i] * f[j];
      atb[i] += f[i] * p.seconds;
    }
  }
  for (int i = 1; i < 3; ++i) {
    if (ata[i][i] == 0) ata[i][i] = 1;  // unused feature: x_i = 0
  }
  if (!solve3(ata, atb, x)) return invalid_argument("cost model: decode points are degenerate");
  m.c_[0] = x[0];
  m.c_[1] = x[1] / max_b;
  m.c_[2] = x[2] / max_c;
  return m;
}

Result<CostModel> CostModel::from_json_text(const std::string& text) {
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return invalid_argument("cost model: not a JSON object");
  CostModelSpec s;
  try {
    s.name = j.value("name", "");
    s.source = j.value("source", "");
    const nlohmann::json& block = j.at("block_size_tokens");
    // An integer only: get<int32_t>() of a float or a huge integer would be undefined behaviour.
    if (!block.is_number_integer() || block.get<int64_t>() < 1 || block.get<int64_t>() > 1 << 20) {
      return invalid_argument("cost model: block_size_tokens must be an integer in [1, 2^20]");
    }
    s.block_size_tokens = static_cast<int32_t>(block.get<int64_t>());
    s.kv_bytes_per_token = j.at("kv_bytes_per_token").get<double>();
    for (const auto& p : j.at("prefill")) {
      s.prefill.push_back({p.at(0).get<double>(), p.at(1).get<double>()});
    }
    for (const auto& p : j.at("decode")) {
      s.decode.push_back({p.at(0).get<double>(), p.at(1).get<double>(), p.at(2).get<double>()});
    }
    s.swap_bandwidth_bytes_per_s = j.at("swap_bandwidth_bytes_per_s").get<double>();
    s.device_kv_bytes = j.value("device_kv_bytes", 0.0);
    s.host_kv_bytes = j.value("host_kv_bytes", 0.0);
  } catch (const nlohmann::json::exception& e) {
    return invalid_argument("cost model: {}", e.what());
  }
  return from_spec(std::move(s));
}

Result<CostModel> CostModel::load(const std::string& path) {
  std::ifstream in(path);
  if (!in) return not_found("cost model file {} not found", path);
  std::stringstream ss;
  ss << in.rdbuf();
  auto m = from_json_text(ss.str());
  if (!m) return invalid_argument("{}: {}", path, m.status().message());
  return m;
}

std::string CostModel::to_json_text() const {
  nlohmann::json j;
  j["name"] = spec_.name;
  j["source"] = spec_.source;
  j["block_size_tokens"] = spec_.block_size_tokens;
  j["kv_bytes_per_token"] = spec_.kv_bytes_per_token;
  j["prefill"] = nlohmann::json::array();
  for (const auto& p : spec_.prefill) j["prefill"].push_back({p.tokens, p.seconds});
  j["decode"] = nlohmann::json::array();
  for (const auto& p : spec_.decode) {
    j["decode"].push_back({p.batch_size, p.context_tokens, p.seconds});
  }
  j["swap_bandwidth_bytes_per_s"] = spec_.swap_bandwidth_bytes_per_s;
  if (spec_.device_kv_bytes > 0) j["device_kv_bytes"] = spec_.device_kv_bytes;
  if (spec_.host_kv_bytes > 0) j["host_kv_bytes"] = spec_.host_kv_bytes;
  return j.dump(2);
}

double CostModel::prefill_time_s(double num_tokens) const {
  const auto& p = spec_.prefill;
  // Below the first point, scale towards zero rather than extrapolate to a negative time.
  if (p.size() == 1 || num_tokens <= p[0].tokens) {
    return p[0].seconds * std::max(num_tokens, 1.0) / p[0].tokens;
  }
  size_t hi = 1;
  while (hi + 1 < p.size() && p[hi].tokens < num_tokens) ++hi;
  const PrefillPoint& a = p[hi - 1];
  const PrefillPoint& b = p[hi];
  const double t =
      a.seconds + (b.seconds - a.seconds) * (num_tokens - a.tokens) / (b.tokens - a.tokens);
  return std::max(t, 1e-6);
}

double CostModel::decode_time_s(double batch_size, double context_tokens) const {
  return std::max(c_[0] + c_[1] * batch_size + c_[2] * context_tokens, 1e-6);
}

double CostModel::swap_time_s(double num_bytes) const {
  return num_bytes / spec_.swap_bandwidth_bytes_per_s;
}

double CostModel::forward_time_s(const IterationPlan& plan) const {
  int64_t decode_batch = 0, decode_context = 0, prefill_tokens = 0;
  for (const auto& s : plan.batch) {
    if (s.num_new_tokens == 1 && s.num_computed_tokens > 0) {
      ++decode_batch;
      decode_context += s.num_computed_tokens + 1;
    } else {
      prefill_tokens += s.num_new_tokens;
    }
  }
  double t = 0;
  if (decode_batch > 0) t += decode_time_s(decode_batch, decode_context);
  if (prefill_tokens > 0) {
    t += prefill_time_s(prefill_tokens);
    if (decode_batch > 0) t -= std::min(std::max(c_[0], 0.0), prefill_time_s(prefill_tokens) / 2);
  }
  return t;
}

double CostModel::iteration_time_s(const IterationPlan& plan) const {
  const double bb = block_bytes();
  const double blocking = swap_time_s(bb * (plan.num_blocking_offload + plan.num_blocking_upload));
  const double overlapped = swap_time_s(bb * ((plan.offload.size() - plan.num_blocking_offload) +
                                              (plan.upload.size() - plan.num_blocking_upload)));
  return blocking + std::max(forward_time_s(plan), overlapped);
}

}  // namespace fs::sched
