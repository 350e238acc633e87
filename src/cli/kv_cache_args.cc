#include "cli/kv_cache_args.h"

#include "dist/dist_executor.h"
#include "model/causal_lm.h"

namespace fs::cli {

void add_kv_cache_args(CLI::App& app, KvCacheArgs& args) {
  app.add_option("--kv-cache-dtype", args.dtype,
                 "CPU KV cache element type: auto (= f32), f32, f16 (half the KV bytes; rounds K/V "
                 "to f16 as llama.cpp's default cache does)")
      ->check(CLI::IsMember({"auto", "f32", "f16"}));
}

Status apply_kv_cache_args(const KvCacheArgs& args, ModelRuntime& runtime) {
  if (args.dtype != "f16") {
    if (runtime.lm) runtime.lm->set_kv_dtype(cpu::KvDtype::kF32);
    return Status::ok();
  }
  if (!runtime.lm) {
    return invalid_argument(
        "--kv-cache-dtype f16 is for the CPU model (not --device cuda, whose cache is bf16)");
  }
  runtime.lm->set_kv_dtype(cpu::KvDtype::kF16);
  return Status::ok();
}

Status apply_kv_cache_args(const KvCacheArgs& args, ModelSetup& setup) {
  const cpu::KvDtype dtype = args.dtype == "f16" ? cpu::KvDtype::kF16 : cpu::KvDtype::kF32;
  if (setup.worker) return setup.worker->set_kv_dtype(dtype);
  if (auto* dist = dynamic_cast<dist::DistExecutor*>(setup.executor.get())) {
    return dist->set_kv_dtype(dtype);
  }
  return apply_kv_cache_args(args, setup.runtime);
}

}  // namespace fs::cli
