#include "server/metrics_text.h"

#include <fmt/format.h>

namespace fs::server {
namespace {

class Writer {
 public:
  explicit Writer(const std::string& model)
      : labels_(fmt::format("model_name=\"{}\"", escape(model))) {}

  void scalar(const char* name, const char* type, const char* help, double value) {
    header(name, type, help);
    out_ += fmt::format("fastserve:{}{{{}}} {}\n", name, labels_, value);
  }
  void gauge(const char* name, const char* help, double value) {
    scalar(name, "gauge", help, value);
  }
  void counter(const char* name, const char* help, double value) {
    scalar(name, "counter", help, value);
  }

  void histogram(const char* name, const char* help, const LatencyHistogram& h) {
    header(name, "histogram", help);
    int64_t cumulative = 0;
    for (size_t i = 0; i < h.bounds_s.size() && i < h.counts.size(); ++i) {
      cumulative += h.counts[i];
      out_ += fmt::format("fastserve:{}_bucket{{{},le=\"{}\"}} {}\n", name, labels_, h.bounds_s[i],
                          cumulative);
    }
    out_ += fmt::format("fastserve:{}_bucket{{{},le=\"+Inf\"}} {}\n", name, labels_, h.count);
    out_ += fmt::format("fastserve:{}_sum{{{}}} {}\n", name, labels_, h.sum_s);
    out_ += fmt::format("fastserve:{}_count{{{}}} {}\n", name, labels_, h.count);
  }

  void per_level(const char* name, const char* help, const std::vector<int64_t>& values) {
    header(name, "gauge", help);
    for (size_t i = 0; i < values.size(); ++i) {
      out_ +=
          fmt::format("fastserve:{}{{{},queue_level=\"{}\"}} {}\n", name, labels_, i, values[i]);
    }
  }

  std::string take() { return std::move(out_); }

 private:
  void header(const char* name, const char* type, const char* help) {
    out_ += fmt::format("# HELP fastserve:{} {}\n# TYPE fastserve:{} {}\n", name, help, name, type);
  }
  static std::string escape(const std::string& s) {
    std::string r;
    for (char c : s) {
      if (c == '\\' || c == '"') r += '\\';
      if (c == '\n') {
        r += "\\n";
        continue;
      }
      r += c;
    }
    return r;
  }
  std::string labels_;
  std::string out_;
};

}  // namespace

std::string metrics_text(const EngineMetrics& m, const std::string& model_name) {
  Writer w(model_name);
  w.gauge("num_requests_running", "Requests in the running batch.", m.num_requests_running);
  w.gauge("num_requests_waiting", "Requests waiting to be scheduled.", m.num_requests_waiting);
  w.counter("request_total", "Requests submitted.", m.num_requests_total);
  w.counter("num_preemptions_total", "Jobs preempted (offloaded or dropped for recompute).",
            m.num_preemptions_total);
  w.counter("num_demotions_total", "MLFQ demotions.", m.num_demotions_total);
  w.counter("num_promotions_total", "MLFQ starvation promotions.", m.num_promotions_total);
  w.counter("prompt_tokens_total", "Prompt tokens admitted.", m.prompt_tokens_total);
  w.counter("generation_tokens_total", "Tokens generated.", m.generation_tokens_total);
  w.gauge("device_kv_blocks_used", "KV blocks in use in the device pool.", m.device_kv_blocks_used);
  w.gauge("device_kv_blocks_total", "KV blocks in the device pool.", m.device_kv_blocks_total);
  w.gauge("host_kv_blocks_used", "KV blocks in use in the host pool.", m.host_kv_blocks_used);
  w.gauge("host_kv_blocks_total", "KV blocks in the host pool.", m.host_kv_blocks_total);
  w.gauge("kv_cache_usage_perc", "Fraction of device KV blocks in use.",
          m.device_kv_blocks_total > 0 ? static_cast<double>(m.device_kv_blocks_used) /
                                             static_cast<double>(m.device_kv_blocks_total)
                                       : 0.0);
  w.counter("kv_bytes_swapped_out_total", "KV bytes copied device -> host.",
            m.kv_bytes_swapped_out_total);
  w.counter("kv_bytes_swapped_in_total", "KV bytes copied host -> device.",
            m.kv_bytes_swapped_in_total);
  w.counter("num_iterations_total", "Engine iterations.", m.num_iterations_total);
  w.gauge("pipeline_depth", "Forwards the executor keeps in flight at most (pipeline stages).",
          m.pipeline_depth);
  w.gauge("batches_in_flight_max", "Most batches in flight at once since the start.",
          m.batches_in_flight_max);
  w.per_level("num_jobs_per_queue_level", "Jobs in each scheduler queue level.",
              m.jobs_per_queue_level);
  w.histogram("time_to_first_token_seconds", "Time to first token.", m.time_to_first_token);
  w.histogram("e2e_request_latency_seconds", "Arrival to last token.", m.e2e_request_latency);
  w.histogram("time_per_output_token_seconds", "Mean time between output tokens per request.",
              m.time_per_output_token);
  return w.take();
}

}  // namespace fs::server
