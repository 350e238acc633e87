#include "dist/tp_shard.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

#include <fmt/format.h>

#include "core/dtype.h"

namespace fs::dist {
namespace {

// The owned column slices of one shard; LoadedModel::shard_data keeps them alive.
struct ShardBuffers {
  struct Free {
    void operator()(uint8_t* p) const { std::free(p); }
  };
  std::vector<std::unique_ptr<uint8_t, Free>> buffers;

  uint8_t* allocate(size_t bytes) {
    const size_t rounded = (bytes + 63) / 64 * 64;
    buffers.emplace_back(
        static_cast<uint8_t*>(std::aligned_alloc(64, rounded == 0 ? 64 : rounded)));
    return buffers.back().get();
  }
};

Status check_blocks(const WeightTensor& w, int64_t begin, int64_t count) {
  const int64_t bs = dtype_block_size(w.dtype);
  if (begin % bs != 0 || count % bs != 0) {
    return invalid_argument(
        "tensor parallelism: {} ({}) would be split at {} columns per rank, not a multiple of its "
        "{}-element quantization blocks",
        w.name, dtype_name(w.dtype), count, bs);
  }
  return Status::ok();
}

// Rows [begin, begin + count) of a 2-D weight, or elements of a 1-D one: a view, no copy.
Result<WeightTensor> row_slice(const WeightTensor& w, int64_t begin, int64_t count) {
  WeightTensor s = w;
  s.shape[0] = count;
  if (w.shape.size() == 1) {
    FS_RETURN_IF_ERROR(check_blocks(w, begin, count));
    s.data = w.data + dtype_row_bytes(w.dtype, begin);
    s.nbytes = dtype_row_bytes(w.dtype, count);
  } else {
    const int64_t row_bytes = dtype_row_bytes(w.dtype, w.cols());
    s.data = w.data + begin * row_bytes;
    s.nbytes = count * row_bytes;
  }
  return s;
}

// Columns [begin, begin + count) of every row of a 2-D weight, copied into `owned`.
Result<WeightTensor> column_slice(const WeightTensor& w, int64_t begin, int64_t count,
                                  ShardBuffers& owned) {
  FS_RETURN_IF_ERROR(check_blocks(w, begin, count));
  const int64_t rows = w.rows();
  const int64_t src_row_bytes = dtype_row_bytes(w.dtype, w.cols());
  const int64_t dst_row_bytes = dtype_row_bytes(w.dtype, count);
  const int64_t offset = dtype_row_bytes(w.dtype, begin);
  uint8_t* dst = owned.allocate(rows * dst_row_bytes);
  for (int64_t r = 0; r < rows; ++r) {
    std::memcpy(dst + r * dst_row_bytes, w.data + r * src_row_bytes + offset, dst_row_bytes);
  }
  WeightTensor s = w;
  s.shape = {rows, count};
  s.data = dst;
  s.nbytes = rows * dst_row_bytes;
  return s;
}

Status slice_rows(WeightTensor& w, int64_t begin, int64_t count) {
  FS_ASSIGN_OR_RETURN(w, row_slice(w, begin, count));
  return Status::ok();
}

Status slice_rows(std::optional<WeightTensor>& w, int64_t begin, int64_t count) {
  if (w) FS_RETURN_IF_ERROR(slice_rows(*w, begin, count));
  return Status::ok();
}

uint64_t tensor_bytes(const ModelWeights& w) {
  uint64_t n = w.tok_embd.nbytes + w.output_norm.nbytes;
  if (w.output.data != w.tok_embd.data) n += w.output.nbytes;
  const auto opt = [](const std::optional<WeightTensor>& t) { return t ? t->nbytes : 0; };
  n += opt(w.pos_embd) + opt(w.output_norm_b) + opt(w.rope_freqs);
  for (const LayerWeights& l : w.layers) {
    n += l.attn_norm.nbytes + l.wq.nbytes + l.wk.nbytes + l.wv.nbytes + l.wo.nbytes +
         l.ffn_norm.nbytes + l.w_up.nbytes + l.w_down.nbytes;
    n += opt(l.attn_norm_b) + opt(l.bq) + opt(l.bk) + opt(l.bv) + opt(l.bo) + opt(l.ffn_norm_b) +
         opt(l.w_gate) + opt(l.b_up) + opt(l.b_down);
  }
  return n;
}

}  // namespace

std::string ParallelLayout::to_string() const {
  return fmt::format("tp {} x pp {}, rank {} (stage {}, tp_rank {})", tp, pp, rank, stage(),
                     tp_rank());
}

Status check_layout(const ModelConfig& c, const ParallelLayout& layout) {
  if (layout.tp < 1 || layout.pp < 1) {
    return invalid_argument("--tp {} --pp {}: both must be at least 1", layout.tp, layout.pp);
  }
  if (layout.rank < 0 || layout.rank >= layout.world_size()) {
    return invalid_argument("rank {} is outside a world of {} ranks", layout.rank,
                            layout.world_size());
  }
  const auto divisible = [&](int64_t n, const char* what) -> Status {
    if (n % layout.tp != 0) {
      return invalid_argument("--tp {}: the model's {} {} do not split evenly over {} ranks",
                              layout.tp, n, what, layout.tp);
    }
    return Status::ok();
  };
  FS_RETURN_IF_ERROR(divisible(c.num_heads, "attention heads"));
  FS_RETURN_IF_ERROR(divisible(c.num_kv_heads, "kv heads"));
  FS_RETURN_IF_ERROR(divisible(c.intermediate_size, "intermediate rows"));
  if (layout.pp > c.num_layers) {
    return invalid_argument("--pp {}: the model has only {} layers", layout.pp, c.num_layers);
  }
  return Status::ok();
}

int64_t ParallelLayout::layer_begin(int s, int64_t num_layers) const {
  if (s <= 0) return 0;
  if (s >= pp) return num_layers;
  if (head_layers <= 0) return s * num_layers / pp;
  const double at = s * (static_cast<double>(num_layers) + head_layers) / pp;
  const int64_t begin = static_cast<int64_t>(std::floor(at + 0.5));
  return std::clamp<int64_t>(begin, s, num_layers - (pp - s));
}

double lm_head_layers(const ModelConfig& c, int tp) {
  const double attn = 2.0 * c.hidden_size * c.num_heads * c.head_dim +
                      2.0 * c.hidden_size * c.num_kv_heads * c.head_dim;
  const double mlp = (c.activation == Activation::kSiluGated ? 3.0 : 2.0) * c.hidden_size *
                     c.intermediate_size;
  return tp * static_cast<double>(c.vocab_size) * c.hidden_size / (attn + mlp);
}

ModelConfig shard_config(const ModelConfig& config, const ParallelLayout& layout) {
  ModelConfig c = config;
  c.num_heads = config.num_heads / layout.tp;
  c.num_kv_heads = config.num_kv_heads / layout.tp;
  c.intermediate_size = config.intermediate_size / layout.tp;
  c.num_layers = layout.layer_end(layout.stage(), config.num_layers) -
                 layout.layer_begin(layout.stage(), config.num_layers);
  return c;
}

Result<LoadedModel> shard_model(const LoadedModel& model, const ParallelLayout& layout) {
  FS_RETURN_IF_ERROR(check_layout(model.config, layout));
  LoadedModel shard = model;
  ModelConfig& c = shard.config;
  const int tp = layout.tp, r = layout.tp_rank();
  const int64_t heads = c.num_heads / tp, kv_heads = c.num_kv_heads / tp;
  const int64_t ffn = c.intermediate_size / tp;
  const int64_t q0 = r * heads * c.head_dim, qn = heads * c.head_dim;
  const int64_t kv0 = r * kv_heads * c.head_dim, kvn = kv_heads * c.head_dim;
  const int64_t f0 = r * ffn;

  std::vector<LayerWeights>& layers = shard.weights.layers;
  const int64_t begin = layout.layer_begin(layout.stage(), c.num_layers);
  const int64_t end = layout.layer_end(layout.stage(), c.num_layers);
  layers = std::vector<LayerWeights>(layers.begin() + begin, layers.begin() + end);

  auto owned = std::make_shared<ShardBuffers>();
  if (tp > 1) {
    for (LayerWeights& l : layers) {
      FS_RETURN_IF_ERROR(slice_rows(l.wq, q0, qn));
      FS_RETURN_IF_ERROR(slice_rows(l.bq, q0, qn));
      FS_RETURN_IF_ERROR(slice_rows(l.wk, kv0, kvn));
      FS_RETURN_IF_ERROR(slice_rows(l.bk, kv0, kvn));
      FS_RETURN_IF_ERROR(slice_rows(l.wv, kv0, kvn));
      FS_RETURN_IF_ERROR(slice_rows(l.bv, kv0, kvn));
      FS_RETURN_IF_ERROR(slice_rows(l.w_gate, f0, ffn));
      FS_RETURN_IF_ERROR(slice_rows(l.w_up, f0, ffn));
      FS_RETURN_IF_ERROR(slice_rows(l.b_up, f0, ffn));
      FS_ASSIGN_OR_RETURN(l.wo, column_slice(l.wo, q0, qn, *owned));
      FS_ASSIGN_OR_RETURN(l.w_down, column_slice(l.w_down, f0, ffn, *owned));
      if (r != 0) {  // the row-parallel biases are added once, before the all-reduce
        l.bo.reset();
        l.b_down.reset();
      }
    }
  }
  c = shard_config(model.config, layout);
  shard.shard_data = std::move(owned);
  shard.weight_bytes = tensor_bytes(shard.weights);
  return shard;
}

}  // namespace fs::dist
