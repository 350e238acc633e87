// Model weights as views into memory-mapped files (GGUF or HF safetensors), checked against the
// config: every expected tensor is present, of a supported dtype, with the expected shape.
// Nothing is copied or converted: GGUF Q/K rows stay permuted (the forward pass applies the
// interleaved rope, ModelConfig::rope_style) and quantized tensors stay in their ggml block layout.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/status.h"
#include "model/format/gguf_file.h"
#include "model/format/hf_checkpoint.h"
#include "model/model_config.h"

namespace fs {

// One tensor view. Rows are contiguous: row r of a 2-D [out, in] weight starts at
// data + r * dtype_row_bytes(dtype, in). Valid while the LoadedModel that produced it lives.
struct WeightTensor {
  std::string name;  // as in the file, e.g. "blk.0.attn_q.weight" or "model.layers.0...."
  DType dtype;
  std::vector<int64_t> shape;  // PyTorch order [out, in]; 1-D for norms and biases
  const uint8_t* data = nullptr;
  uint64_t nbytes = 0;

  int64_t rows() const { return shape.size() == 2 ? shape[0] : 1; }
  int64_t cols() const { return shape.back(); }
};

// Optional tensors are std::optional<WeightTensor>: present exactly when the config says so
// (qkv_bias, attn_out_bias, mlp_bias, norm == kLayerNorm), which load_model checks.
struct LayerWeights {
  WeightTensor attn_norm;                   // [hidden]
  std::optional<WeightTensor> attn_norm_b;  // [hidden]            LayerNorm (OPT)
  WeightTensor wq;                          // [heads * head_dim, hidden]
  WeightTensor wk;                          // [kv_heads * head_dim, hidden]
  WeightTensor wv;                          // [kv_heads * head_dim, hidden]
  WeightTensor wo;                          // [hidden, heads * head_dim]
  std::optional<WeightTensor> bq;           // [heads * head_dim]   qkv_bias
  std::optional<WeightTensor> bk;           // [kv_heads * head_dim]
  std::optional<WeightTensor> bv;           // [kv_heads * head_dim]
  std::optional<WeightTensor> bo;           // [hidden]             attn_out_bias
  WeightTensor ffn_norm;                    // [hidden]
  std::optional<WeightTensor> ffn_norm_b;   // [hidden]             LayerNorm (OPT)
  std::optional<WeightTensor> w_gate;       // [ffn, hidden]        SiLU-gated (llama) only
  WeightTensor w_up;                        // [ffn, hidden]        OPT fc1
  WeightTensor w_down;                      // [hidden, ffn]        OPT fc2
  std::optional<WeightTensor> b_up;         // [ffn]                mlp_bias (OPT)
  std::optional<WeightTensor> b_down;       // [hidden]
};

struct ModelWeights {
  WeightTensor tok_embd;                      // [vocab, hidden]
  std::optional<WeightTensor> pos_embd;       // [max_pos + learned_pos_offset, hidden]  (OPT)
  WeightTensor output_norm;                   // [hidden]
  std::optional<WeightTensor> output_norm_b;  // [hidden]  LayerNorm (OPT)
  // [vocab, hidden]. When tie_word_embeddings, a copy of tok_embd's view (same data pointer).
  WeightTensor output;
  // [head_dim / 2] F32, GGUF llama3 models only: llama.cpp's converter bakes llama3 rope scaling
  // into per-frequency divisors; the rope angle of pair i is pos * theta^(-2i/head_dim) /
  // rope_freqs[i].
  std::optional<WeightTensor> rope_freqs;
  std::vector<LayerWeights> layers;  // [num_layers]
};

enum class ModelFormat { kGguf, kSafetensors, kDummy };
const char* model_format_name(ModelFormat format);  // "gguf", "safetensors", "dummy"

// Config + weights + the mappings keeping the weights' memory alive. Movable; the views stay valid
// as long as this object (or a copy of `gguf` / `hf`) lives.
struct LoadedModel {
  std::string path;
  ModelFormat format = ModelFormat::kGguf;
  ModelConfig config;
  ModelWeights weights;
  uint64_t weight_bytes = 0;               // sum of the nbytes of the tensors used
  std::shared_ptr<const GgufFile> gguf;    // set for GGUF (the tokenizer reads its metadata)
  std::shared_ptr<const HfCheckpoint> hf;  // set for HF folders
  std::shared_ptr<const void>
      dummy_data;  // set for dummy weights: the buffers the views point into
  // Set for a tensor-parallel shard (dist/tp_shard.h): the column slices of row-parallel weights,
  // copied at load, that some views point into.
  std::shared_ptr<const void> shard_data;
};

// Loads a .gguf file or an HF checkpoint folder (config.json + safetensors). Errors name the file
// and, for tensors, the tensor with its expected and actual shape: kNotFound (missing file /
// tensor), kDataLoss (corrupt file, wrong shape), kUnimplemented (architecture, dtype or option not
// supported), kInvalidArgument (inconsistent config). Logs one info line with size and load time.
Result<LoadedModel> load_model(const std::string& path);

// Random weights for `config` (--load-format dummy on the CPU), named as in an HF checkpoint:
// matrices and embeddings uniform in +-1/sqrt(fan_in) in `dtype` (F32, F16 or BF16), norm weights 1
// and biases 0 in F32 -- the init of cuda::CudaModel::dummy. Deterministic in `seed`. `name`
// becomes LoadedModel::path. kResourceExhausted when the weights would take more than max_bytes
// (the CPU runs small shapes; 7B+ shapes belong on --device cuda), kInvalidArgument for another
// dtype or an invalid config.
Result<LoadedModel> make_dummy_model(const ModelConfig& config, const std::string& name,
                                     DType dtype = DType::kBF16, uint64_t seed = 1,
                                     int64_t max_bytes = int64_t{4} << 30);

// "[576, 49152]"
std::string shape_to_string(const std::vector<int64_t>& shape);

}  // namespace fs
