// --kv-cache-dtype (vLLM's flag name) for the commands that run the CPU model: generate, profile,
// serve.
#pragma once

#include <string>

#include <CLI/CLI.hpp>

#include "cli/model_args.h"
#include "core/status.h"

namespace fs::cli {

struct KvCacheArgs {
  // auto: f32 (keeps the numerics fixtures bit-for-bit; docs/KERNELS.md "KV cache dtype")
  // f32 | f16: the CPU KV cache's element type (f16: half the bytes per token, as llama.cpp's
  // default KV type; rows are rounded to f16 when written).
  std::string dtype = "auto";
};

void add_kv_cache_args(CLI::App& app, KvCacheArgs& args);

// Sets the CPU model's KV element type before any cache is made. kInvalidArgument for f16 when the
// model does not run on the CPU (--device cuda: the GPU cache is bf16).
Status apply_kv_cache_args(const KvCacheArgs& args, ModelRuntime& runtime);
// The same for a loaded setup: with --tp/--pp every rank sets its shard's (call it on every rank,
// before run_dist_worker).
Status apply_kv_cache_args(const KvCacheArgs& args, ModelSetup& setup);

}  // namespace fs::cli
