#include "backend/cpu/attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "backend/cpu/attention_kernels.h"
#include "backend/cpu/matmul_kernels.h"
#include "core/check.h"
#include "core/dtype.h"

namespace fs::cpu {

namespace {

// Positions per partial result. A token's context is cut into chunks of this many positions at
// fixed offsets (0, 64, 128, ...), each chunk gives (max, sum of exp, unnormalized output) and the
// chunks are merged in order (flash-decoding). The cut depends only on the token's own context
// length, never on the batch or the thread count, so a sequence's output is bit-identical alone or
// batched; the split lets few long decodes spread over all threads.
constexpr int64_t kChunk = 64;

// Finds the sequence holding batch row t (seqs are few: a linear scan is cheapest).
const AttentionSeq& seq_of_token(std::span<const AttentionSeq> seqs, int64_t t) {
  for (const AttentionSeq& s : seqs) {
    if (t >= s.token_begin && t < s.token_begin + s.num_new) return s;
  }
  FS_CHECK(false, "token {} is in no sequence of the batch", t);
  return seqs[0];
}

inline float kv_elem(const float* p) { return *p; }
inline float kv_elem(const uint16_t* p) { return fp16_to_fp32(*p); }

template <typename T>
void scores_scalar(const float* q, int64_t group, const void* kv, int64_t k_stride, int64_t n,
                   int64_t hd, float scale, float* scores, int64_t s_stride) {
  const T* k = static_cast<const T*>(kv);
  for (int64_t h = 0; h < group; ++h) {
    for (int64_t i = 0; i < n; ++i) {
      float sum = 0.0f;
      for (int64_t d = 0; d < hd; ++d) sum += q[h * hd + d] * kv_elem(k + i * k_stride + d);
      scores[h * s_stride + i] = sum * scale;
    }
  }
}

template <typename T>
void accumulate_scalar(const float* w, int64_t w_stride, int64_t group, const void* vv,
                       int64_t v_stride, int64_t n, int64_t hd, float* acc, int64_t a_stride) {
  const T* v = static_cast<const T*>(vv);
  for (int64_t h = 0; h < group; ++h) {
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t d = 0; d < hd; ++d) {
        acc[h * a_stride + d] += w[h * w_stride + i] * kv_elem(v + i * v_stride + d);
      }
    }
  }
}

// scores[i] = exp(scores[i] - max_score); returns the sum.
float softmax_exp_scalar(float* scores, int64_t n, float max_score) {
  float sum = 0.0f;
  for (int64_t i = 0; i < n; ++i) sum += (scores[i] = std::exp(scores[i] - max_score));
  return sum;
}

}  // namespace

AttnKernels attn_kernels_scalar(KvDtype dtype) {
  switch (dtype) {
    case KvDtype::kF32:
      return {scores_scalar<float>, accumulate_scalar<float>, softmax_exp_scalar};
    case KvDtype::kF16:
      break;
  }
  return {scores_scalar<uint16_t>, accumulate_scalar<uint16_t>, softmax_exp_scalar};
}

// AVX2 when the matmuls use it (CPU support, FASTSERVE_CPU_KERNELS) and head_dim is a multiple of 8
// (every common head size); for f16 pools AVX-512 when the matmuls use it and head_dim is a
// multiple of 16. f32 pools stay on the AVX2 kernels on AVX-512 machines too: their 8-lane sums
// are what the numerics fixtures were made with (the AVX-512 kernels' 16-lane order moved one
// near-tie top-1 of the Q4_1 transformers fixture), and for f32 the one-pass kernels measured no
// faster (decode reads are latency-bound; docs/KERNELS.md "Attention").
AttnKernels attn_kernels_for(int64_t head_dim, KvDtype dtype) {
  if (dtype == KvDtype::kF16 && use_avx512_kernels() && head_dim % 16 == 0) {
    return attn_kernels_avx512(dtype);
  }
  if (use_avx2_kernels() && head_dim % 8 == 0) return attn_kernels_avx2(dtype);
  return attn_kernels_scalar(dtype);
}

void f32_to_f16_row_avx2(const float* src, uint16_t* dst, int64_t n);  // attention_avx2.cc

void f32_to_f16_row(const float* src, uint16_t* dst, int64_t n) {
  if (use_avx2_kernels()) return f32_to_f16_row_avx2(src, dst, n);
  for (int64_t i = 0; i < n; ++i) dst[i] = fp32_to_fp16(src[i]);
}

namespace {

void check_seq(const KvCache& cache, const AttentionSeq& s) {
  const int64_t bs = cache.shape().block_size;
  const int64_t needed = (s.num_past + s.num_new + bs - 1) / bs;
  FS_CHECK(static_cast<int64_t>(s.block_table.size()) >= needed,
           "block table holds {} blocks, {} positions need {}", s.block_table.size(),
           s.num_past + s.num_new, needed);
}

// One unit of work: new token t against every KV head. The `group` query heads of a KV head
// (GQA) share every K/V row they read, and a run of slots is read for all KV heads at once: a
// block's K (or V) rows of one layer are one contiguous range
// ([block_size][num_kv_heads][head_dim]), so the unit streams it front to back instead of visiting
// a third of it per KV head (SmolLM2: 3 KV heads x 256 B of every 768 B row), which the hardware
// prefetchers follow far better.
struct Unit {
  const AttentionSeq* seq;
  int64_t t, n_ctx;
  int64_t num_chunks() const { return (n_ctx + kChunk - 1) / kChunk; }
};

// Partial result of one chunk for one query head: [head_dim] unnormalized output, then max, sum.
inline int64_t partial_floats(int64_t hd) { return hd + 2; }

// Sequences with at most this many new tokens (decode, short chunks) prefetch their K/V runs.
constexpr int64_t kPrefetchMaxNew = 4;

class Attender {
 public:
  Attender(const KvCache& cache, int64_t layer, const float* q, int64_t num_heads, float scale)
      : cache_(cache),
        layer_(layer),
        q_(q),
        num_heads_(num_heads),
        scale_(scale),
        hd_(cache.shape().head_dim),
        num_kv_heads_(cache.shape().num_kv_heads),
        group_(num_heads / num_kv_heads_),
        elem_bytes_(kv_dtype_bytes(cache.shape().dtype)),
        k_(attn_kernels_for(hd_, cache.shape().dtype)) {}

  // Requests the cache lines of n consecutive slots (whole rows, every KV head) into L2; no effect
  // on results.
  void prefetch_slots(const uint8_t* rows, int64_t n) const {
    const int64_t bytes = n * cache_.shape().row_floats() * elem_bytes_;
    for (int64_t b = 0; b < bytes; b += 64) __builtin_prefetch(rows + b, 0, 2);
  }

  // Partials of chunk c of unit u for every query head: out [num_heads][partial_floats].
  // scores: scratch of num_heads * kChunk floats.
  void chunk(const Unit& u, int64_t c, float* scores, float* out) const {
    const int64_t bs = cache_.shape().block_size, stride = cache_.shape().row_floats();
    const int64_t p0 = c * kChunk, p1 = std::min(u.n_ctx, p0 + kChunk), n = p1 - p0;
    const int64_t pf = partial_floats(hd_);
    const float* qt = q_ + u.t * num_heads_ * hd_;  // [num_heads, hd]
    const bool prefetch = u.seq->num_new <= kPrefetchMaxNew;
    for (int kv = 0; kv < 2; ++kv) {
      if (kv == 1) {
        for (int64_t h = 0; h < num_heads_; ++h) {
          float* sc = scores + h * kChunk;
          float* part = out + h * pf;
          const float m = *std::max_element(sc, sc + n);
          part[hd_] = m;
          part[hd_ + 1] = k_.softmax_exp(sc, n, m);
          std::fill(part, part + hd_, 0.0f);
        }
      }
      // Runs of consecutive slots inside one block: one kernel call per run and KV head, for the
      // KV head's whole group of query heads.
      for (int64_t p = p0; p < p1;) {
        const int64_t slot = p % bs, len = std::min(p1 - p, bs - slot);
        const uint8_t* rows = cache_.row_data(u.seq->block_table[p / bs], layer_, kv, slot);
        // The next run (the next block's rows, or the V rows of the chunk's first block after the
        // last K run) into L2 while this one is computed: each run is a few KB in a block far from
        // the last, which the hardware prefetchers do not foresee (decode at context 700 spent
        // ~40% of a step here at ~7 GB/s without it). Not for prefills: their tokens share the
        // sequence's K/V rows, which stay in cache, so the prefetch loop would be wasted work.
        if (prefetch && p + len < p1) {
          prefetch_slots(cache_.row_data(u.seq->block_table[(p + len) / bs], layer_, kv, 0),
                         std::min(p1 - p - len, bs));
        } else if (prefetch && kv == 0) {
          prefetch_slots(cache_.row_data(u.seq->block_table[p0 / bs], layer_, 1, p0 % bs),
                         std::min(n, bs - p0 % bs));
        }
        for (int64_t g = 0; g < num_kv_heads_; ++g) {
          const int64_t h0 = g * group_;
          if (kv == 0) {
            k_.scores(qt + h0 * hd_, group_, rows + g * hd_ * elem_bytes_, stride, len, hd_, scale_,
                      scores + h0 * kChunk + (p - p0), kChunk);
          } else {
            k_.accumulate(scores + h0 * kChunk + (p - p0), kChunk, group_,
                          rows + g * hd_ * elem_bytes_, stride, len, hd_, out + h0 * pf, pf);
          }
        }
        p += len;
      }
    }
  }

  // Merges the unit's chunk partials (chunk c of head h at parts[(c * num_heads + h) *
  // partial_floats]) in chunk order into the token's out rows.
  void merge(const Unit& u, const float* parts, float* out) const {
    const int64_t nc = u.num_chunks(), pf = partial_floats(hd_);
    for (int64_t h = 0; h < num_heads_; ++h) {
      float* o = out + (u.t * num_heads_ + h) * hd_;
      float m = -INFINITY;
      for (int64_t c = 0; c < nc; ++c) m = std::max(m, parts[(c * num_heads_ + h) * pf + hd_]);
      float sum = 0.0f;
      std::fill(o, o + hd_, 0.0f);
      for (int64_t c = 0; c < nc; ++c) {
        const float* part = parts + (c * num_heads_ + h) * pf;
        const float e = std::exp(part[hd_] - m);
        sum += e * part[hd_ + 1];
        for (int64_t d = 0; d < hd_; ++d) o[d] += e * part[d];
      }
      const float inv = 1.0f / sum;
      for (int64_t d = 0; d < hd_; ++d) o[d] *= inv;
    }
  }

  // Floats of one chunk's partials: [num_heads][partial_floats].
  int64_t chunk_floats() const { return num_heads_ * partial_floats(hd_); }
  int64_t scores_floats() const { return num_heads_ * kChunk; }

 private:
  const KvCache& cache_;
  int64_t layer_;
  const float* q_;
  int64_t num_heads_;
  float scale_;
  int64_t hd_, num_kv_heads_, group_, elem_bytes_;
  AttnKernels k_;
};

}  // namespace

void write_kv(KvCache& cache, int64_t layer, std::span<const AttentionSeq> seqs, const float* k,
              const float* v) {
  const int64_t bs = cache.shape().block_size;
  const int64_t row = cache.shape().row_floats();
  for (const AttentionSeq& s : seqs) {
    check_seq(cache, s);
    for (int64_t j = 0; j < s.num_new; ++j) {
      const int64_t pos = s.num_past + j;
      const int64_t block = s.block_table[pos / bs];
      FS_CHECK(block >= 0 && block < cache.shape().num_blocks, "block id {} out of range", block);
      const int64_t t = s.token_begin + j;
      switch (cache.shape().dtype) {
        case KvDtype::kF32:
          std::memcpy(cache.row(block, layer, 0, pos % bs), k + t * row, row * sizeof(float));
          std::memcpy(cache.row(block, layer, 1, pos % bs), v + t * row, row * sizeof(float));
          break;
        case KvDtype::kF16:
          f32_to_f16_row(k + t * row, cache.row_f16(block, layer, 0, pos % bs), row);
          f32_to_f16_row(v + t * row, cache.row_f16(block, layer, 1, pos % bs), row);
          break;
      }
    }
  }
}

void paged_attention(const KvCache& cache, int64_t layer, std::span<const AttentionSeq> seqs,
                     const float* q, int64_t num_heads, float scale, float* out, ThreadPool& pool) {
  const int64_t num_kv_heads = cache.shape().num_kv_heads;
  FS_CHECK(num_heads % num_kv_heads == 0, "{} heads do not group over {} KV heads", num_heads,
           num_kv_heads);
  int64_t num_tokens = 0;
  for (const AttentionSeq& s : seqs) {
    check_seq(cache, s);
    num_tokens = std::max(num_tokens, s.token_begin + s.num_new);
  }
  const Attender att(cache, layer, q, num_heads, scale);
  const int64_t cf = att.chunk_floats(), sf = att.scores_floats();
  const int64_t num_units = num_tokens;
  auto unit_at = [&](int64_t t) {
    const AttentionSeq& s = seq_of_token(seqs, t);
    return Unit{&s, t, s.num_past + (t - s.token_begin) + 1};
  };
  const int64_t threads = pool.num_threads();
  if (num_units >= 4 * threads) {
    // Many units (prefill, larger decode batches): one task per unit computes its chunks one after
    // another, then merges them. Grains are handed out dynamically: causal prefill units differ
    // in length.
    const int64_t grain = std::max<int64_t>(1, num_units / (16 * threads));
    pool.parallel_for_dynamic(num_units, grain, [&](int64_t begin, int64_t end) {
      thread_local std::vector<float> scores, parts;
      if (static_cast<int64_t>(scores.size()) < sf) scores.resize(sf);
      for (int64_t i = begin; i < end; ++i) {
        const Unit u = unit_at(i);
        const int64_t nc = u.num_chunks();
        if (static_cast<int64_t>(parts.size()) < nc * cf) parts.resize(nc * cf);
        for (int64_t c = 0; c < nc; ++c) att.chunk(u, c, scores.data(), parts.data() + c * cf);
        att.merge(u, parts.data(), out);
      }
    });
    return;
  }
  // Few units (small decode batches): every (unit, chunk) is a task of its own, so a long context
  // spreads over all threads; the merge (cheap) follows on the caller. Same arithmetic as above.
  // The caller's reusable buffers, named by reference: a thread_local named inside the lambda
  // would be the worker's own copy.
  thread_local std::vector<int64_t> first_chunk_buf;  // [num_units + 1] prefix sums of chunk counts
  thread_local std::vector<Unit> units_buf;
  thread_local std::vector<float> parts_buf;  // [total chunks, num_heads, partial_floats]
  std::vector<int64_t>& first_chunk = first_chunk_buf;
  std::vector<Unit>& units = units_buf;
  std::vector<float>& parts = parts_buf;
  units.clear();
  first_chunk.assign(1, 0);
  for (int64_t i = 0; i < num_units; ++i) {
    units.push_back(unit_at(i));
    first_chunk.push_back(first_chunk.back() + units.back().num_chunks());
  }
  const int64_t total = first_chunk.back();
  if (static_cast<int64_t>(parts.size()) < total * cf) parts.resize(total * cf);
  pool.parallel_for_dynamic(total, 1, [&](int64_t begin, int64_t end) {
    thread_local std::vector<float> scores;
    if (static_cast<int64_t>(scores.size()) < sf) scores.resize(sf);
    for (int64_t j = begin; j < end; ++j) {
      const int64_t i =
          std::upper_bound(first_chunk.begin(), first_chunk.end(), j) - first_chunk.begin() - 1;
      att.chunk(units[i], j - first_chunk[i], scores.data(), parts.data() + j * cf);
    }
  });
  for (int64_t i = 0; i < num_units; ++i)
    att.merge(units[i], parts.data() + first_chunk[i] * cf, out);
}

namespace {

// Element i of a K/V row as a float, whatever the pool's dtype (reference only).
float kv_at(const KvCache& cache, int64_t block, int64_t layer, int kv, int64_t slot, int64_t i) {
  switch (cache.shape().dtype) {
    case KvDtype::kF32:
      return cache.row(block, layer, kv, slot)[i];
    case KvDtype::kF16:
      break;
  }
  return fp16_to_fp32(reinterpret_cast<const uint16_t*>(cache.row_data(block, layer, kv, slot))[i]);
}

}  // namespace

void paged_attention_reference(const KvCache& cache, int64_t layer,
                               std::span<const AttentionSeq> seqs, const float* q,
                               int64_t num_heads, float scale, float* out) {
  const KvCacheShape& shape = cache.shape();
  const int64_t hd = shape.head_dim, bs = shape.block_size;
  const int64_t group = num_heads / shape.num_kv_heads;
  for (const AttentionSeq& s : seqs) {
    for (int64_t j = 0; j < s.num_new; ++j) {
      const int64_t t = s.token_begin + j, n_ctx = s.num_past + j + 1;
      for (int64_t h = 0; h < num_heads; ++h) {
        const int64_t g = h / group;
        std::vector<double> w(n_ctx);
        double max_score = -INFINITY;
        for (int64_t p = 0; p < n_ctx; ++p) {
          double d = 0;
          for (int64_t i = 0; i < hd; ++i) {
            d += static_cast<double>(q[(t * num_heads + h) * hd + i]) *
                 kv_at(cache, s.block_table[p / bs], layer, 0, p % bs, g * hd + i);
          }
          w[p] = d * scale;
          max_score = std::max(max_score, w[p]);
        }
        double sum = 0;
        for (double& x : w) sum += (x = std::exp(x - max_score));
        for (int64_t d = 0; d < hd; ++d) {
          double a = 0;
          for (int64_t p = 0; p < n_ctx; ++p) {
            a += w[p] * kv_at(cache, s.block_table[p / bs], layer, 1, p % bs, g * hd + d);
          }
          out[(t * num_heads + h) * hd + d] = static_cast<float>(a / sum);
        }
      }
    }
  }
}

}  // namespace fs::cpu
