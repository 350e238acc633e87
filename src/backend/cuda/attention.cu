// Paged causal attention over a ragged batch (kernels.h): a tensor-core prefill kernel over 64-row
// query tiles and a split-K decode kernel with a merge step. Both read K/V rows through the block
// tables of the KV layout [layers][K,V][block_size][kv_heads][head_dim] bf16.
#include <cfloat>

#include <mma.h>

#include "backend/cuda/kernels.h"

namespace fs::cuda {
namespace {

namespace wmma = nvcuda::wmma;

// Address of the K (kv = 0) or V (kv = 1) row of KV head g at position pos.
__device__ __forceinline__ const bf16* kv_row(const bf16* cache, const KvLayout& kv, int32_t layer,
                                              const int32_t* table, int32_t pos, int kv_idx,
                                              int32_t g) {
  const int64_t block = table[pos / kv.block_size];
  const int64_t slot = pos % kv.block_size;
  const int64_t row = static_cast<int64_t>(kv.num_kv_heads) * kv.head_dim;
  return cache + ((block * kv.num_layers + layer) * 2 + kv_idx) * kv.block_size * row +
         slot * row + static_cast<int64_t>(g) * kv.head_dim;
}

// ---------------------------------------------------------------------------------------------
// Prefill: block = (tile of 64 query rows, query head); 4 warps, warp w owns rows 16w .. 16w + 15.
// Per 64-key tile: S = Q K^T (WMMA, f32), online softmax on S (f32, exp2), P in bf16,
// O = O * alpha + P V (WMMA with O kept in shared memory as the accumulator).

constexpr int kBq = kPrefillTileRows, kBk = 64, kPrefillThreads = 128;

template <int HD>
struct PrefillSmem {
  static constexpr int kLdh = HD + 8;    // bf16 row stride of Q, K, V (WMMA: multiple of 8)
  static constexpr int kLds = kBk + 4;   // f32 row stride of S
  static constexpr int kLdp = kBk + 8;   // bf16 row stride of P
  static constexpr int kLdo = HD + 4;    // f32 row stride of O
  static constexpr size_t q_off = 0;
  static constexpr size_t k_off = q_off + sizeof(bf16) * kBq * kLdh;
  static constexpr size_t v_off = k_off + sizeof(bf16) * kBk * kLdh;
  static constexpr size_t s_off = v_off + sizeof(bf16) * kBk * kLdh;
  static constexpr size_t p_off = s_off + sizeof(float) * kBq * kLds;
  static constexpr size_t o_off = p_off + sizeof(bf16) * kBq * kLdp;
  static constexpr size_t m_off = o_off + sizeof(float) * kBq * kLdo;
  static constexpr size_t l_off = m_off + sizeof(float) * kBq;
  static constexpr size_t bytes = l_off + sizeof(float) * kBq;
};

template <int HD>
__global__ void __launch_bounds__(kPrefillThreads)
    attn_prefill_kernel(const bf16* q, const bf16* cache, KvLayout kv, int32_t layer,
                        const AttnSeqDesc* seqs, const int32_t* block_tables,
                        const PrefillTile* tiles, int32_t num_heads, float scale_log2, bf16* out) {
  using S = PrefillSmem<HD>;
  extern __shared__ __align__(128) unsigned char smem[];
  bf16* sq = reinterpret_cast<bf16*>(smem + S::q_off);
  bf16* sk = reinterpret_cast<bf16*>(smem + S::k_off);
  bf16* sv = reinterpret_cast<bf16*>(smem + S::v_off);
  float* ss = reinterpret_cast<float*>(smem + S::s_off);
  bf16* sp = reinterpret_cast<bf16*>(smem + S::p_off);
  float* so = reinterpret_cast<float*>(smem + S::o_off);
  float* sm = reinterpret_cast<float*>(smem + S::m_off);
  float* sl = reinterpret_cast<float*>(smem + S::l_off);

  const PrefillTile tile = tiles[blockIdx.x];
  const AttnSeqDesc seq = seqs[tile.seq];
  const int32_t h = blockIdx.y;
  const int32_t g = h / (num_heads / kv.num_kv_heads);
  const int32_t nq = min(kBq, seq.num_new - tile.q_begin);
  const int32_t q_pos0 = seq.num_past + tile.q_begin;  // position of tile row 0
  const int32_t ctx_end = q_pos0 + nq;                  // keys [0, ctx_end)
  const int32_t* table = block_tables + seq.table_offset;
  const int64_t q_stride = static_cast<int64_t>(num_heads) * HD;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  constexpr int kVec = 8;  // bf16 per 16-byte load
  constexpr int kVecPerRow = HD / kVec;

  // Q tile (zero rows past nq), O = 0, m = -inf, l = 0.
  for (int i = tid; i < kBq * kVecPerRow; i += kPrefillThreads) {
    const int r = i / kVecPerRow, c = (i % kVecPerRow) * kVec;
    uint4 v = make_uint4(0, 0, 0, 0);
    if (r < nq) {
      v = *reinterpret_cast<const uint4*>(q + (seq.token_begin + tile.q_begin + r) * q_stride +
                                          static_cast<int64_t>(h) * HD + c);
    }
    *reinterpret_cast<uint4*>(sq + r * S::kLdh + c) = v;
  }
  for (int i = tid; i < kBq * HD; i += kPrefillThreads) so[(i / HD) * S::kLdo + i % HD] = 0.0f;
  for (int i = tid; i < kBq; i += kPrefillThreads) {
    sm[i] = -INFINITY;
    sl[i] = 0.0f;
  }

  for (int32_t k0 = 0; k0 < ctx_end; k0 += kBk) {
    __syncthreads();  // previous tile's K/V/P no longer read; Q/O init visible
    for (int i = tid; i < kBk * kVecPerRow; i += kPrefillThreads) {
      const int r = i / kVecPerRow, c = (i % kVecPerRow) * kVec;
      const int32_t pos = k0 + r;
      uint4 kvec = make_uint4(0, 0, 0, 0), vvec = make_uint4(0, 0, 0, 0);
      if (pos < ctx_end) {
        kvec = *reinterpret_cast<const uint4*>(kv_row(cache, kv, layer, table, pos, 0, g) + c);
        vvec = *reinterpret_cast<const uint4*>(kv_row(cache, kv, layer, table, pos, 1, g) + c);
      }
      *reinterpret_cast<uint4*>(sk + r * S::kLdh + c) = kvec;
      *reinterpret_cast<uint4*>(sv + r * S::kLdh + c) = vvec;
    }
    __syncthreads();

    // S[16w.., :] = Q[16w.., :] K^T
    for (int j = 0; j < kBk / 16; ++j) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
      wmma::fill_fragment(acc, 0.0f);
      for (int kk = 0; kk < HD / 16; ++kk) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> a;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major> b;
        wmma::load_matrix_sync(a, sq + warp * 16 * S::kLdh + kk * 16, S::kLdh);
        wmma::load_matrix_sync(b, sk + j * 16 * S::kLdh + kk * 16, S::kLdh);
        wmma::mma_sync(acc, a, b, acc);
      }
      wmma::store_matrix_sync(ss + warp * 16 * S::kLds + j * 16, acc, S::kLds, wmma::mem_row_major);
    }
    __syncwarp();

    // Online softmax: two lanes per row, 32 columns each.
    {
      const int r = warp * 16 + lane / 2, half = lane % 2;
      const int32_t qpos = q_pos0 + r;
      float* srow = ss + r * S::kLds + half * 32;
      float mx = -INFINITY;
      for (int c = 0; c < 32; ++c) {
        const int32_t kpos = k0 + half * 32 + c;
        const float v = (kpos <= qpos && kpos < ctx_end) ? srow[c] * scale_log2 : -INFINITY;
        srow[c] = v;
        mx = fmaxf(mx, v);
      }
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      const float m_old = sm[r];
      const float m_new = fmaxf(m_old, mx);
      const float m_use = m_new == -INFINITY ? 0.0f : m_new;  // fully masked row (past nq)
      const float alpha = exp2f(m_old - m_use);
      float sum = 0.0f;
      bf16* prow = sp + r * S::kLdp + half * 32;
      for (int c = 0; c < 32; ++c) {
        const float p = exp2f(srow[c] - m_use);
        sum += p;
        prow[c] = __float2bfloat16(p);
      }
      sum += __shfl_xor_sync(0xffffffffu, sum, 1);
      float* orow = so + r * S::kLdo + half * (HD / 2);
      for (int c = 0; c < HD / 2; ++c) orow[c] *= alpha;
      __syncwarp();
      if (half == 0) {
        sm[r] = m_new;
        sl[r] = sl[r] * alpha + sum;
      }
    }
    __syncwarp();

    // O[16w.., :] += P[16w.., :] V
    for (int j = 0; j < HD / 16; ++j) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
      float* optr = so + warp * 16 * S::kLdo + j * 16;
      wmma::load_matrix_sync(acc, optr, S::kLdo, wmma::mem_row_major);
      for (int kk = 0; kk < kBk / 16; ++kk) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> a;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major> b;
        wmma::load_matrix_sync(a, sp + warp * 16 * S::kLdp + kk * 16, S::kLdp);
        wmma::load_matrix_sync(b, sv + kk * 16 * S::kLdh + j * 16, S::kLdh);
        wmma::mma_sync(acc, a, b, acc);
      }
      wmma::store_matrix_sync(optr, acc, S::kLdo, wmma::mem_row_major);
    }
  }
  __syncthreads();
  for (int i = tid; i < kBq * HD; i += kPrefillThreads) {
    const int r = i / HD, c = i % HD;
    if (r >= nq) continue;
    const float l = sl[r];
    out[(seq.token_begin + tile.q_begin + r) * q_stride + static_cast<int64_t>(h) * HD + c] =
        __float2bfloat16(l > 0.0f ? so[r * S::kLdo + c] / l : 0.0f);
  }
}

template <int HD>
void prefill_for(const bf16* q, const bf16* cache, KvLayout kv, int32_t layer,
                 const AttnSeqDesc* seqs, const int32_t* tables, const PrefillTile* tiles,
                 int32_t num_tiles, int32_t num_heads, float scale, bf16* out,
                 cudaStream_t stream) {
  constexpr size_t bytes = PrefillSmem<HD>::bytes;
  static bool configured = false;  // the attribute is per function and device; set once
  if (!configured) {
    cudaFuncSetAttribute(attn_prefill_kernel<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                         static_cast<int>(bytes));
    configured = true;
  }
  const dim3 grid(static_cast<unsigned>(num_tiles), static_cast<unsigned>(num_heads));
  attn_prefill_kernel<HD><<<grid, kPrefillThreads, bytes, stream>>>(
      q, cache, kv, layer, seqs, tables, tiles, num_heads, scale * 1.4426950408889634f, out);
}

// ---------------------------------------------------------------------------------------------
// Decode: block = (split, KV head, query token); 4 warps. Each warp takes 32-key tiles of the split
// in turn: it stages K and V of the tile in its shared memory, each lane scores one key against
// each query head of the group (q in shared memory), the warp updates that head's online softmax
// and accumulates P V with lanes over head dims. Warps merge at the end; the split's partial (or,
// for a single split, the final output) is written.

constexpr int kDecodeWarps = 4, kDecodeThreads = kDecodeWarps * 32, kMaxHeadDim = 256;

struct DecodeSmemLayout {
  int group, hd, ldk;  // ldk: bf16 row stride of the staged K/V tiles (hd + 2: conflict-free)
  __host__ __device__ size_t q_floats() const { return static_cast<size_t>(group) * hd; }
  __host__ __device__ size_t acc_floats() const {  // per warp: [group][hd] + m, l per head
    return static_cast<size_t>(group) * (hd + 2);
  }
  __host__ __device__ size_t tile_elems() const { return static_cast<size_t>(32) * ldk; }
  __host__ __device__ size_t bytes() const {
    return sizeof(float) * (q_floats() + kDecodeWarps * acc_floats()) +
           sizeof(bf16) * kDecodeWarps * 2 * tile_elems();
  }
};

__global__ void __launch_bounds__(kDecodeThreads)
    attn_decode_kernel(const bf16* q, const bf16* cache, KvLayout kv, int32_t layer,
                       const DecodeDesc* descs, const int32_t* block_tables, int32_t max_splits,
                       int32_t split_len, int32_t num_heads, float scale_log2, float* partials,
                       bf16* out) {
  const DecodeDesc d = descs[blockIdx.z];
  const int32_t split = blockIdx.x;
  if (split >= d.num_splits) return;
  const int32_t g = blockIdx.y;
  const int hd = kv.head_dim;
  const int group = num_heads / kv.num_kv_heads;
  const DecodeSmemLayout lay{group, hd, hd + 2};
  extern __shared__ __align__(16) unsigned char smem[];
  float* sq = reinterpret_cast<float*>(smem);  // [group][hd], pre-scaled by scale * log2(e)
  float* sacc_all = sq + lay.q_floats();
  bf16* stile_all =
      reinterpret_cast<bf16*>(sacc_all + static_cast<size_t>(kDecodeWarps) * lay.acc_floats());
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  float* sacc = sacc_all + warp * lay.acc_floats();  // [group][hd], then m[group], l[group]
  float* sm = sacc + static_cast<size_t>(group) * hd;
  float* sl = sm + group;
  bf16* sk = stile_all + static_cast<size_t>(warp) * 2 * lay.tile_elems();
  bf16* sv = sk + lay.tile_elems();

  const int64_t q_stride = static_cast<int64_t>(num_heads) * hd;
  const bf16* qrow = q + static_cast<int64_t>(d.row) * q_stride + static_cast<int64_t>(g) * group * hd;
  for (int i = tid; i < group * hd; i += kDecodeThreads) {
    sq[i] = __bfloat162float(qrow[i]) * scale_log2;
  }
  for (int i = lane; i < group * hd; i += 32) sacc[i] = 0.0f;
  for (int i = lane; i < group; i += 32) {
    sm[i] = -INFINITY;
    sl[i] = 0.0f;
  }
  __syncthreads();

  const int32_t* table = block_tables + d.table_offset;
  const int32_t ctx = d.pos + 1;
  const int32_t s_begin = split * split_len;
  const int32_t s_end = min(ctx, s_begin + split_len);
  const int half_words = hd / 2;  // hd is even (rope)
  for (int32_t k0 = s_begin + warp * 32; k0 < s_end; k0 += kDecodeWarps * 32) {
    const int32_t n = min(32, s_end - k0);
    // Stage K and V rows [k0, k0 + n) as 32-bit words; a row is contiguous in its block.
    for (int i = lane; i < n * half_words; i += 32) {
      const int r = i / half_words, w = i % half_words;
      const uint32_t* krow =
          reinterpret_cast<const uint32_t*>(kv_row(cache, kv, layer, table, k0 + r, 0, g));
      const uint32_t* vrow =
          reinterpret_cast<const uint32_t*>(kv_row(cache, kv, layer, table, k0 + r, 1, g));
      reinterpret_cast<uint32_t*>(sk + r * lay.ldk)[w] = krow[w];
      reinterpret_cast<uint32_t*>(sv + r * lay.ldk)[w] = vrow[w];
    }
    __syncwarp();
    for (int hq = 0; hq < group; ++hq) {
      const float* qh = sq + hq * hd;
      float s = -INFINITY;
      if (lane < n) {
        const __nv_bfloat162* krow = reinterpret_cast<const __nv_bfloat162*>(sk + lane * lay.ldk);
        float acc = 0.0f;
        for (int w = 0; w < half_words; ++w) {
          const float2 kf = __bfloat1622float2(krow[w]);
          acc = fmaf(qh[2 * w], kf.x, acc);
          acc = fmaf(qh[2 * w + 1], kf.y, acc);
        }
        s = acc;
      }
      float mx = s;
      for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
      const float m_old = sm[hq];
      const float m_new = fmaxf(m_old, mx);  // finite: the tile has at least one key
      const float p = lane < n ? exp2f(s - m_new) : 0.0f;
      float sum = p;
      for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
      const float alpha = exp2f(m_old - m_new);
      float* acc = sacc + hq * hd;
      for (int c0 = 0; c0 < hd; c0 += 32) {
        const int c = c0 + lane;
        float o = c < hd ? acc[c] * alpha : 0.0f;
        for (int k = 0; k < n; ++k) {
          const float pk = __shfl_sync(0xffffffffu, p, k);
          if (c < hd) o = fmaf(pk, __bfloat162float(sv[k * lay.ldk + c]), o);
        }
        if (c < hd) acc[c] = o;
      }
      __syncwarp();
      if (lane == 0) {
        sm[hq] = m_new;
        sl[hq] = sl[hq] * alpha + sum;
      }
      __syncwarp();
    }
  }
  __syncthreads();

  // Merge the warps' states per (head, dim); write the split's partial or the final output.
  for (int i = tid; i < group * hd; i += kDecodeThreads) {
    const int hq = i / hd, c = i % hd;
    float m = -INFINITY;
    for (int w = 0; w < kDecodeWarps; ++w) {
      m = fmaxf(m, (sacc_all + w * lay.acc_floats() + static_cast<size_t>(group) * hd)[hq]);
    }
    float o = 0.0f, l = 0.0f;
    for (int w = 0; w < kDecodeWarps; ++w) {
      const float* wa = sacc_all + w * lay.acc_floats();
      const float wm = wa[static_cast<size_t>(group) * hd + hq];
      if (wm == -INFINITY) continue;  // this warp saw no key
      const float f = exp2f(wm - m);
      o += wa[hq * hd + c] * f;
      l += wa[static_cast<size_t>(group) * hd + group + hq] * f;
    }
    const int32_t head = g * group + hq;
    if (d.num_splits == 1) {
      out[static_cast<int64_t>(d.row) * q_stride + static_cast<int64_t>(head) * hd + c] =
          __float2bfloat16(o / l);
    } else {
      float* part = partials + ((static_cast<int64_t>(blockIdx.z) * num_heads + head) * max_splits +
                                split) * (hd + 2);
      part[c] = o;
      if (c == 0) {
        part[hd] = m;
        part[hd + 1] = l;
      }
    }
  }
}

// Merges the splits of one (token, head): grid (num_tokens, num_heads).
__global__ void attn_merge_kernel(const DecodeDesc* descs, int32_t max_splits, int32_t num_heads,
                                  int32_t hd, const float* partials, bf16* out) {
  const DecodeDesc d = descs[blockIdx.x];
  if (d.num_splits == 1) return;
  const int32_t head = blockIdx.y;
  const float* parts =
      partials + (static_cast<int64_t>(blockIdx.x) * num_heads + head) * max_splits * (hd + 2);
  float m = -INFINITY;
  for (int s = 0; s < d.num_splits; ++s) m = fmaxf(m, parts[s * (hd + 2) + hd]);
  for (int c = threadIdx.x; c < hd; c += blockDim.x) {
    float o = 0.0f, l = 0.0f;
    for (int s = 0; s < d.num_splits; ++s) {
      const float* p = parts + s * (hd + 2);
      const float f = exp2f(p[hd] - m);
      o += p[c] * f;
      l += p[hd + 1] * f;
    }
    out[static_cast<int64_t>(d.row) * num_heads * hd + static_cast<int64_t>(head) * hd + c] =
        __float2bfloat16(o / l);
  }
}

}  // namespace

bool prefill_head_dim_supported(int32_t head_dim) {
  return head_dim == 16 || head_dim == 32 || head_dim == 64 || head_dim == 128;
}

void launch_attention_prefill(const bf16* q, const bf16* kv_cache, KvLayout kv, int32_t layer,
                              const AttnSeqDesc* seqs, const int32_t* block_tables,
                              const PrefillTile* tiles, int32_t num_tiles, int32_t num_heads,
                              float scale, bf16* out, cudaStream_t stream) {
  if (num_tiles == 0) return;
  switch (kv.head_dim) {
    case 16:
      return prefill_for<16>(q, kv_cache, kv, layer, seqs, block_tables, tiles, num_tiles,
                             num_heads, scale, out, stream);
    case 32:
      return prefill_for<32>(q, kv_cache, kv, layer, seqs, block_tables, tiles, num_tiles,
                             num_heads, scale, out, stream);
    case 64:
      return prefill_for<64>(q, kv_cache, kv, layer, seqs, block_tables, tiles, num_tiles,
                             num_heads, scale, out, stream);
    case 128:
      return prefill_for<128>(q, kv_cache, kv, layer, seqs, block_tables, tiles, num_tiles,
                              num_heads, scale, out, stream);
    default:
      return;  // callers check prefill_head_dim_supported first
  }
}

void launch_attention_decode(const bf16* q, const bf16* kv_cache, KvLayout kv, int32_t layer,
                             const DecodeDesc* descs, const int32_t* block_tables,
                             int32_t num_tokens, int32_t max_splits, int32_t split_len,
                             int32_t num_heads, float scale, float* partials, bf16* out,
                             cudaStream_t stream) {
  if (num_tokens == 0 || kv.head_dim > kMaxHeadDim) return;
  const DecodeSmemLayout lay{num_heads / kv.num_kv_heads, kv.head_dim, kv.head_dim + 2};
  const size_t bytes = lay.bytes();
  static size_t configured_bytes = 48 * 1024;
  if (bytes > configured_bytes) {
    cudaFuncSetAttribute(attn_decode_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                         static_cast<int>(bytes));
    configured_bytes = bytes;
  }
  const dim3 grid(static_cast<unsigned>(max_splits), static_cast<unsigned>(kv.num_kv_heads),
                  static_cast<unsigned>(num_tokens));
  const float scale_log2 = scale * 1.4426950408889634f;
  attn_decode_kernel<<<grid, kDecodeThreads, bytes, stream>>>(
      q, kv_cache, kv, layer, descs, block_tables, max_splits, split_len, num_heads, scale_log2,
      partials, out);
  if (max_splits > 1) {
    attn_merge_kernel<<<dim3(static_cast<unsigned>(num_tokens), static_cast<unsigned>(num_heads)),
                        kv.head_dim < 128 ? 64 : 128, 0, stream>>>(descs, max_splits, num_heads,
                                                                    kv.head_dim, partials, out);
  }
}

}  // namespace fs::cuda
