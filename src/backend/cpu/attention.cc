#include "backend/cpu/attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/check.h"

namespace fs::cpu {

// AVX2+FMA versions (attention_avx2.cc), used when the CPU has them.
float softmax_exp_avx2(float* scores, int64_t n, float max_score);
float dot_avx2(const float* a, const float* b, int64_t n);
void axpy_avx2(float w, const float* v, float* acc, int64_t n);

namespace {

// Finds the sequence holding batch row t (seqs are few: a linear scan is cheapest).
const AttentionSeq& seq_of_token(std::span<const AttentionSeq> seqs, int64_t t) {
  for (const AttentionSeq& s : seqs) {
    if (t >= s.token_begin && t < s.token_begin + s.num_new) return s;
  }
  FS_CHECK(false, "token {} is in no sequence of the batch", t);
  return seqs[0];
}

bool use_avx2() {
  static const bool yes = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return yes;
}

float dot(const float* a, const float* b, int64_t n) {
  if (use_avx2()) return dot_avx2(a, b, n);
  float sum = 0.0f;
  for (int64_t i = 0; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

void axpy(float w, const float* v, float* acc, int64_t n) {
  if (use_avx2()) return axpy_avx2(w, v, acc, n);
  for (int64_t d = 0; d < n; ++d) acc[d] += w * v[d];
}

// scores[i] = exp(scores[i] - max_score); returns the sum.
float softmax_exp(float* scores, int64_t n, float max_score) {
  if (use_avx2()) return softmax_exp_avx2(scores, n, max_score);
  float sum = 0.0f;
  for (int64_t i = 0; i < n; ++i) sum += (scores[i] = std::exp(scores[i] - max_score));
  return sum;
}

void check_seq(const KvCache& cache, const AttentionSeq& s) {
  const int64_t bs = cache.shape().block_size;
  const int64_t needed = (s.num_past + s.num_new + bs - 1) / bs;
  FS_CHECK(static_cast<int64_t>(s.block_table.size()) >= needed,
           "block table holds {} blocks, {} positions need {}", s.block_table.size(),
           s.num_past + s.num_new, needed);
}

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
  const KvCacheShape& shape = cache.shape();
  const int64_t hd = shape.head_dim, bs = shape.block_size;
  const int64_t group = num_heads / shape.num_kv_heads;
  int64_t num_tokens = 0;
  for (const AttentionSeq& s : seqs) {
    check_seq(cache, s);
    num_tokens = std::max(num_tokens, s.token_begin + s.num_new);
  }
  pool.parallel_for(num_tokens * num_heads, 1, [&](int64_t begin, int64_t end) {
    thread_local std::vector<float> scores;
    thread_local std::vector<float> acc;
    acc.resize(hd);
    for (int64_t i = begin; i < end; ++i) {
      const int64_t t = i / num_heads, h = i % num_heads, g = h / group;
      const AttentionSeq& s = seq_of_token(seqs, t);
      const int64_t n_ctx = s.num_past + (t - s.token_begin) + 1;  // causal: up to and incl. t
      if (static_cast<int64_t>(scores.size()) < n_ctx) scores.resize(n_ctx);
      const float* qh = q + (t * num_heads + h) * hd;
      float max_score = -INFINITY;
      for (int64_t p = 0; p < n_ctx; ++p) {
        const float* kp = cache.row(s.block_table[p / bs], layer, 0, p % bs) + g * hd;
        scores[p] = dot(qh, kp, hd) * scale;
        max_score = std::max(max_score, scores[p]);
      }
      const float sum = softmax_exp(scores.data(), n_ctx, max_score);
      std::fill(acc.begin(), acc.end(), 0.0f);
      for (int64_t p = 0; p < n_ctx; ++p) {
        const float* vp = cache.row(s.block_table[p / bs], layer, 1, p % bs) + g * hd;
        axpy(scores[p], vp, acc.data(), hd);
      }
      float* o = out + (t * num_heads + h) * hd;
      const float inv = 1.0f / sum;
      for (int64_t d = 0; d < hd; ++d) o[d] = acc[d] * inv;
    }
  });
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
          for (int64_t i = 0; i < hd; ++i) d += static_cast<double>(q[(t * num_heads + h) * hd + i]) * kp[i];
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
