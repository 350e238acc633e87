// `fastserve bench`: the serving benchmark client, in the manner of `vllm bench serve`. Sends a
// dataset's prompts to any OpenAI-compatible server at a request rate (Poisson or gamma arrivals),
// streams the replies, prints vLLM's result table and writes its result JSON (src/loadgen/,
// docs/BENCHMARKS.md "Serving benchmark"). --request-rates runs a sweep, one JSON per rate.
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "loadgen/bench_metrics.h"
#include "loadgen/bench_runner.h"
#include "loadgen/dataset.h"
#include "loadgen/http_client.h"
#include "model/model_path.h"
#include "tokenizer/tokenizer.h"

namespace fs::cli {
namespace {

struct BenchFlags {
  std::string base_url;
  std::string host = "127.0.0.1";
  int port = 8000;
  std::string endpoint = "completions";
  std::string model;
  std::string tokenizer = "default";
  std::string api_key;
  loadgen::DatasetOptions dataset;
  std::string request_rate = "inf";
  std::string request_rates;
  std::string result_dir;
  std::string result_json;
  std::string label;
  double burstiness = 1;
  int32_t max_concurrency = 0;
  bool ignore_eos = false;
  double temperature = 0;
  std::string extra_body;
  std::vector<std::string> goodput;
  std::vector<std::string> slos;
  bool quiet = false;
  int32_t num_warmups = 0;
  std::string metric_percentiles = "50,90,95,99";
};

Result<double> parse_rate(const std::string& s) {
  if (s == "inf") return std::numeric_limits<double>::infinity();
  char* end = nullptr;
  const double r = std::strtod(s.c_str(), &end);
  if (s.empty() || end != s.c_str() + s.size() || !(r > 0)) {
    return invalid_argument("bad request rate '{}' (a positive number or inf)", s);
  }
  return r;
}

std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%d-%H%M%S", &tm);
  return buf;
}

// The tokenizer that counts prompt and output tokens: --tokenizer, or the default model's when
// it is there (else none: ceil(chars / 4)). An explicit path that fails to load is an error.
Result<std::unique_ptr<Tokenizer>> load_bench_tokenizer(const std::string& arg) {
  if (arg == "none") return std::unique_ptr<Tokenizer>();
  Result<std::string> path = resolve_model_path(arg);
  if (!path) {
    if (arg == "default") {
      std::fprintf(stderr, "fastserve bench: no default model; counting tokens as chars / 4\n");
      return std::unique_ptr<Tokenizer>();
    }
    return path.status();
  }
  return Tokenizer::load(*path);
}

int fail(const Status& status, int code = 1) {
  std::fprintf(stderr, "fastserve bench: %s\n", status.to_string().c_str());
  return code;
}

Status write_json(const std::string& path, const nlohmann::json& j) {
  std::ofstream out(path);
  if (!out) return make_error(StatusCode::kNotFound, "cannot write {}", path);
  out << j.dump(2) << "\n";
  return out ? Status::ok() : make_error(StatusCode::kDataLoss, "error writing {}", path);
}

// The run's settings and provenance, beside the metrics in the result JSON.
void add_run_settings(const BenchFlags& f, const loadgen::RunOptions& run,
                      const loadgen::RunOutcome& outcome, bool has_tokenizer, nlohmann::json* out) {
  nlohmann::json& j = *out;
  j["date"] = utc_now();
  j["backend"] = "openai";
  j["endpoint_type"] = run.endpoint.chat ? "openai-chat" : "openai";
  j["base_url"] = run.endpoint.base_url;
  j["endpoint"] = run.endpoint.path;
  j["label"] = f.label;
  j["model_id"] = f.model;
  j["tokenizer_id"] = has_tokenizer ? f.tokenizer : "chars/4";
  j["dataset_name"] = f.dataset.name;
  j["dataset_path"] = loadgen::dataset_file(f.dataset);
  j["request_rate"] =
      std::isfinite(run.request_rate) ? nlohmann::json(run.request_rate) : nlohmann::json("inf");
  j["burstiness"] = f.burstiness;
  j["max_concurrency"] =
      f.max_concurrency > 0 ? nlohmann::json(f.max_concurrency) : nlohmann::json(nullptr);
  j["max_concurrent_requests"] = outcome.max_in_flight;
  j["seed"] = f.dataset.seed;
  j["ignore_eos"] = f.ignore_eos;
  j["max_output_len"] = f.dataset.max_output_len;
  bool all_usage = true;
  for (const auto& r : outcome.results) all_usage = all_usage && (!r.success || r.usage_reported);
  j["usage_reported"] = all_usage;  // false: output lengths are counts of text chunks
}

int run_bench(int argc, char** argv) {
  CLI::App app{"Benchmark an OpenAI-compatible server (like `vllm bench serve`)"};
  BenchFlags f;
  app.add_option("--base-url", f.base_url, "server URL, e.g. http://127.0.0.1:8000");
  app.add_option("--host", f.host, "server host when no --base-url")->capture_default_str();
  app.add_option("--port", f.port, "server port when no --base-url")->capture_default_str();
  app.add_option("--endpoint", f.endpoint, "completions | chat | a path such as /v1/completions")
      ->capture_default_str();
  app.add_option("--model", f.model, "model name sent (default: the first of GET /v1/models)");
  app.add_option("--tokenizer", f.tokenizer,
                 "tokenizer for token counts: .gguf, tokenizer.json, HF folder, default, none")
      ->capture_default_str();
  app.add_option("--api-key", f.api_key, "Bearer token")->envname("OPENAI_API_KEY");
  app.add_option("--dataset", f.dataset.name,
                 "sharegpt | alpaca | random | FILE (.jsonl prompt/output or .csv lengths)")
      ->capture_default_str();
  app.add_option("--dataset-path", f.dataset.path, "file to read instead of the named dataset's");
  app.add_option("--datasets-dir", f.dataset.datasets_dir, "folder of sharegpt/alpaca")
      ->capture_default_str();
  app.add_option("--num-prompts", f.dataset.num_prompts, "requests to send")->capture_default_str();
  app.add_option("--random-input-len", f.dataset.random_input_len, "random: prompt tokens")
      ->capture_default_str();
  app.add_option("--random-output-len", f.dataset.random_output_len, "random: output tokens")
      ->capture_default_str();
  app.add_option("--random-range-ratio", f.dataset.random_range_ratio,
                 "random: lengths uniform in len * [1 - r, 1 + r]")
      ->capture_default_str();
  app.add_option("--max-output-len", f.dataset.max_output_len,
                 "cap on every request's max_tokens (0: none)")
      ->capture_default_str();
  app.add_option("--request-rate", f.request_rate, "requests per second, or inf")
      ->capture_default_str();
  app.add_option("--request-rates", f.request_rates,
                 "sweep: comma-separated rates (e.g. 1,2,4,inf), one run and JSON each");
  app.add_option("--result-dir", f.result_dir, "sweep: folder for one JSON per rate");
  app.add_option("--burstiness", f.burstiness, "gamma shape of arrivals (1: Poisson)")
      ->capture_default_str();
  app.add_option("--max-concurrency", f.max_concurrency, "requests in flight at most (0: none)")
      ->capture_default_str();
  app.add_option("--seed", f.dataset.seed, "seed for sampling and arrivals")->capture_default_str();
  app.add_flag("--ignore-eos", f.ignore_eos, "send ignore_eos: true (generate max_tokens)");
  app.add_option("--temperature", f.temperature, "sampling temperature")->capture_default_str();
  app.add_option("--extra-body", f.extra_body, "JSON object merged into every request body");
  app.add_option("--goodput", f.goodput, "SLOs for request_goodput: ttft:MS tpot:MS e2el:MS")
      ->expected(1, 3);
  app.add_option("--slo", f.slos, "TTFT_MS:NORMALIZED_LATENCY_MS for slo_attainment (repeatable)");
  app.add_option("--result-json", f.result_json, "write the result JSON here");
  app.add_option("--label", f.label, "label in the JSON and the sweep file names");
  app.add_flag("--quiet", f.quiet, "no progress bar");
  app.add_option("--num-warmups", f.num_warmups,
                 "requests sent one at a time before each run, not measured")
      ->capture_default_str();
  app.add_option("--metric-percentiles", f.metric_percentiles,
                 "percentiles reported as p<P>_<metric>_ms, comma-separated")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  // A server that closes a connection mid-write must fail that request, not kill the client.
  std::signal(SIGPIPE, SIG_IGN);

  if (!(f.burstiness > 0)) return fail(invalid_argument("--burstiness must be > 0"), 2);
  if (f.max_concurrency < 0) return fail(invalid_argument("--max-concurrency must be >= 0"), 2);
  auto goodput = loadgen::parse_goodput(f.goodput);
  if (!goodput) return fail(goodput.status(), 2);
  loadgen::SummaryOptions summary_options;
  summary_options.goodput = *goodput;
  for (const std::string& s : f.slos) {
    auto slo = loadgen::parse_latency_slo(s);
    if (!slo) return fail(slo.status(), 2);
    summary_options.latency_slos.push_back(*slo);
  }
  summary_options.percentiles.clear();
  for (const std::string& p : split_commas(f.metric_percentiles)) {
    char* end = nullptr;
    const double v = std::strtod(p.c_str(), &end);
    if (end != p.c_str() + p.size() || !(v > 0 && v < 100)) {
      return fail(invalid_argument("bad --metric-percentiles item '{}' (0 < p < 100)", p), 2);
    }
    summary_options.percentiles.push_back(v);
  }
  if (f.num_warmups < 0) return fail(invalid_argument("--num-warmups must be >= 0"), 2);
  std::vector<std::string> rate_texts = f.request_rates.empty()
                                            ? std::vector<std::string>{f.request_rate}
                                            : split_commas(f.request_rates);
  std::vector<double> rates;
  for (const std::string& r : rate_texts) {
    auto rate = parse_rate(r);
    if (!rate) return fail(rate.status(), 2);
    rates.push_back(*rate);
  }
  if (rates.empty()) return fail(invalid_argument("--request-rates is empty"), 2);
  if (!f.request_rates.empty() && f.result_dir.empty() && f.result_json.empty()) {
    std::fprintf(stderr, "fastserve bench: a sweep without --result-dir writes no JSON\n");
  }

  loadgen::RunOptions run;
  run.endpoint.base_url =
      f.base_url.empty() ? fmt::format("http://{}:{}", f.host, f.port) : f.base_url;
  run.endpoint.chat = f.endpoint == "chat";
  run.endpoint.path = f.endpoint == "completions" ? "/v1/completions"
                      : f.endpoint == "chat"      ? "/v1/chat/completions"
                                                  : f.endpoint;
  if (run.endpoint.path.empty() || run.endpoint.path.front() != '/') {
    return fail(invalid_argument("bad --endpoint '{}' (completions, chat or /path)", f.endpoint),
                2);
  }
  if (run.endpoint.path.find("chat") != std::string::npos) run.endpoint.chat = true;
  run.endpoint.api_key = f.api_key;
  run.endpoint.ignore_eos = f.ignore_eos;
  run.endpoint.temperature = f.temperature;
  if (!f.extra_body.empty()) {
    run.endpoint.extra_body = nlohmann::json::parse(f.extra_body, nullptr, false);
    if (!run.endpoint.extra_body.is_object()) {
      return fail(invalid_argument("--extra-body is not a JSON object"), 2);
    }
  }
  if (auto base = loadgen::split_base_url(run.endpoint.base_url); !base) {
    return fail(base.status(), 2);
  }
  run.burstiness = f.burstiness;
  run.max_concurrency = f.max_concurrency;
  run.seed = f.dataset.seed;
  run.progress = !f.quiet && isatty(STDERR_FILENO);

  // The model: asked of the server when not given (which also checks that it is up).
  auto listed = loadgen::fetch_first_model(run.endpoint);
  if (f.model.empty()) {
    if (!listed) return fail(listed.status());
    f.model = *listed;
  } else if (!listed) {
    std::fprintf(stderr, "fastserve bench: warning: %s\n", listed.status().message().c_str());
  }
  run.endpoint.model = f.model;

  auto tokenizer = load_bench_tokenizer(f.tokenizer);
  if (!tokenizer) return fail(tokenizer.status());
  const auto t0 = std::chrono::steady_clock::now();
  auto requests = loadgen::sample_requests(f.dataset, tokenizer->get());
  if (!requests) return fail(requests.status());
  std::fprintf(stderr, "fastserve bench: %zu requests from %s (%.1f s), model %s at %s%s\n",
               requests->size(), f.dataset.name.c_str(),
               std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(),
               f.model.c_str(), run.endpoint.base_url.c_str(), run.endpoint.path.c_str());

  if (!f.result_dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(f.result_dir, ec);
    if (ec) return fail(make_error(StatusCode::kNotFound, "cannot create {}", f.result_dir));
  }
  nlohmann::json runs = nlohmann::json::array();
  bool any_run_empty = false;  // a run where no request completed: exit 1 (after the JSON)
  for (size_t k = 0; k < rates.size(); ++k) {
    run.request_rate = rates[k];
    std::fprintf(stderr, "fastserve bench: request rate %s, burstiness %g, max concurrency %s\n",
                 rate_texts[k].c_str(), f.burstiness,
                 f.max_concurrency > 0 ? std::to_string(f.max_concurrency).c_str() : "none");
    for (int32_t w = 0; w < f.num_warmups; ++w) {
      const auto& req = (*requests)[static_cast<size_t>(w) % requests->size()];
      const loadgen::RequestResult r =
          loadgen::send_request(run.endpoint, req, std::chrono::steady_clock::now());
      if (!r.success) return fail(make_error(StatusCode::kUnavailable, "warmup: {}", r.error));
    }
    loadgen::RunOutcome outcome = loadgen::run_benchmark(run, *requests);
    nlohmann::json j = loadgen::summarize(outcome.results, outcome.duration_s, summary_options);
    add_run_settings(f, run, outcome, tokenizer->get() != nullptr, &j);
    std::printf("%s", loadgen::format_report(j).c_str());
    std::fflush(stdout);
    for (const auto& r : outcome.results) {
      if (!r.success) {
        std::fprintf(stderr, "fastserve bench: first error: %s\n", r.error.c_str());
        break;
      }
    }
    if (!f.result_dir.empty()) {
      const std::string name =
          fmt::format("{}rate-{}.json", f.label.empty() ? "" : f.label + "-", rate_texts[k]);
      const std::string path = (std::filesystem::path(f.result_dir) / name).string();
      if (Status s = write_json(path, j); !s.is_ok()) return fail(s);
      std::fprintf(stderr, "fastserve bench: wrote %s\n", path.c_str());
    }
    any_run_empty = any_run_empty || j["completed"].get<int64_t>() == 0;
    runs.push_back(std::move(j));
  }
  if (!f.result_json.empty()) {
    const nlohmann::json& out = rates.size() == 1 ? runs[0] : nlohmann::json{{"runs", runs}};
    if (Status s = write_json(f.result_json, out); !s.is_ok()) return fail(s);
  }
  return any_run_empty ? 1 : 0;
}

}  // namespace

FS_REGISTER_COMMAND("bench", "benchmark an OpenAI-compatible server (like vllm bench serve)",
                    run_bench);

}  // namespace fs::cli
