// Flags shared by the commands that load a model (generate, profile, serve), and their output
// helpers.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "backend/executor.h"
#include "dist/dist_executor.h"
#include "engine/model_runtime.h"
#include "tokenizer/incremental_decoder.h"

namespace fs::cli {

struct ModelArgs {
  std::string model = "default";
  int threads = 0;                   // 0: FASTSERVE_THREADS or all cores
  std::string load_format = "auto";  // auto: the file's weights | dummy: random weights of a shape
  std::string tokenizer;             // dummy: a .gguf or tokenizer.json folder (default model's)
  std::string device = "cpu";        // cpu | cuda
  int tp = 1;                        // tensor-parallel ranks (under mpirun; docs/DISTRIBUTED.md)
  int pp = 1;                        // pipeline stages
  int pp_micro_batches = 0;          // PP batches in flight (0: pp; 1: one batch at a time)
  std::string pp_layer_split = "balanced";  // balanced (the LM head counted) | even
};

// --model, --threads, --load-format, --tokenizer; --device, --tp and --pp when with_device.
void add_model_args(CLI::App& app, ModelArgs& args, bool with_device = true);

// Sizes the thread pool and loads the runtime with its CPU model: --model resolved as a file, or
// with --load-format dummy as a shape name / config.json with random weights ('default': the
// default model's shape, smollm2-135m). Errors name the file or shape.
Result<ModelRuntime> load_runtime(const ModelArgs& args);

// The runtime and the executor that runs it on --device: null for the CPU (the engine wraps
// runtime.lm), a CudaExecutor for cuda (weights uploaded from the file, or made on the GPU for
// dummy; runtime.lm is then null). kUnimplemented when this binary has no CUDA backend,
// kUnavailable when no GPU is visible.
// With --tp/--pp > 1 (under mpirun; --device cpu, or cuda with one GPU a rank): MPI starts, every
// rank loads its shard; rank 0 gets a dist::DistExecutor (runtime.lm null) and every other rank a `worker` (then run_dist_worker
// instead of the command's work). kInvalidArgument when tp * pp is not the MPI world size.
struct ModelSetup {
  ModelRuntime runtime;
  std::unique_ptr<Executor> executor;
  std::unique_ptr<dist::DistWorker> worker;  // set on MPI ranks other than 0
};
Result<ModelSetup> load_model_setup(const ModelArgs& args);

// A worker rank's whole job: carries out rank 0's commands until it shuts down. The exit code.
int run_dist_worker(ModelSetup& setup, const char* command);

// "1,2,3" -> {1, 2, 3}.
Result<std::vector<int32_t>> parse_id_list(const std::string& text);

// Prints generated text to stdout as tokens arrive (UTF-8 safe), or ids when there is no tokenizer.
class StreamPrinter {
 public:
  StreamPrinter(const ModelRuntime& runtime, bool enabled);
  void on_token(int32_t id);
  void finish();

 private:
  const ModelRuntime& runtime_;
  bool enabled_;
  std::unique_ptr<IncrementalDecoder> decoder_;
};

}  // namespace fs::cli
