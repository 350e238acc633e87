// CUDA kernels of the forward pass, behind plain launch functions (typed device pointers, sizes, a
// stream) so host code compiled by g++ calls them without seeing device code. Every launcher only
// enqueues work on `stream`; errors surface at the next CUDA call the caller checks.
// No fmt / core/log.h here: this header is included by .cu files (nvcc cannot compile fmt).
#pragma once

#include <cstdint>

#include <cuda_bf16.h>
#include <cuda_runtime.h>

namespace fs::cuda {

using bf16 = __nv_bfloat16;

// The paged KV cache on the device, agreed with the swap engine (kv_swap.h):
//   block b: [num_layers][2 (K, V)][block_size][num_kv_heads][head_dim] bf16, contiguous,
// so one block holds a token range of every layer and moves as one span.
struct KvLayout {
  int32_t num_layers = 0;
  int32_t block_size = 0;
  int32_t num_kv_heads = 0;
  int32_t head_dim = 0;
  int64_t block_elems() const {
    return static_cast<int64_t>(num_layers) * 2 * block_size * num_kv_heads * head_dim;
  }
};

// One sequence of a ragged batch as the attention kernels read it. Its new tokens are batch rows
// [token_begin, token_begin + num_new) at positions num_past ...; its block table is
// block_tables[table_offset ...].
struct AttnSeqDesc {
  int32_t token_begin;
  int32_t num_new;
  int32_t num_past;
  int32_t table_offset;
};

// A tile of up to kPrefillTileRows new tokens of one sequence (the prefill kernel's unit of work).
struct PrefillTile {
  int32_t seq;      // index into the AttnSeqDesc array
  int32_t q_begin;  // first new token of the tile, relative to the sequence's first new token
};
inline constexpr int kPrefillTileRows = 64;

// One query token handled by the decode (split-K) kernel: batch row, its position, its table.
struct DecodeDesc {
  int32_t row;
  int32_t pos;
  int32_t table_offset;
  int32_t num_splits;  // ceil((pos + 1) / split_len)
};

enum class NormType : int32_t { kRms = 0, kLayerNorm = 1 };

// Programmatic dependent launch for the forward's kernels (launch.cuh): each kernel may start while
// the previous one finishes. On by default where the GPU has it (compute capability >= 9.0);
// benchmarks turn it off to measure it. Not thread-safe: set before forwards run.
void set_programmatic_launch(bool on);
bool programmatic_launch();

// x[t, :] = tok_embd[tokens[t], :] (+ pos_embd[positions[t] + pos_offset, :] when pos_embd).
// x: [num_tokens, hidden] f32; embeddings bf16 [rows, hidden].
void launch_embed(const int32_t* tokens, const int32_t* positions, const bf16* tok_embd,
                  const bf16* pos_embd, int32_t pos_offset, int64_t num_tokens, int64_t hidden,
                  float* x, cudaStream_t stream);

// For r < rows, with t = row_index ? row_index[r] : r:
//   x[t, :] += add_bias (when not null; the pending bias of the last projection), then
//   y[r, :] = norm(x[t, :]) * weight (+ bias for LayerNorm).
// x: [*, hidden] f32 (updated in place); y: [rows, hidden] bf16; weight, bias, add_bias: [hidden].
void launch_norm(float* x, const float* add_bias, const int32_t* row_index, const float* weight,
                 const float* bias, NormType type, float eps, int64_t rows, int64_t hidden, bf16* y,
                 cudaStream_t stream);

// The attention input of one layer: qkv [T, (heads + 2 kv_heads) * head_dim] f32 (one GEMM of the
// concatenated Wq, Wk, Wv); adds the biases (each may be null), rotates q and k by
// positions[t] * inv_freq (inv_freq null: no rope; neox: pairs (i, i + d/2), else (2i, 2i+1)),
// writes q to q_out [T, heads, head_dim] bf16 and K, V into the cache slot slots[t] (block *
// block_size + offset) of `layer`.
void launch_qkv_rope_store(const float* qkv, const float* bq, const float* bk, const float* bv,
                           const int32_t* positions, const int32_t* slots, const float* inv_freq,
                           bool neox, int64_t num_tokens, int32_t num_heads, KvLayout kv,
                           int32_t layer, bf16* q_out, bf16* kv_cache, cudaStream_t stream);

// out[t, i] = silu(gate_up[t, i]) * gate_up[t, ffn + i]. gate_up: [T, 2 ffn]; out: [T, ffn].
void launch_silu_mul(const bf16* gate_up, int64_t num_tokens, int64_t ffn, bf16* out,
                     cudaStream_t stream);
// x[t, i] = max(x[t, i] + bias[i], 0). x: [T, n]; bias [n] or null.
void launch_bias_relu(bf16* x, const float* bias, int64_t num_tokens, int64_t n,
                      cudaStream_t stream);

// x[t, i] += bias[i]. x: [T, n] f32 (the residual stream); bias [n]. Tensor parallelism adds the
// row-parallel biases once, before the all-reduce (cuda_model.h DistHooks).
void launch_add_bias(float* x, const float* bias, int64_t num_tokens, int64_t n,
                     cudaStream_t stream);

// out[r] = argmax_v logits[r, v] (lowest index among ties). logits: [rows, vocab] f32.
void launch_argmax(const float* logits, int64_t rows, int64_t vocab, int32_t* out,
                   cudaStream_t stream);

// The greedy pick of each row (GreedyPick in model/forward_seq.h, as two int32 per row): out[2 r] =
// argmax_v logits[r, v] (lowest index among ties; -1 when the row has a NaN or +inf or nothing
// finite), out[2 r + 1] = the float bits of its log-softmax. logits: [rows, vocab] f32.
void launch_greedy_pick(const float* logits, int64_t rows, int64_t vocab, int32_t* out,
                        cudaStream_t stream);

// Vocab-parallel LM head (tensor parallelism): this rank (of tp) holds the logits [rows, cols] of
// vocabulary ids [begin, begin + cols).
//  - launch_greedy_pick_part: parts [rows, tp, 3] f32 gets, in this rank's slot of each row, its
//    largest logit, that id (lowest among ties; -1 for a row with a NaN or +inf) and
//    sum exp(logit - largest); every other slot 0. Summed over the ranks (an all-reduce of zeros
//    and one value each: exact), every rank has every slot.
//  - launch_combine_picks: from the summed parts, picks (as launch_greedy_pick's out, when not
//    null) and tokens (when not null: the argmax, 0 for a bad row, as launch_argmax): the largest
//    logit over all ranks, lowest id among ties, its log-softmax over the whole vocabulary.
//  - launch_scatter_logits: full [rows, vocab] = the local logits in their columns, 0 elsewhere
//    (summed over the ranks: the whole rows).
void launch_greedy_pick_part(const float* logits, int64_t rows, int64_t cols, int64_t begin,
                             int tp, int rank, float* parts, cudaStream_t stream);
void launch_combine_picks(const float* parts, int64_t rows, int tp, int32_t* picks,
                          int32_t* tokens, cudaStream_t stream);
void launch_scatter_logits(const float* local, int64_t rows, int64_t cols, int64_t begin,
                           int64_t vocab, float* full, cudaStream_t stream);

// One-shot all-reduce over peer memory (p2p_allreduce.h, which owns the buffers). recv[r]: each
// rank's exchange area [3][size][max_floats] (every float -0.0f until a value lands; max_floats a
// multiple of 4); state: this rank's {phase, last count, blocks done, 0} (zeros at first), shared
// by every kernel that exchanges through these buffers, whatever its grid: the last block of a call
// to finish advances it.
constexpr int kP2pMaxRanks = 8;
struct P2pExchange {
  float* recv[kP2pMaxRanks] = {};
  int rank = 0;
  int size = 0;  // 0: no exchange
  int64_t max_floats = 0;
  uint32_t* state = nullptr;
  // This rank's values are in the peers' slots already (a launch_gemv with this exchange as
  // `send` stored them): the all-reduce only waits for the peers' and sums.
  bool sent = false;
};
// x [n] = the sum in rank order of every rank's x, on a grid of `blocks` blocks.
void launch_p2p_allreduce(float* x, int64_t n, const P2pExchange& ex, int blocks,
                          cudaStream_t stream);

// w[i] = uniform(-scale, scale) from a hash of (seed, i): dummy weights made on the device.
void launch_fill_uniform(bf16* w, int64_t n, uint64_t seed, float scale, cudaStream_t stream);
// A [rows, cols] part of a tensor filled as launch_fill_uniform fills the whole [*, full_cols]
// tensor: element (r, c) gets the value of whole element (row0 + r, col0 + c). A shard made this
// way holds the unsharded model's values (dummy weights under tensor / pipeline parallelism).
void launch_fill_uniform_part(bf16* w, int64_t rows, int64_t cols, uint64_t seed, float scale,
                              int64_t row0, int64_t col0, int64_t full_cols, cudaStream_t stream);
void launch_fill_f32(float* x, int64_t n, float value, cudaStream_t stream);

// y[t, r] = beta * y[t, r] + sum_c w[r, c] x[t, c] for t < num_tokens <= kMaxGemvTokens (decode
// batches): one warp per row, bf16 weights and activations, f32 accumulation. w: [rows, cols]
// (cols % 8 == 0, 16-byte aligned rows); x: [num_tokens, cols]; y: [num_tokens, rows] f32 (y_f32)
// or bf16. send (size > 0; y_f32, num_tokens * rows <= send.max_floats): y is this rank's part of
// the TP all-reduce that follows on send's buffers; each output also goes into this rank's slot
// of every peer's exchange area as soon as it is made, so that all-reduce (given the exchange
// with `sent`) only waits for the peers' values and sums: the link's latency overlaps the GEMV.
inline constexpr int64_t kMaxGemvTokens = 8;
bool gemv_supported(int64_t num_tokens, int64_t cols);
void launch_gemv(const bf16* w, int64_t rows, int64_t cols, const bf16* x, int64_t num_tokens,
                 void* y, bool y_f32, float beta, cudaStream_t stream,
                 const P2pExchange& send = {});

// The decode GEMV with the kernels around it fused in (issue 8: at batch 1 each of the ~300
// launches per step costs a few us that the weight stream does not hide). Each block builds the
// bf16 input [num_tokens, cols] in shared memory, then streams rows as launch_gemv does:
//   launch_gemv_rmsnorm:      input = RMSNorm(x[t, :]) * norm_weight, x: [num_tokens, cols] f32
//                             (the arithmetic of launch_norm with kRms, no biases, no row index);
//   launch_gemv_rmsnorm_silu: the same input; w_gate_up = [Wg; Wu] [2 ffn, cols]; each warp takes
//                             the pair (gate row r, up row ffn + r) and writes y[t, r] =
//                             silu(gate) * up, bf16 [num_tokens, ffn] (gate and up rounded to bf16
//                             first: the arithmetic of the GEMV + launch_silu_mul);
//   launch_gemv_silu_mul:     input = silu(gate_up[t, :cols]) * gate_up[t, cols:], gate_up:
//                             [num_tokens, 2 cols] bf16 (the arithmetic of launch_silu_mul).
// y, y_f32, beta as launch_gemv. Applies where gemv_fused_supported (num_tokens <= 4, the input
// within kMaxFusedGemvSmemBytes, cols % 8 == 0); the model uses the parts set_fused_gemv turns on
// and the separate kernels otherwise. Not thread-safe: set before forwards run; a captured decode
// graph keeps what it was captured with.
inline constexpr int64_t kMaxFusedGemvTokens = 4;
inline constexpr int64_t kMaxFusedGemvSmemBytes = 40 * 1024;
inline constexpr int kFuseGemvNorm = 1;     // the RMSNorms into the QKV and gate/up GEMVs
inline constexpr int kFuseGemvSiluMul = 2;  // silu(gate) * up into the down GEMV's prologue
inline constexpr int kFuseGemvSiluOut = 4;  // or into the gate/up GEMV (needs kFuseGemvNorm)
inline constexpr int kFuseGemvDefault = kFuseGemvNorm | kFuseGemvSiluOut;
bool gemv_fused_supported(int64_t num_tokens, int64_t cols);
void set_fused_gemv(int parts);  // a mask of kFuseGemv*; 0: none
int fused_gemv();
void launch_gemv_rmsnorm(const bf16* w, int64_t rows, int64_t cols, const float* x,
                         const float* norm_weight, float eps, int64_t num_tokens, void* y,
                         bool y_f32, float beta, cudaStream_t stream);
void launch_gemv_rmsnorm_silu(const bf16* w_gate_up, int64_t ffn, int64_t cols, const float* x,
                              const float* norm_weight, float eps, int64_t num_tokens, bf16* y,
                              cudaStream_t stream);
void launch_gemv_silu_mul(const bf16* w, int64_t rows, int64_t cols, const bf16* gate_up,
                          int64_t num_tokens, void* y, bool y_f32, float beta,
                          cudaStream_t stream);

// Paged causal attention, prefill tiles: for each tile and query head, the tile's new tokens
// against positions [0, own position] of their sequence. q: [T, heads, head_dim] bf16; out: [T,
// heads * head_dim] bf16. Tensor cores (WMMA bf16), FlashAttention-style online softmax over 64-key
// tiles. Supports head_dim 16, 32, 64, 128 (prefill_head_dim_supported); others use the decode
// path.
bool prefill_head_dim_supported(int32_t head_dim);
void launch_attention_prefill(const bf16* q, const bf16* kv_cache, KvLayout kv, int32_t layer,
                              const AttnSeqDesc* seqs, const int32_t* block_tables,
                              const PrefillTile* tiles, int32_t num_tiles, int32_t num_heads,
                              float scale, bf16* out, cudaStream_t stream);

// Paged attention of single query tokens (decode, or any token), split-K: the context of each token
// is cut into splits of split_len positions (a multiple of 32) processed by separate blocks, each
// giving a partial (max, sum, unnormalized output) per query head; a second kernel merges them.
// GQA aware: one block serves all query heads of a KV head. Any head_dim <= 256.
// partials: [num_tokens, num_heads, max_splits, head_dim + 2] f32 scratch.
// Three kernels, the first that applies under decode_kernel():
//   kTensorCore: mma.sync with the GQA group in the M rows, cp.async double buffering (head_dim
//     64/128, group <= 16; attention_decode_mma.cu);
//   kRegister: CUDA cores, state in registers (head_dim 64/128, group <= 8);
//   kGeneric: CUDA cores, shared-memory V tiles, any head_dim <= 256 and group.
// kAuto = kTensorCore. A forced kernel falls back to the next one where it does not apply.
enum class DecodeKernel : int32_t { kAuto = 0, kTensorCore = 1, kRegister = 2, kGeneric = 3 };
// Tests and benchmarks (A/B runs in one process). Not thread-safe: set before forwards run; a
// captured decode graph keeps the kernel it was captured with.
void set_decode_kernel(DecodeKernel kernel);
DecodeKernel decode_kernel();
// The kernel launch_attention_decode runs for this shape under the current setting.
DecodeKernel decode_kernel_for(int32_t head_dim, int32_t group);
// Shorthand: set_decode_kernel(on ? kGeneric : kAuto).
void force_decode_reference(bool on);
bool decode_reference_forced();
// The split-K layout of a decode batch: num_decode query tokens whose contexts are at most
// ctx_bucket positions, on a GPU of num_sms multiprocessors. split_len is a multiple of 32 (>= 64);
// max_splits = ceil(ctx_bucket / split_len). Depends only on its arguments (decode graphs key on
// the bucket).
struct DecodeSplits {
  int32_t split_len;
  int32_t max_splits;
};
DecodeSplits plan_decode_splits(int64_t num_decode, int32_t num_kv_heads, int32_t head_dim,
                                int32_t group, int64_t ctx_bucket, int32_t num_sms);
void launch_attention_decode(const bf16* q, const bf16* kv_cache, KvLayout kv, int32_t layer,
                             const DecodeDesc* descs, const int32_t* block_tables,
                             int32_t num_tokens, int32_t max_splits, int32_t split_len,
                             int32_t num_heads, float scale, float* partials, bf16* out,
                             cudaStream_t stream);

}  // namespace fs::cuda
