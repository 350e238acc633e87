#include "cli/kv_cache_args.h"

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
        "--kv-cache-dtype f16 is for the CPU model in this process (not --device cuda, whose "
        "cache is bf16, nor --tp/--pp)");
  }
  runtime.lm->set_kv_dtype(cpu::KvDtype::kF16);
  return Status::ok();
}

}  // namespace fs::cli
