// `fastserve serve`: the OpenAI-compatible HTTP server over the engine (docs/SERVER.md).
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>

#include <CLI/CLI.hpp>

#include "cli/command.h"
#include "cli/kv_cache_args.h"
#include "cli/model_args.h"
#include "core/log.h"
#include "engine/engine.h"
#include "server/http_server.h"

namespace fs::cli {
namespace {

std::atomic<bool> g_stop_requested{false};

extern "C" void on_stop_signal(int) { g_stop_requested = true; }

int run_serve(int argc, char** argv) {
  CLI::App app{"Serve the model over an OpenAI-compatible HTTP API."};
  ModelArgs model_args;
  add_model_args(app, model_args);
  KvCacheArgs kv_cache_args;
  add_kv_cache_args(app, kv_cache_args);
  server::ServerConfig server_config;
  EngineConfig engine_config;
  if (const char* key = std::getenv("FASTSERVE_API_KEY")) server_config.api_key = key;
  app.add_option("--host", server_config.host, "address to bind (default 127.0.0.1)");
  app.add_option("--port", server_config.port, "port (default 8000; 0: any free port)");
  app.add_option("--api-key", server_config.api_key,
                 "require Authorization: Bearer KEY on /v1/* (or FASTSERVE_API_KEY)");
  app.add_option("--served-model-name", server_config.served_model_name,
                 "model id in the API (default: the file name)");
  app.add_option("--http-threads", server_config.num_http_threads,
                 "I/O threads of the event loop (default 1)");
  app.add_option("--max-body-bytes", server_config.max_body_bytes, "larger request bodies get 413");
  app.add_option("--max-header-bytes", server_config.max_header_bytes,
                 "larger request headers get 431");
  app.add_option("--max-prompt-tokens", server_config.max_prompt_tokens,
                 "longer prompts get 400 (0: the context)");
  app.add_option("--max-output-tokens", server_config.max_output_tokens,
                 "larger max_tokens get 400 (0: the context)");
  app.add_option("--max-connections", server_config.max_connections,
                 "open connections beyond this get 503 + Retry-After");
  app.add_option("--header-timeout-s", server_config.header_timeout_s,
                 "a request's headers must arrive within this");
  app.add_option("--body-timeout-s", server_config.body_timeout_s,
                 "a request's body must arrive within this after its headers");
  app.add_option("--keep-alive-timeout-s", server_config.keep_alive_timeout_s,
                 "idle keep-alive connections are closed after this");
  app.add_option("--write-timeout-s", server_config.write_timeout_s,
                 "a client that reads nothing for this long is dropped");
  app.add_option("--request-timeout-s", server_config.request_timeout_s,
                 "generations running longer end with 504 / an error event (0: no limit)");
  app.add_option("--policy", engine_config.policy, "skip-join-mlfq | mlfq | fcfs | vllm");
  app.add_option("--kv-policy", engine_config.kv_policy, "proactive | reactive | recompute");
  app.add_option("--kv-block-size", engine_config.kv_block_size, "tokens per KV block");
  app.add_option("--device-kv-blocks", engine_config.device_kv_blocks,
                 "device KV pool size in blocks (0: default)");
  app.add_option("--host-kv-blocks", engine_config.host_kv_blocks,
                 "host KV pool size in blocks (0: default)");
  app.add_option("--max-num-seqs", engine_config.max_num_seqs, "sequences per iteration");
  app.add_option("--max-num-batched-tokens", engine_config.max_num_batched_tokens,
                 "token budget per iteration");
  app.add_option("--max-queued-requests", engine_config.max_queued_requests,
                 "requests in the engine (running + waiting) beyond this get 429");
  app.add_option("--cost-model", engine_config.cost_model_path, "`fastserve profile` output");
  app.add_flag("--preemption-hysteresis,!--no-preemption-hysteresis",
               engine_config.preemption_hysteresis,
               "(M)LFQ: a running job keeps its seat unless a strictly higher level takes it "
               "(docs/SCHEDULING.md; default on)");
  CLI11_PARSE(app, argc, argv);
  if (Status s = server_config.validate(); !s.is_ok()) {
    std::fprintf(stderr, "fastserve serve: %s\n", s.message().c_str());
    return 2;
  }
  if (Status s = engine_config.validate(); !s.is_ok()) {
    std::fprintf(stderr, "fastserve serve: %s\n", s.message().c_str());
    return 2;
  }

  Result<ModelSetup> setup = load_model_setup(model_args);
  if (!setup.is_ok()) {
    std::fprintf(stderr, "fastserve serve: %s\n", setup.status().message().c_str());
    return 1;
  }
  if (Status st = apply_kv_cache_args(kv_cache_args, *setup); !st.is_ok()) {
    std::fprintf(stderr, "fastserve serve: %s\n", st.message().c_str());
    return 2;
  }
  if (setup->worker) return run_dist_worker(*setup, "serve");  // MPI rank > 0: rank 0 serves
  const std::string model_path = setup->runtime.model_path;
  const std::string file_name = std::filesystem::path(model_path).filename().string();
  const std::string stem = std::filesystem::path(model_path).stem().string();
  if (server_config.served_model_name.empty()) server_config.served_model_name = stem;
  server_config.model_aliases = {model_args.model, model_path, file_name, stem};

  Result<std::unique_ptr<Engine>> engine =
      Engine::create(std::move(setup->runtime), engine_config, std::move(setup->executor));
  if (!engine.is_ok()) {
    std::fprintf(stderr, "fastserve serve: %s\n", engine.status().message().c_str());
    return 1;
  }
  (*engine)->start();

  server::HttpServer server(**engine, server_config);
  if (Status s = server.bind(); !s.is_ok()) {
    std::fprintf(stderr, "fastserve serve: %s\n", s.message().c_str());
    (*engine)->stop();
    return 1;
  }

  std::signal(SIGPIPE, SIG_IGN);
  struct sigaction action = {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
  std::atomic<bool> serving_done{false};
  std::thread watcher([&] {
    while (!g_stop_requested && !serving_done)
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (g_stop_requested) {
      log_info("fastserve: stopping (signal)");
      server.stop();
    }
  });

  std::printf("fastserve: serving %s on http://%s:%d\n", server_config.served_model_name.c_str(),
              server_config.host.c_str(), server.port());
  std::fflush(stdout);
  server.serve();
  serving_done = true;
  watcher.join();
  (*engine)->stop();
  log_info("fastserve: stopped");
  return 0;
}

}  // namespace

FS_REGISTER_COMMAND("serve", "serve the model over an OpenAI-compatible HTTP API", run_serve);

}  // namespace fs::cli
