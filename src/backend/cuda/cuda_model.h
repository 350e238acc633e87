// The decoder-only transformer forward pass on one GPU (mirror of model/causal_lm.h): Llama family
// (GQA, RoPE incl. llama3 scaling, tied embeddings; SmolLM2, Mistral), Qwen2 (q/k/v biases) and OPT
// (LayerNorm, learned positions at offset 2, ReLU, biases). Weights live on the device in bf16;
// GEMMs run on cuBLAS (bf16 in, f32 accumulate); the residual stream is f32; attention reads a
// paged KV cache (kernels.h KvLayout) through block tables, over a ragged batch of prefills and
// decodes.
//
// Not thread-safe: one caller (the engine thread), which must have the model's device current.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "backend/cuda/kernels.h"
#include "core/status.h"
#include "model/forward_seq.h"
#include "model/model_config.h"
#include "model/model_weights.h"

namespace fs::cuda {

// A device KV pool the forward writes and reads: [num_blocks][layout.block_elems()] bf16. Owned by
// the caller (the executor's KvArena, or a test's cudaMalloc).
struct KvPoolView {
  bf16* data = nullptr;
  int64_t num_blocks = 0;
  KvLayout layout;
};

// A device allocation that frees itself.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  ~DeviceBuffer();
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  // Makes the buffer hold at least `bytes` (contents are lost when it grows). kResourceExhausted
  // naming `what` when cudaMalloc fails. `doubling`: a growth takes at least twice the old size,
  // for buffers sized by the decode batch and its contexts, which grow step by step while a server
  // fills up: every reallocation invalidates the decode graphs that use the buffer, and captures
  // are expensive (under tensor parallelism, NCCL collectives are captured with the layers).
  Status ensure(size_t bytes, const char* what, bool doubling = false);
  template <typename T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }
  size_t bytes() const { return bytes_; }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

// Where a shard of random weights sits in the whole model (`config` being the shard's local
// counts, dist/tp_shard.h): tensor-parallel rank tp_rank of tp, layers from first_layer of
// total_layers (0: config.num_layers).
struct DummyPlace {
  int64_t tp = 1;
  int64_t tp_rank = 0;
  int64_t first_layer = 0;
  int64_t total_layers = 0;
};

class CudaModel {
 public:
  // Uploads a loaded model's weights (any dtype the CPU backend reads: F32, F16, BF16 and the GGUF
  // quantized types, dequantized on the host) to the current device in bf16. kResourceExhausted
  // when the device is out of memory, kInternal for other CUDA errors.
  static Result<std::unique_ptr<CudaModel>> upload(const LoadedModel& model);
  // Random weights made on the device (no host copy): matrices uniform in +-1/sqrt(fan_in), norm
  // weights 1, biases 0. For benchmarks at real shapes without weight files (--load-format dummy).
  // Every element is a function of its place in the whole model and the seed, so the shards of
  // any TP x PP layout together hold the one-GPU model's weights (their tokens can be compared).
  static Result<std::unique_ptr<CudaModel>> dummy(const ModelConfig& config, uint64_t seed = 1,
                                                  const DummyPlace& place = {});
  ~CudaModel();
  CudaModel(const CudaModel&) = delete;
  CudaModel& operator=(const CudaModel&) = delete;

  const ModelConfig& config() const { return config_; }
  // Bytes of device weights (what one forward reads).
  int64_t weight_bytes() const { return weight_bytes_; }
  KvLayout kv_layout(int64_t block_size) const;
  // The stream every forward runs on (created by the model).
  cudaStream_t stream() const { return stream_; }
  // Device bytes of activations and scratch for a batch of num_tokens tokens (and as many rows of
  // logits), for memory planning.
  int64_t workspace_bytes(int64_t num_tokens) const;
  // Grows the activation buffers now for batches up to num_tokens (otherwise they grow on demand).
  Status reserve(int64_t num_tokens);

  // Runs the new tokens of every sequence (ForwardSeq: tokens after num_past cached ones, the block
  // table), writes their K/V into `kv` and returns logits [rows, vocab] f32 on the host: one row
  // per sequence (its last new token) or one per new token with all_logits, in batch order. Valid
  // until the next call. Waits for the GPU. kInvalidArgument for a token outside the vocabulary, a
  // block table that is too short or names a block outside the pool; kOutOfRange past the context
  // length; kInternal for a CUDA error.
  Result<std::span<const float>> forward(std::span<const ForwardSeq> seqs, const KvPoolView& kv);
  // Rows of sequences with ForwardSeq::greedy are not copied: their GreedyPick (argmax and
  // log-softmax, made on the GPU) is in greedy_picks() [rows] instead, valid until the next call
  // (empty when no sequence of the batch was greedy).
  std::span<const GreedyPick> greedy_picks() const { return picks_view_; }
  // The same forward with greedy sampling on the GPU: the argmax token of each logits row (lowest
  // id among ties). Copies only the token ids to the host.
  Result<std::span<const int32_t>> forward_greedy(std::span<const ForwardSeq> seqs,
                                                  const KvPoolView& kv);
  // Enqueues the forward on stream() without waiting; logits [rows, vocab] f32 stay on the device
  // (device_logits()). Returns the number of rows. For benchmarks and on-GPU sampling.
  Result<int64_t> enqueue_forward(std::span<const ForwardSeq> seqs, const KvPoolView& kv);
  const float* device_logits() const { return logits_.as<float>(); }

  // CUDA graphs for decode steps (on by default). A batch in which every sequence has one new
  // token and wants only its last logits is keyed by (batch size, context bucket = its longest
  // context rounded up to a power of two, at least 256); the first step of a key runs eagerly (it
  // also warms the kernels up), the second captures the layers' kernels into a graph, and later
  // steps copy their metadata (tokens, positions, slots, block tables) to the same device offsets
  // and replay it. The split-K layout depends only on the key, so graph and eager runs launch the
  // same kernels with the same arguments: identical logits. Other batches (prefill, chunks, all
  // logits) and every batch while profiling run eagerly. A graph is captured again when a buffer
  // it uses was reallocated (a larger batch grew it, another KV pool); at most max_decode_graphs()
  // stay alive (the least recently used goes): kMaxDecodeGraphs, or FASTSERVE_MAX_DECODE_GRAPHS.
  // A server keeps batch sizes 1..max_num_seqs x ~4 buckets of keys (ShareGPT) in use; with fewer
  // graphs than keys they are evicted and captured again all the time, a stall of every running
  // job each time (under TP the NCCL collectives are captured too). If capture fails, graphs are
  // turned off (logged).
  static constexpr int64_t kMaxDecodeGraphs = 256;
  int64_t max_decode_graphs() const { return max_decode_graphs_; }
  void set_cuda_graphs(bool on);
  bool cuda_graphs() const { return cuda_graphs_; }
  // Graphs alive and replays so far (tests, benchmarks).
  int64_t num_cuda_graphs() const { return static_cast<int64_t>(graphs_.size()); }
  int64_t num_graph_replays() const { return num_graph_replays_; }
  int64_t num_graph_captures() const { return num_graph_captures_; }
  // The largest decode batch (tokens) that runs the GEMV kernel rather than cuBLAS.
  int64_t gemv_max_tokens() const { return gemv_max_tokens_; }
  // Overrides the calibrated limit (0..kMaxGemvTokens): tensor-parallel ranks agree on one. Before
  // any forward (captured decode graphs keep the path they were captured with).
  void set_gemv_max_tokens(int64_t k) { gemv_max_tokens_ = std::clamp<int64_t>(k, 0, kMaxGemvTokens); }

  // Tensor and pipeline parallelism (dist/cuda_shard.h; docs/DISTRIBUTED.md). The hooks enqueue
  // their communication on stream(), in order with the kernels around them (so decode graphs
  // capture them too), and return launch errors only.
  //  - all_reduce (TP): after the attention-out and MLP-down projections the f32 residual stream x
  //    [T, hidden] is summed over the TP group. The rank with residual_owner adds its x and the
  //    row-parallel biases (only its shard has them) to its partial product; the others contribute
  //    their partial products alone, so the sum is x + every rank's part, on every rank.
  //  - recv_hidden (a stage after the first): x comes from the previous stage instead of the
  //    embedding. send_hidden (a stage before the last): after its layers the forward hands x (with
  //    the last layer's bias added) to the next stage and computes no logits: forward() returns
  //    an empty span as soon as the work is enqueued, without waiting for it (pipelining).
  //  - wait: replaces cudaStreamSynchronize(stream()) where a forward waits (a peer that died
  //    makes it fail after a timeout instead of hanging).
  struct DistHooks {
    std::function<Status(float* x, int64_t count)> all_reduce;
    std::function<Status(float* x, int64_t count)> recv_hidden;
    std::function<Status(const float* x, int64_t count)> send_hidden;
    std::function<Status()> wait;
    bool residual_owner = true;
    // The peer-memory buffers behind all_reduce's small calls (size 0: none), and the grid of its
    // kernel: decode batches then run the row-parallel projections as GEMVs that send their
    // outputs to the peers as they make them (kernels.h launch_gemv's `send`), and the
    // all-reduce kernel after them only waits and sums.
    P2pExchange exchange;
    int exchange_blocks = 16;
  };
  void set_dist_hooks(DistHooks hooks) { dist_ = std::move(hooks); }
  // Vocab-parallel LM head (TP; after set_dist_hooks with all_reduce, before any forward): this
  // rank keeps rows [r * ceil(vocab / tp), ...) of the LM head (a view into the embedding when
  // tied, which every rank keeps whole), so each rank reads 1/tp of the head in a decode step.
  // forward() and forward_greedy() then gather through the all_reduce hook: greedy rows as every
  // rank's (largest logit, id, exp-sum), other rows as whole logits rows, so their results equal
  // one rank's with the whole head. enqueue_forward()'s device_logits() are this rank's columns
  // [rows, lm_head_rows()].
  Status shard_lm_head(int tp, int tp_rank);
  int64_t lm_head_rows() const { return head_rows_; }

  // Benchmarks: when on, every forward records CUDA events between its phases and phase_times_ms()
  // returns the GPU time per phase ("gemm qkv", "attention", ...) summed over the forwards since
  // the last reset. Off by default (no events recorded).
  void set_profiling(bool on);
  std::vector<std::pair<std::string, double>> phase_times_ms();

 private:
  struct Layer {
    bf16* w_qkv = nullptr;   // [(heads + 2 kv_heads) * head_dim, hidden]: Wq, Wk, Wv stacked
    bf16* wo = nullptr;      // [hidden, heads * head_dim]
    bf16* w_up = nullptr;    // [2 ffn, hidden] (gate rows, then up rows) or [ffn, hidden] (OPT fc1)
    bf16* w_down = nullptr;  // [hidden, ffn]
    float* attn_norm = nullptr;  // [hidden] f32, as the small tensors below
    float* attn_norm_b = nullptr;
    float* ffn_norm = nullptr;
    float* ffn_norm_b = nullptr;
    float* bq = nullptr;
    float* bk = nullptr;
    float* bv = nullptr;
    float* bo = nullptr;
    float* b_up = nullptr;
    float* b_down = nullptr;
  };

  Status wait_stream();  // the forward's wait for stream_ (DistHooks::wait when set)

  // The device buffers a captured forward has baked in; a graph is valid while they are the same.
  using GraphBuffers = std::array<const void*, 12>;
  struct DecodeGraph {
    int64_t batch = 0;
    int64_t ctx_bucket = 0;
    GraphBuffers buffers{};
    cudaGraphExec_t exec = nullptr;
    int64_t last_use = 0;
  };

  CudaModel(const ModelConfig& config);
  Status init();  // stream, cuBLAS handle
  Result<void*> alloc(size_t bytes, const char* what);
  Status upload_matrix(const WeightTensor& w, bf16* dst);
  Result<float*> upload_small(const WeightTensor* w, const char* what);
  Result<float*> small_constant(int64_t n, float value, const char* what);
  Status alloc_layers();  // Layer pointers for every weight of the config
  Status set_rope(const std::vector<float>& inv_freq);
  Status gemm(const bf16* w, int64_t out, int64_t in, const bf16* x, int64_t num_tokens, void* y,
              cudaDataType_t y_type, float beta);
  Status cublas_gemm(const bf16* w, int64_t out, int64_t in, const bf16* x, int64_t num_tokens,
                     void* y, cudaDataType_t y_type, float beta);
  // Sets gemv_max_tokens_ (called once the weights are in place; see its comment).
  Status calibrate_gemv();
  Status check_batch(std::span<const ForwardSeq> seqs, const KvPoolView& kv) const;
  Status build_metadata(std::span<const ForwardSeq> seqs, const KvPoolView& kv);
  Status run_layers(const KvPoolView& kv);
  // The graph key's context bucket of a batch, or 0 when the batch does not run as a graph.
  int64_t decode_graph_bucket(std::span<const ForwardSeq> seqs) const;
  GraphBuffers graph_buffers(const KvPoolView& kv) const;
  // Replays (or captures, then replays) the layers of the current decode batch; false when the
  // batch must run eagerly (first sighting of its key, capture failed).
  Result<bool> run_decode_graph(int64_t ctx_bucket, const KvPoolView& kv);
  void mark(const char* phase);  // profiling: the GPU work enqueued since the last mark is `phase`
  void collect_marks();          // profiling: adds the finished marks' times to phase_ms_

  ModelConfig config_;
  int64_t weight_bytes_ = 0;
  std::vector<void*> allocations_;  // every weight allocation, freed by the destructor
  bf16* tok_embd_ = nullptr;        // [vocab, hidden]
  bf16* pos_embd_ = nullptr;        // [max_pos + offset, hidden] (OPT)
  bf16* output_ = nullptr;          // [head_rows_, hidden] (a view into tok_embd_ when tied)
  int64_t head_rows_ = 0;           // the vocab, or this rank's rows of a vocab-parallel head
  int64_t head_begin_ = 0;          // the first vocabulary id of those rows
  int head_tp_ = 1, head_rank_ = 0;
  float* output_norm_ = nullptr;
  float* output_norm_b_ = nullptr;
  float* inv_freq_ = nullptr;  // [head_dim / 2]; null without rope
  std::vector<Layer> layers_;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  int num_sms_ = 0;
  // Decode batches of 1..gemv_max_tokens_ tokens run the weight-streaming GEMV (kernels.h), larger
  // ones cuBLAS. The GEMV reads its input once per token per weight chunk, so its time grows with
  // the tokens while cuBLAS's hardly does below ~16; where they cross depends on the shape and the
  // GPU (Llama-3-70B at TP=4 on an H200: 4 tokens ran at twice cuBLAS's time). calibrate_gemv
  // times both on this model's own matrices; FASTSERVE_GEMV_MAX_TOKENS=k (0..8) sets it instead.
  int64_t gemv_max_tokens_ = kMaxGemvTokens;

  DistHooks dist_;
  bool cuda_graphs_ = true;
  std::vector<DecodeGraph> graphs_;
  std::vector<std::pair<int64_t, int64_t>> graph_keys_seen_;  // (batch, bucket) run once eagerly
  int64_t graph_clock_ = 0;
  int64_t num_graph_replays_ = 0;
  int64_t num_graph_captures_ = 0;
  int64_t max_decode_graphs_ = kMaxDecodeGraphs;
  bool logged_graph_eviction_ = false;

  // Per-forward sizes (set by build_metadata).
  int64_t num_tokens_ = 0, num_rows_ = 0, num_tiles_ = 0, num_decode_ = 0;
  int32_t max_splits_ = 1, split_len_ = 0;
  // Metadata: one pinned host buffer and its device copy, int32 sections (offsets in elements):
  // tokens [T], positions [T], slots [T], logit rows [R], seqs [S] AttnSeqDesc, prefill tiles [P]
  // PrefillTile, decode tokens [D] DecodeDesc, block tables (last: every offset before it depends
  // only on T, R, S, P, D, so a decode graph's offsets stay valid while table lengths change).
  std::vector<int32_t> meta_;
  int32_t* meta_pinned_ = nullptr;
  cudaEvent_t meta_copied_ = nullptr;  // recorded after the copy of meta_pinned_
  size_t meta_pinned_capacity_ = 0;
  DeviceBuffer meta_dev_;
  size_t off_tokens_ = 0, off_positions_ = 0, off_slots_ = 0, off_rows_ = 0, off_seqs_ = 0,
         off_tables_ = 0, off_tiles_ = 0, off_decode_ = 0;

  // Activations (grown on demand). For a batch of T tokens and R logits rows:
  DeviceBuffer x_;           // [T, hidden] f32 residual stream
  DeviceBuffer h_;           // [T, hidden] bf16 normed input of a block; [R, hidden] for the head
  DeviceBuffer qkv_;         // [T, (heads + 2 kv_heads) * head_dim] f32
  DeviceBuffer q_;           // [T, heads * head_dim] bf16, after rope
  DeviceBuffer attn_;        // [T, heads * head_dim] bf16
  DeviceBuffer up_;          // [T, 2 ffn] bf16 (gate, up) or [T, ffn] (OPT fc1)
  DeviceBuffer act_;         // [T, ffn] bf16
  DeviceBuffer partials_;    // decode split partials, [D, heads, max_splits, head_dim + 2] f32
  DeviceBuffer logits_;      // [R, vocab] f32 (vocab-parallel: [R, head_rows_] until gathered)
  DeviceBuffer logits_full_;  // vocab-parallel: [R, vocab] f32, the gathered rows
  DeviceBuffer pick_parts_;   // vocab-parallel: [R, head_tp_, 3] f32 (launch_greedy_pick_part)
  DeviceBuffer tokens_out_;  // [R] int32 (greedy)
  DeviceBuffer cublas_workspace_;
  bool profiling_ = false;
  std::vector<cudaEvent_t> event_pool_;
  std::vector<std::pair<const char*, cudaEvent_t>> marks_;  // this forward's (phase, end event)
  std::vector<std::pair<std::string, double>> phase_ms_;
  float* logits_pinned_ = nullptr;  // [R, vocab] host copy of the logits
  size_t logits_pinned_capacity_ = 0;
  int32_t* tokens_pinned_ = nullptr;
  size_t tokens_pinned_capacity_ = 0;
  DeviceBuffer picks_;                   // [R] GreedyPick
  GreedyPick* picks_pinned_ = nullptr;   // its host copy
  size_t picks_pinned_capacity_ = 0;
  std::span<const GreedyPick> picks_view_;
  std::vector<bool> row_copied_;         // per logits row: copied to the host (not greedy)
  // Vocab-parallel head: every rank's columns of the first `rows` logits rows summed into
  // logits_full_ (returned); every rank's pick parts combined into picks / tokens (either null).
  Result<const float*> gather_logits(int64_t rows);
  Status gather_picks(int64_t rows, int32_t* picks, int32_t* tokens);
};

}  // namespace fs::cuda
