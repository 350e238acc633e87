#include "backend/cpu/attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "backend/cpu/matmul_kernels.h"
#include "core/check.h"

namespace fs::cpu {

// AVX2+FMA versions (attention_avx2.cc), used when the CPU has them.
float softmax_exp_avx2(float* scores, int64_t n, float max_score);
void attn_scores_avx2(const float* q, const float* k, int64_t k_stride, int64_t n, int64_t hd,
                      float scale, float* scores);
void attn_accumulate_avx2(const float* w, const float* v, int64_t v_stride, int64_t n, int64_t hd,
                          float* acc);

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

struct Kernels {
  void (*scores)(const float* q, const float* k, int64_t k_stride, int64_t n, int64_t hd,
                 float scale, float* scores);
  void (*accumulate)(const float* w, const float* v, int64_t v_stride, int64_t n, int64_t hd,
                     float* acc);
  float (*softmax_exp)(float* scores, int64_t n, float max_score);
};

void scores_scalar(const float* q, const float* k, int64_t k_stride, int64_t n, int64_t hd,
                   float scale, float* scores) {
  for (int64_t i = 0; i < n; ++i) {
    float sum = 0.0f;
    for (int64_t d = 0; d < hd; ++d) sum += q[d] * k[i * k_stride + d];
    scores[i] = sum * scale;
  }
}

void accumulate_scalar(const float* w, const float* v, int64_t v_stride, int64_t n, int64_t hd,
                       float* acc) {
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t d = 0; d < hd; ++d) acc[d] += w[i] * v[i * v_stride + d];
  }
}

// scores[i] = exp(scores[i] - max_score); returns the sum.
float softmax_exp_scalar(float* scores, int64_t n, float max_score) {
  float sum = 0.0f;
  for (int64_t i = 0; i < n; ++i) sum += (scores[i] = std::exp(scores[i] - max_score));
  return sum;
}

// AVX2 when the matmuls use it (CPU support, FASTSERVE_CPU_KERNELS) and head_dim is a multiple of 8
// (every common head size).
Kernels kernels_for(int64_t head_dim) {
  if (use_avx2_kernels() && head_dim % 8 == 0) {
    return {attn_scores_avx2, attn_accumulate_avx2, softmax_exp_avx2};
  }
  return {scores_scalar, accumulate_scalar, softmax_exp_scalar};
}

void check_seq(const KvCache& cache, const AttentionSeq& s) {
  const int64_t bs = cache.shape().block_size;
  const int64_t needed = (s.num_past + s.num_new + bs - 1) / bs;
  FS_CHECK(static_cast<int64_t>(s.block_table.size()) >= needed,
           "block table holds {} blocks, {} positions need {}", s.block_table.size(),
           s.num_past + s.num_new, needed);
}

// One unit of work: new token t against KV head g, i.e. the `group` query heads g * group ..
// (g + 1) * group - 1, which share every K/V row they read.
struct Unit {
  const AttentionSeq* seq;
  int64_t t, g, n_ctx;
  int64_t num_chunks() const { return (n_ctx + kChunk - 1) / kChunk; }
};

// Partial result of one chunk for one query head: [head_dim] unnormalized output, then max, sum.
inline int64_t partial_floats(int64_t hd) { return hd + 2; }

// Sequences with at most this many new tokens (decode, short chunks) prefetch their K/V runs.
constexpr int64_t kPrefetchMaxNew = 4;

// Requests the cache lines of one K/V row (`floats` floats) into L2; no effect on results.
inline void prefetch_row_lines(const float* row, int64_t floats) {
  for (int64_t f = 0; f < floats; f += 16) __builtin_prefetch(row + f, 0, 2);
}

class Attender {
 public:
  Attender(const KvCache& cache, int64_t layer, const float* q, int64_t num_heads, float scale)
      : cache_(cache),
        layer_(layer),
        q_(q),
        num_heads_(num_heads),
        scale_(scale),
        hd_(cache.shape().head_dim),
        group_(num_heads / cache.shape().num_kv_heads),
        k_(kernels_for(hd_)) {}

  void prefetch_rows(const float* rows, int64_t stride, int64_t n) const {
    for (int64_t i = 0; i < n; ++i) prefetch_row_lines(rows + i * stride, hd_);
  }

  // Partials of chunk c of unit u for its group query heads: out [group][partial_floats].
  // scores: scratch of group * kChunk floats.
  void chunk(const Unit& u, int64_t c, float* scores, float* out) const {
    const int64_t bs = cache_.shape().block_size, stride = cache_.shape().row_floats();
    const int64_t p0 = c * kChunk, p1 = std::min(u.n_ctx, p0 + kChunk), n = p1 - p0;
    const float* qg = q_ + (u.t * num_heads_ + u.g * group_) * hd_;  // [group, hd]
    for (int kv = 0; kv < 2; ++kv) {
      if (kv == 1) {
        for (int64_t h = 0; h < group_; ++h) {
          float* sc = scores + h * kChunk;
          float* part = out + h * partial_floats(hd_);
          const float m = *std::max_element(sc, sc + n);
          part[hd_] = m;
          part[hd_ + 1] = k_.softmax_exp(sc, n, m);
          std::fill(part, part + hd_, 0.0f);
        }
      }
      // Runs of consecutive slots inside one block: one kernel call per run and head.
      for (int64_t p = p0; p < p1;) {
        const int64_t slot = p % bs, len = std::min(p1 - p, bs - slot);
        const float* rows = cache_.row(u.seq->block_table[p / bs], layer_, kv, slot) + u.g * hd_;
        // The next run (the next block's rows, or the V rows of the chunk's first block after the
        // last K run) into L2 while this one is computed: each run is a few KB in a block far from
        // the last, which the hardware prefetchers do not foresee (decode at context 700 spent
        // ~40% of a step here at ~7 GB/s without it). Not for prefills: their tokens share the
        // sequence's K/V rows, which stay in cache, so the prefetch loop would be wasted work.
        const bool prefetch = u.seq->num_new <= kPrefetchMaxNew;
        if (prefetch && p + len < p1) {
          prefetch_rows(cache_.row(u.seq->block_table[(p + len) / bs], layer_, kv, 0) + u.g * hd_,
                        stride, std::min(p1 - p - len, bs));
        } else if (prefetch && kv == 0) {
          prefetch_rows(cache_.row(u.seq->block_table[p0 / bs], layer_, 1, p0 % bs) + u.g * hd_,
                        stride, std::min(n, bs - p0 % bs));
        }
        for (int64_t h = 0; h < group_; ++h) {
          if (kv == 0) {
            k_.scores(qg + h * hd_, rows, stride, len, hd_, scale_, scores + h * kChunk + (p - p0));
          } else {
            k_.accumulate(scores + h * kChunk + (p - p0), rows, stride, len, hd_,
                          out + h * partial_floats(hd_));
          }
        }
        p += len;
      }
    }
  }

  // Merges the unit's chunk partials (chunk c of head h at parts[(c * group + h) *
  // partial_floats]) in chunk order into out rows of the group's heads.
  void merge(const Unit& u, const float* parts, float* out) const {
    const int64_t nc = u.num_chunks(), pf = partial_floats(hd_);
    for (int64_t h = 0; h < group_; ++h) {
      float* o = out + (u.t * num_heads_ + u.g * group_ + h) * hd_;
      float m = -INFINITY;
      for (int64_t c = 0; c < nc; ++c) m = std::max(m, parts[(c * group_ + h) * pf + hd_]);
      float sum = 0.0f;
      std::fill(o, o + hd_, 0.0f);
      for (int64_t c = 0; c < nc; ++c) {
        const float* part = parts + (c * group_ + h) * pf;
        const float e = std::exp(part[hd_] - m);
        sum += e * part[hd_ + 1];
        for (int64_t d = 0; d < hd_; ++d) o[d] += e * part[d];
      }
      const float inv = 1.0f / sum;
      for (int64_t d = 0; d < hd_; ++d) o[d] *= inv;
    }
  }

  int64_t group() const { return group_; }
  int64_t head_dim() const { return hd_; }

 private:
  const KvCache& cache_;
  int64_t layer_;
  const float* q_;
  int64_t num_heads_;
  float scale_;
  int64_t hd_, group_;
  Kernels k_;
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
      std::memcpy(cache.row(block, layer, 0, pos % bs), k + t * row, row * sizeof(float));
      std::memcpy(cache.row(block, layer, 1, pos % bs), v + t * row, row * sizeof(float));
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
  const int64_t group = att.group(), pf = partial_floats(att.head_dim());
  const int64_t num_units = num_tokens * num_kv_heads;
  auto unit_at = [&](int64_t i) {
    const int64_t t = i / num_kv_heads;
    const AttentionSeq& s = seq_of_token(seqs, t);
    return Unit{&s, t, i % num_kv_heads, s.num_past + (t - s.token_begin) + 1};
  };
  const int64_t threads = pool.num_threads();
  if (num_units >= 4 * threads) {
    // Many units (prefill, larger decode batches): one task per unit computes its chunks one after
    // another, then merges them. Grains are handed out dynamically: causal prefill units differ
    // in length.
    const int64_t grain = std::max<int64_t>(1, num_units / (16 * threads));
    pool.parallel_for_dynamic(num_units, grain, [&](int64_t begin, int64_t end) {
      thread_local std::vector<float> scores, parts;
      if (static_cast<int64_t>(scores.size()) < group * kChunk) scores.resize(group * kChunk);
      for (int64_t i = begin; i < end; ++i) {
        const Unit u = unit_at(i);
        const int64_t nc = u.num_chunks();
        if (static_cast<int64_t>(parts.size()) < nc * group * pf) parts.resize(nc * group * pf);
        for (int64_t c = 0; c < nc; ++c)
          att.chunk(u, c, scores.data(), parts.data() + c * group * pf);
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
  thread_local std::vector<float> parts_buf;  // [total chunks, group, partial_floats]
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
  if (static_cast<int64_t>(parts.size()) < total * group * pf) parts.resize(total * group * pf);
  pool.parallel_for_dynamic(total, 1, [&](int64_t begin, int64_t end) {
    thread_local std::vector<float> scores;
    if (static_cast<int64_t>(scores.size()) < group * kChunk) scores.resize(group * kChunk);
    for (int64_t j = begin; j < end; ++j) {
      const int64_t i =
          std::upper_bound(first_chunk.begin(), first_chunk.end(), j) - first_chunk.begin() - 1;
      att.chunk(units[i], j - first_chunk[i], scores.data(), parts.data() + j * group * pf);
    }
  });
  for (int64_t i = 0; i < num_units; ++i) {
    att.merge(units[i], parts.data() + first_chunk[i] * group * pf, out);
  }
}

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
          const float* kp = cache.row(s.block_table[p / bs], layer, 0, p % bs) + g * hd;
          double d = 0;
          for (int64_t i = 0; i < hd; ++i)
            d += static_cast<double>(q[(t * num_heads + h) * hd + i]) * kp[i];
          w[p] = d * scale;
          max_score = std::max(max_score, w[p]);
        }
        double sum = 0;
        for (double& x : w) sum += (x = std::exp(x - max_score));
        for (int64_t d = 0; d < hd; ++d) {
          double a = 0;
          for (int64_t p = 0; p < n_ctx; ++p) {
            a += w[p] * cache.row(s.block_table[p / bs], layer, 1, p % bs)[g * hd + d];
          }
          out[(t * num_heads + h) * hd + d] = static_cast<float>(a / sum);
        }
      }
    }
  }
}

}  // namespace fs::cpu
