// `fastserve sim`: runs the scheduler against a cost model over a trace (src/sim/), prints a
// summary and writes a result JSON with the key names of `vllm bench serve` plus the scheduler's
// own.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "core/status.h"
#include "sched/cost_model.h"
#include "sched/scheduler_config.h"
#include "sim/simulator.h"
#include "sim/trace.h"

namespace fs::cli {
namespace {

struct SimFlags {
  std::string trace = "sharegpt";
  std::string replay;  // a `fastserve bench` result JSON: its requests at its send times
  std::string datasets_dir = "../shared/datasets";
  std::string rate = "1";
  std::string sweep;
  std::string arrival = "poisson";
  double cv = 1.0;
  std::string policy = "skip-join-mlfq";
  std::string kv_policy = "proactive";
  std::string model_profile = "bench/profiles/opt13b_a100.json";
  int64_t num_requests = 1000;
  double device_mem_gb = 0;  // 0: the profile's device_kv_bytes
  double host_mem_gb = -1;   // <0: the profile's host_kv_bytes
  uint64_t seed = 0;
  std::string result_json;
  int32_t max_batch_seqs = 16;
  int32_t max_batch_tokens = 2048;
  double q1_ms = 10;
  double ratio = 2;
  int32_t num_queues = 32;
  double starvation_s = 3;
  bool no_starvation = false;
  bool preemption_hysteresis = sched::MlfqConfig{}.preemption_hysteresis;
  int32_t max_seat_takeover_tokens = sched::MlfqConfig{}.max_seat_takeover_tokens;
  double starvation_multiple = 50;
  double starvation_max_s = 120;
  int32_t max_promotions = 1 << 30;
  int32_t headroom_blocks = -1;
  double swap_budget = sched::SchedulerConfig{}.swap_budget_fraction;
  int32_t fcfs_reserve_tokens = 0;
  double slo_s_per_token = 0.3;
  bool check_integrity = false;
};

Result<double> parse_rate(const std::string& s) {
  if (s == "inf") return std::numeric_limits<double>::infinity();
  try {
    size_t used = 0;
    const double r = std::stod(s, &used);
    if (used == s.size() && r > 0) return r;
  } catch (const std::exception&) {
  }
  return invalid_argument("bad request rate '{}' (a positive number or inf)", s);
}

// The requests a `fastserve bench` run sent (input_lens, target_output_lens: the max_tokens it
// asked for with ignore_eos) at the times it sent them, from its result JSON.
struct Replay {
  std::vector<sim::TraceRequest> requests;
  std::vector<double> arrivals;
};

Result<Replay> load_replay(const std::string& path) {
  std::ifstream in(path);
  if (!in) return not_found("--replay {}: cannot open the file", path);
  nlohmann::json j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  const char* keys[] = {"input_lens", "target_output_lens", "send_times"};
  for (const char* k : keys) {
    if (!j.is_object() || !j.contains(k) || !j[k].is_array()) {
      return data_loss("--replay {}: not a `fastserve bench` result JSON (no '{}' array)", path, k);
    }
  }
  const size_t n = j["send_times"].size();
  if (n == 0 || j["input_lens"].size() != n || j["target_output_lens"].size() != n) {
    return data_loss("--replay {}: input_lens, target_output_lens and send_times differ in length "
                     "or are empty", path);
  }
  Replay r;
  for (size_t i = 0; i < n; ++i) {
    const nlohmann::json &p = j["input_lens"][i], &o = j["target_output_lens"][i],
                         &t = j["send_times"][i];
    if (!p.is_number_integer() || !o.is_number_integer() || !t.is_number() || p.get<int64_t>() < 1 ||
        o.get<int64_t>() < 1 || p.get<int64_t>() > (1 << 30) || o.get<int64_t>() > (1 << 30) ||
        !std::isfinite(t.get<double>())) {
      return data_loss("--replay {}: request {} has a bad length or send time", path, i);
    }
    r.requests.push_back({p.get<int32_t>(), o.get<int32_t>()});
    r.arrivals.push_back(t.get<double>());
  }
  // Sent in this order; the simulator wants arrival times from 0, non-decreasing.
  const double t0 = *std::min_element(r.arrivals.begin(), r.arrivals.end());
  double last = 0;
  for (double& t : r.arrivals) last = t = std::max(last, t - t0);
  return r;
}

Result<nlohmann::json> run_one(const SimFlags& f, const sched::CostModel& cost,
                               const std::vector<sim::TraceRequest>& trace, double rate,
                               const Replay* replay) {
  FS_ASSIGN_OR_RETURN(sched::PolicyKind policy, sched::parse_policy(f.policy));
  FS_ASSIGN_OR_RETURN(sched::KvPolicy kv_policy, sched::parse_kv_policy(f.kv_policy));
  FS_ASSIGN_OR_RETURN(sim::ArrivalProcess arrival, sim::parse_arrival(f.arrival));
  if (!(f.cv > 0)) return invalid_argument("--cv must be > 0, got {}", f.cv);
  sim::SimConfig config;
  config.scheduler.policy = policy;
  config.scheduler.kv_policy = kv_policy;
  config.scheduler.limits.max_seqs = f.max_batch_seqs;
  config.scheduler.limits.max_tokens = f.max_batch_tokens;
  config.scheduler.mlfq.q1_s = f.q1_ms / 1e3;
  config.scheduler.mlfq.ratio = f.ratio;
  config.scheduler.mlfq.num_queues = f.num_queues;
  config.scheduler.mlfq.starvation_threshold_s = f.starvation_s;
  config.scheduler.mlfq.starvation_prevention = !f.no_starvation;
  config.scheduler.mlfq.preemption_hysteresis = f.preemption_hysteresis;
  config.scheduler.mlfq.max_seat_takeover_tokens = f.max_seat_takeover_tokens;
  config.scheduler.mlfq.starvation_quantum_multiple = f.starvation_multiple;
  config.scheduler.mlfq.starvation_max_wait_s = f.starvation_max_s;
  config.scheduler.mlfq.max_promotions_per_check = f.max_promotions;
  config.scheduler.kv_headroom_blocks = f.headroom_blocks;
  config.scheduler.swap_budget_fraction = f.swap_budget;
  config.scheduler.fcfs_reserve_tokens = f.fcfs_reserve_tokens;
  FS_RETURN_IF_ERROR(config.scheduler.validate());
  const double device_bytes =
      f.device_mem_gb > 0 ? f.device_mem_gb * 1e9 : cost.spec().device_kv_bytes;
  const double host_bytes = f.host_mem_gb >= 0 ? f.host_mem_gb * 1e9 : cost.spec().host_kv_bytes;
  if (!(device_bytes > 0)) return invalid_argument("no device KV size: pass --device-mem");
  config.kv = sim::kv_pools_for(cost, device_bytes, host_bytes);
  config.slo_normalized_latency_s = f.slo_s_per_token;
  config.check_integrity = f.check_integrity;

  const auto requests =
      replay ? replay->requests : sim::sample_requests(trace, f.num_requests, f.seed);
  const auto arrivals =
      replay ? replay->arrivals : sim::make_arrivals(arrival, rate, f.cv, f.num_requests, f.seed);
  const auto t0 = std::chrono::steady_clock::now();
  FS_ASSIGN_OR_RETURN(sim::SimResult result, sim::simulate(config, cost, requests, arrivals));
  const double wall_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  nlohmann::json j = result.summary;
  j["backend"] = "fastserve-sim";
  j["model_id"] = cost.spec().name;
  j["dataset_name"] = replay ? f.replay : f.trace;
  if (replay) rate = (requests.size() - 1) / std::max(arrivals.back(), 1e-9);  // the mean rate
  j["request_rate"] = std::isfinite(rate) ? nlohmann::json(rate) : nlohmann::json("inf");
  j["burstiness"] = 1.0 / (f.cv * f.cv);
  j["arrival"] = f.arrival;
  j["cv"] = f.cv;
  j["seed"] = f.seed;
  j["policy"] = f.policy;
  j["kv_policy"] = f.kv_policy;
  j["scheduler_config"] = config.scheduler.to_string();
  j["device_kv_blocks"] = config.kv.num_device_blocks;
  j["host_kv_blocks"] = config.kv.num_host_blocks;
  j["block_size_tokens"] = config.kv.block_size_tokens;
  j["slo_normalized_latency_s"] = f.slo_s_per_token;
  j["sim_wall_s"] = wall_s;
  j["num_generated_tokens"] = result.num_generated_tokens;
  return j;
}

int run_sim(int argc, char** argv) {
  CLI::App app{"Simulate the scheduler against a cost model (docs/SCHEDULING.md)"};
  SimFlags f;
  app.add_option("--trace", f.trace,
                 "sharegpt | alpaca | azure_code | azure_conv | mooncake | FILE (.csv lengths or "
                 ".jsonl texts)");
  app.add_option("--datasets-dir", f.datasets_dir, "folder with the datasets")
      ->capture_default_str();
  app.add_option("--replay", f.replay,
                 "a `fastserve bench --result-json` file: simulate exactly its requests (prompt "
                 "lengths, max_tokens) at its send times (instead of --trace, --rate, "
                 "--num-requests, --seed)");
  app.add_option("--rate", f.rate, "requests per second, or inf")->capture_default_str();
  app.add_option("--sweep", f.sweep, "comma-separated rates: one run per rate (overrides --rate)");
  app.add_option("--arrival", f.arrival, "poisson | gamma")->capture_default_str();
  app.add_option("--cv", f.cv, "coefficient of variation of gamma inter-arrival times");
  app.add_option("--policy", f.policy, "skip-join-mlfq | mlfq | fcfs | vllm | srpt")
      ->capture_default_str();
  app.add_option("--kv-policy", f.kv_policy, "proactive | reactive | recompute")
      ->capture_default_str();
  app.add_option("--model-profile", f.model_profile, "cost model JSON")->capture_default_str();
  app.add_option("--num-requests", f.num_requests, "requests to simulate")->capture_default_str();
  app.add_option("--device-mem", f.device_mem_gb, "device KV pool, GB (default: the profile's)");
  app.add_option("--host-mem", f.host_mem_gb, "host KV pool, GB (default: the profile's)");
  app.add_option("--seed", f.seed, "seed for sampling and arrivals")->capture_default_str();
  app.add_option("--result-json", f.result_json, "write the metrics here");
  app.add_option("--max-batch-seqs", f.max_batch_seqs, "jobs per iteration")->capture_default_str();
  app.add_option("--max-batch-tokens", f.max_batch_tokens, "tokens per iteration")
      ->capture_default_str();
  app.add_option("--q1-ms", f.q1_ms, "MLFQ top quantum, ms")->capture_default_str();
  app.add_option("--ratio", f.ratio, "MLFQ quantum ratio r")->capture_default_str();
  app.add_option("--num-queues", f.num_queues, "MLFQ number of queues K")->capture_default_str();
  app.add_option("--starvation-s", f.starvation_s, "starvation threshold, s")
      ->capture_default_str();
  app.add_option("--starvation-multiple", f.starvation_multiple,
                 "starved also needs idle > this x its level's quantum")
      ->capture_default_str();
  app.add_option("--starvation-max-s", f.starvation_max_s,
                 "cap on that per-level wait, s (0: none)")
      ->capture_default_str();
  app.add_option("--max-promotions", f.max_promotions, "promotions per check, at most");
  app.add_flag("--no-starvation", f.no_starvation, "disable starvation prevention");
  app.add_flag("--preemption-hysteresis,!--no-preemption-hysteresis", f.preemption_hysteresis,
               "(M)LFQ: a running job keeps its seat unless a strictly higher level takes it "
               "(docs/SCHEDULING.md; default on)");
  app.add_option("--max-seat-takeover-tokens", f.max_seat_takeover_tokens,
                 "(M)LFQ with the hysteresis: after the first held seat taken in an iteration, "
                 "more only while their takers' tokens total at most this (-1: no limit)")
      ->capture_default_str();
  app.add_option("--swap-budget", f.swap_budget,
                 "blocking swaps may use at most this fraction of compute time (0: no limit)")
      ->capture_default_str();
  app.add_option("--headroom-blocks", f.headroom_blocks,
                 "proactive free-block reserve (-1: max seqs)");
  app.add_option(
      "--fcfs-reserve-tokens", f.fcfs_reserve_tokens,
      "fcfs: KV tokens reserved per job at least (Orca: max length; 0: prompt + output)");
  app.add_option("--slo", f.slo_s_per_token, "normalized-latency SLO (s/token) for request_goodput")
      ->capture_default_str();
  app.add_flag("--check-integrity", f.check_integrity, "check the KV pools after every iteration");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  auto cost = sched::CostModel::load(f.model_profile);
  if (!cost) {
    std::fprintf(stderr, "fastserve sim: %s\n", cost.status().to_string().c_str());
    return 1;
  }
  std::optional<Replay> replay;
  if (!f.replay.empty()) {
    Result<Replay> r = load_replay(f.replay);
    if (!r.is_ok()) {
      std::fprintf(stderr, "fastserve sim: %s\n", r.status().to_string().c_str());
      return 1;
    }
    replay = std::move(*r);
    f.trace = "";  // unused
  }
  auto trace = replay ? Result<std::vector<sim::TraceRequest>>(std::vector<sim::TraceRequest>{})
                      : sim::load_trace(f.trace, f.datasets_dir, sim::TraceFilter{});
  if (!trace) {
    std::fprintf(stderr, "fastserve sim: %s\n", trace.status().to_string().c_str());
    return 1;
  }
  std::vector<std::string> rates;
  if (f.sweep.empty()) {
    rates.push_back(f.rate);
  } else {
    std::stringstream ss(f.sweep);
    for (std::string r; std::getline(ss, r, ',');) rates.push_back(r);
  }
  nlohmann::json runs = nlohmann::json::array();
  for (const std::string& r : rates) {
    auto rate = parse_rate(r);
    if (!rate) {
      std::fprintf(stderr, "fastserve sim: %s\n", rate.status().to_string().c_str());
      return 2;
    }
    auto j = run_one(f, *cost, *trace, *rate, replay ? &*replay : nullptr);
    if (!j) {
      std::fprintf(stderr, "fastserve sim: %s\n", j.status().to_string().c_str());
      return 1;
    }
    std::printf(
        "%-15s kv=%-9s rate=%-6s completed=%lld  mean/p99 e2el %.0f/%.0f ms  ttft %.0f ms  "
        "norm %.3f s/tok  preempt %lld demote %lld swapped %.1f GB  busy %.2f  (%.1f s)\n",
        f.policy.c_str(), f.kv_policy.c_str(), r.c_str(),
        static_cast<long long>((*j)["completed"].get<int64_t>()),
        (*j)["mean_e2el_ms"].get<double>(), (*j)["p99_e2el_ms"].get<double>(),
        (*j)["mean_ttft_ms"].get<double>(), (*j)["mean_normalized_latency_s"].get<double>(),
        static_cast<long long>((*j)["num_preemptions"].get<int64_t>()),
        static_cast<long long>((*j)["num_demotions"].get<int64_t>()),
        (*j)["swapped_bytes"].get<double>() / 1e9, (*j)["busy_fraction"].get<double>(),
        (*j)["sim_wall_s"].get<double>());
    runs.push_back(std::move(*j));
  }
  if (!f.result_json.empty()) {
    std::ofstream out(f.result_json);
    if (!out) {
      std::fprintf(stderr, "fastserve sim: cannot write %s\n", f.result_json.c_str());
      return 1;
    }
    out << (f.sweep.empty() ? runs[0] : nlohmann::json{{"runs", runs}}).dump(2) << "\n";
  }
  return 0;
}

}  // namespace

FS_REGISTER_COMMAND("sim", "simulate a scheduling policy over a trace with a cost model", run_sim);

}  // namespace fs::cli
