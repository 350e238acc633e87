// How a model is split over ranks, and the shard of one rank (Megatron-LM, Shoeybi et al. 2019,
// section 3): rank = stage * tp + tp_rank.
//  - TP: Q/K/V and gate/up are column-parallel: the rank keeps a contiguous range of heads (kv
//  heads
//    for K/V) and of intermediate rows -- a row-range view of the mapped weight, no copy. O and
//    down are row-parallel: the rank keeps the matching range of input columns, copied at load into
//    LoadedModel::shard_data (quantized blocks run along the input dim, so the ranges must fall on
//    block boundaries). Biases of Q/K/V and up are sliced; O and down biases stay on tp_rank 0
//    only, added once before the all-reduce. Embeddings, norms and the LM head are replicated
//    (GPU ranks then split the LM head by vocabulary: CudaModel::shard_lm_head).
//  - PP: stage s keeps layers [s * L / pp, (s + 1) * L / pp).
// The shard's config is this rank's: num_heads, num_kv_heads, intermediate_size and num_layers are
// the local counts, so CausalLm runs it unchanged (plus its DistHooks).
#pragma once

#include <cstdint>
#include <string>

#include "core/status.h"
#include "model/model_weights.h"

namespace fs::dist {

struct ParallelLayout {
  int tp = 1;
  int pp = 1;
  int rank = 0;
  // The last stage's extra work in layers (the LM head, as lm_head_layers() counts it): stages are
  // cut so that layers + this are shared evenly. 0: an even split of the layers.
  double head_layers = 0;

  int world_size() const { return tp * pp; }
  int tp_rank() const { return rank % tp; }
  int stage() const { return rank / tp; }
  bool first_stage() const { return stage() == 0; }
  bool last_stage() const { return stage() == pp - 1; }
  // The rank with this tp_rank in stage s.
  int rank_of(int s, int tp_rank) const { return s * tp + tp_rank; }
  // Layers [begin, end) of stage s in a model of num_layers: stage s starts at s * (num_layers +
  // head_layers) / pp (rounded down for an even split, to the nearest layer otherwise), every stage
  // keeping at least one layer.
  int64_t layer_begin(int s, int64_t num_layers) const;
  int64_t layer_end(int s, int64_t num_layers) const { return layer_begin(s + 1, num_layers); }

  // "tp 2 x pp 1, rank 1 (stage 0, tp_rank 1)"
  std::string to_string() const;
};

// The decode cost of the LM head (vocab x hidden, on the last stage) in decoder layers of
// `config` at tensor parallelism tp (each TP rank runs the whole head but 1/tp of each layer), by
// weight count: SmolLM2-135M 8.0, Llama-3-8B 2.4.
double lm_head_layers(const ModelConfig& config, int tp);

// kInvalidArgument when `layout` cannot split `config`: heads, kv heads or intermediate size not
// divisible by tp, more stages than layers, a rank outside the world. The message names the count.
Status check_layout(const ModelConfig& config, const ParallelLayout& layout);

// The config of this rank's shard (the local counts named at the top); `config` must pass
// check_layout. For shards made without a model file (dummy weights on a GPU).
ModelConfig shard_config(const ModelConfig& config, const ParallelLayout& layout);

// This rank's shard of `model` (see the top of this file). The result shares the mappings of
// `model`. kInvalidArgument for a layout check_layout rejects, or a row-parallel slice that does
// not fall on the weight's quantization blocks (names the tensor, its dtype and the slice width).
Result<LoadedModel> shard_model(const LoadedModel& model, const ParallelLayout& layout);

}  // namespace fs::dist
