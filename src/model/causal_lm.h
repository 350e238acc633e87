// The decoder-only transformer forward pass, written once for the Llama family (Llama 2/3, SmolLM2,
// Mistral, Qwen2) and OPT, over a ragged batch with a paged KV cache. Kernels come from backend/cpu.
// The executor keeps no scheduling state: it runs exactly the tokens and block tables it is given.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "backend/cpu/attention.h"
#include "backend/cpu/kv_cache.h"
#include "backend/cpu/matmul.h"
#include "backend/cpu/ops.h"
#include "core/status.h"
#include "core/thread_pool.h"
#include "model/forward_seq.h"
#include "model/model_config.h"
#include "model/model_weights.h"

namespace fs {

class CausalLm {
 public:
  // Loads a .gguf file or an HF folder (see model_weights.h). Errors name the file and the problem.
  static Result<std::unique_ptr<CausalLm>> load(const std::string& path);
  // Runs weights already loaded (load_model, or make_dummy_model's random ones).
  static std::unique_ptr<CausalLm> create(LoadedModel model);

  const ModelConfig& config() const { return model_.config; }
  const LoadedModel& loaded() const { return model_; }

  // The KV cache layout this model needs, for num_blocks blocks of block_size tokens, in the KV
  // element type set below (f32 unless set_kv_dtype was called).
  cpu::KvCacheShape kv_shape(int64_t num_blocks, int64_t block_size) const;
  // The element type of the KV caches made from kv_shape from now on (--kv-cache-dtype); forward()
  // runs over a cache of either type.
  void set_kv_dtype(cpu::KvDtype dtype) { kv_dtype_ = dtype; }
  cpu::KvDtype kv_dtype() const { return kv_dtype_; }

  // Runs the new tokens of every sequence through the model, writes their K/V into `cache` and
  // returns logits [num_rows, vocab]: one row per sequence (its last new token), or one per new
  // token for sequences with all_logits, in batch order. Errors (kInvalidArgument) for a token id
  // outside the vocabulary, a position past the context length or a block table that is too short.
  // Not thread-safe: one caller at a time (the engine thread). Allocates only when a batch is larger
  // than any before.
  Result<std::span<const float>> forward(std::span<const ForwardSeq> seqs, cpu::KvCache& cache);

  // Number of floats of activations a batch of num_tokens needs (for memory planning and logs).
  int64_t workspace_floats(int64_t num_tokens) const;

  // Hooks for distributed execution (src/dist/, docs/DISTRIBUTED.md); all empty on one rank. The
  // model is then a shard made by dist::shard_model (its config holds this rank's heads, kv heads,
  // intermediate rows and layers). Each hook gets `count` floats of [num_tokens, hidden].
  struct DistHooks {
    // TP: sums the partial outputs of the attention-out and MLP-down projections over the tensor-
    // parallel group, in place (before the residual add).
    std::function<void(float* data, int64_t count)> all_reduce;
    // PP, stages after the first: the hidden states entering this stage's first layer.
    std::function<void(float* data, int64_t count)> recv_hidden;
    // PP, stages before the last: the hidden states leaving this stage's last layer; forward()
    // then returns an empty span (no final norm, no LM head).
    std::function<void(const float* data, int64_t count)> send_hidden;
  };
  void set_dist_hooks(DistHooks hooks) { dist_ = std::move(hooks); }

 private:
  explicit CausalLm(LoadedModel model);
  void prepare();  // small tensors to f32, rope table
  void embed(std::span<const ForwardSeq> seqs, int64_t num_tokens);
  void layer(int64_t l, std::span<const cpu::AttentionSeq> attn_seqs, int64_t num_tokens,
             cpu::KvCache& cache);
  void norm(const float* x, const std::vector<float>& w, const std::vector<float>& b,
            int64_t num_tokens, float* y) const;
  void linear(const WeightTensor& w, const std::vector<float>& bias, const float* x,
              int64_t num_tokens, float* y);
  struct LinearOut {
    const WeightTensor* w;
    const std::vector<float>* bias;  // empty: none
    float* y;                        // [num_tokens, w rows]
  };
  // y = x W^T + b for several weights on the same input (Q/K/V, gate/up): one fused matmul_multi
  // when they share dtype and cols, else one linear() each. Results are the same either way.
  void linears(std::span<const LinearOut> outs, const float* x, int64_t num_tokens);

  struct LayerF32 {  // small per-layer tensors converted to f32 at load; empty when absent
    std::vector<float> attn_norm, attn_norm_bias, ffn_norm, ffn_norm_bias;
    std::vector<float> bq, bk, bv, bo, b_up, b_down;
  };

  LoadedModel model_;
  std::vector<LayerF32> layers_f32_;
  std::vector<float> output_norm_, output_norm_bias_;
  cpu::RopeTable rope_;
  cpu::KvDtype kv_dtype_ = cpu::KvDtype::kF32;
  ThreadPool* pool_;
  DistHooks dist_;

  // Activations, grown on demand. Shapes for a batch of T tokens:
  std::vector<float> x_;      // [T, hidden] residual stream
  std::vector<float> h_;      // [T, hidden] normed input of a block
  std::vector<float> q_;      // [T, heads * head_dim]
  std::vector<float> k_, v_;  // [T, kv_heads * head_dim]
  std::vector<float> attn_;   // [T, heads * head_dim]
  std::vector<float> proj_;   // [T, hidden] attention or MLP output
  std::vector<float> gate_;   // [T, intermediate]
  std::vector<float> up_;     // [T, intermediate]
  std::vector<int32_t> positions_;  // [T]
  std::vector<float> last_;   // [rows, hidden] hidden states of the rows that need logits
  std::vector<float> logits_;  // [rows, vocab]
  std::vector<cpu::AttentionSeq> attn_seqs_;
};

}  // namespace fs
