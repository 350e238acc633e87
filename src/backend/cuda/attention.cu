// Paged causal attention over a ragged batch (kernels.h): a tensor-core prefill kernel over 64-row
// query tiles and a split-K decode kernel with a merge step. Both read K/V rows through the block
// tables of the KV layout [layers][K,V][block_size][kv_heads][head_dim] bf16.
#include <algorithm>
#include <cfloat>
#include <cmath>

#include "backend/cuda/attention_decode_mma.h"
#include "backend/cuda/kernels.h"
#include "backend/cuda/launch.cuh"

namespace fs::cuda {
namespace {

// Address of the K (kv = 0) or V (kv = 1) row of KV head g at position pos.
__device__ __forceinline__ const bf16* kv_row(const bf16* cache, const KvLayout& kv, int32_t layer,
                                              const int32_t* table, int32_t pos, int kv_idx,
                                              int32_t g) {
  const int64_t block = table[pos / kv.block_size];
  const int64_t slot = pos % kv.block_size;
  const int64_t row = static_cast<int64_t>(kv.num_kv_heads) * kv.head_dim;
  return cache + ((block * kv.num_layers + layer) * 2 + kv_idx) * kv.block_size * row + slot * row +
         static_cast<int64_t>(g) * kv.head_dim;
}

// ---------------------------------------------------------------------------------------------
// Prefill: block = (tile of 64 query rows, query head); 4 warps, warp w owns rows 16w .. 16w + 15.
// FlashAttention-2 style with the whole state in registers: per 64-key tile, S = Q K^T and
// O += P V on tensor cores (mma.sync m16n8k16 bf16, f32 accumulate; fragment layouts as in the PTX
// ISA), online softmax on the S fragments (row max/sum over the 4 lanes that share a row), P
// converted in registers to the A operand of P V. K is staged row-major and V transposed in shared
// memory so every B fragment is one 32-bit shared load.

constexpr int kBq = kPrefillTileRows, kBk = 64, kPrefillThreads = 128;

__device__ __forceinline__ void mma_bf16_16816(float* c, const uint32_t* a, uint32_t b0,
                                               uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);  // .x (low half) = lo
  return *reinterpret_cast<const uint32_t*>(&v);
}

template <int HD>
__global__ void __launch_bounds__(kPrefillThreads)
    attn_prefill_kernel(const bf16* q, const bf16* cache, KvLayout kv, int32_t layer,
                        const AttnSeqDesc* seqs, const int32_t* block_tables,
                        const PrefillTile* tiles, int32_t num_heads, float scale_log2, bf16* out) {
  pdl_wait();
  pdl_launch_dependents();
  constexpr int kLdk = HD + 8;     // bf16 row stride of K [key][dim]: 16-byte rows, conflict-free
  constexpr int kLdv = kBk + 8;    // bf16 row stride of V^T [dim][key]
  constexpr int kChunks = HD / 8;  // 16-byte chunks per K/V row
  constexpr int kPer = kBk * kChunks / kPrefillThreads;  // chunks each thread stages per tile
  __shared__ __align__(16) bf16 sk[kBk * kLdk];
  __shared__ __align__(16) bf16 svt[HD * kLdv];

  const PrefillTile tile = tiles[blockIdx.x];
  const AttnSeqDesc seq = seqs[tile.seq];
  const int32_t h = blockIdx.y;
  const int32_t g = h / (num_heads / kv.num_kv_heads);
  const int32_t nq = min(kBq, seq.num_new - tile.q_begin);
  const int32_t q_pos0 = seq.num_past + tile.q_begin;  // position of tile row 0
  const int32_t ctx_end = q_pos0 + nq;                 // keys [0, ctx_end)
  const int32_t* table = block_tables + seq.table_offset;
  const int64_t q_stride = static_cast<int64_t>(num_heads) * HD;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int gid = lane / 4, tig = lane % 4;
  const int r0 = warp * 16 + gid, r1 = r0 + 8;  // this thread's two tile rows
  const int32_t qpos0 = q_pos0 + r0, qpos1 = q_pos0 + r1;

  // Q as A fragments, straight from global memory (zero rows past nq).
  uint32_t qa[HD / 16][4];
  {
    const int64_t base = (seq.token_begin + tile.q_begin) * q_stride + static_cast<int64_t>(h) * HD;
    const uint32_t* q0 =
        r0 < nq ? reinterpret_cast<const uint32_t*>(q + base + r0 * q_stride) : nullptr;
    const uint32_t* q1 =
        r1 < nq ? reinterpret_cast<const uint32_t*>(q + base + r1 * q_stride) : nullptr;
#pragma unroll
    for (int kc = 0; kc < HD / 16; ++kc) {
      const int w = kc * 8 + tig;  // 32-bit word of dims kc*16 + 2 tig
      qa[kc][0] = q0 ? q0[w] : 0u;
      qa[kc][1] = q1 ? q1[w] : 0u;
      qa[kc][2] = q0 ? q0[w + 4] : 0u;
      qa[kc][3] = q1 ? q1[w + 4] : 0u;
    }
  }
  float o[HD / 8][4];
#pragma unroll
  for (int nt = 0; nt < HD / 8; ++nt) o[nt][0] = o[nt][1] = o[nt][2] = o[nt][3] = 0.0f;
  float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f;

  for (int32_t k0 = 0; k0 < ctx_end; k0 += kBk) {
    // Stage the tile: thread takes key rows (consecutive lanes: consecutive keys) and 16-byte
    // chunks; all loads are issued before the stores.
    uint4 kr[kPer], vr[kPer];
#pragma unroll
    for (int u = 0; u < kPer; ++u) {
      const int i = u * kPrefillThreads + tid, r = i % kBk, c = i / kBk;
      const int32_t pos = k0 + r;
      kr[u] = vr[u] = make_uint4(0, 0, 0, 0);
      if (pos < ctx_end) {
        kr[u] = *reinterpret_cast<const uint4*>(kv_row(cache, kv, layer, table, pos, 0, g) + c * 8);
        vr[u] = *reinterpret_cast<const uint4*>(kv_row(cache, kv, layer, table, pos, 1, g) + c * 8);
      }
    }
    __syncthreads();  // the previous tile's fragments are read
#pragma unroll
    for (int u = 0; u < kPer; ++u) {
      const int i = u * kPrefillThreads + tid, r = i % kBk, c = i / kBk;
      *reinterpret_cast<uint4*>(sk + r * kLdk + c * 8) = kr[u];
      const bf16* v8 = reinterpret_cast<const bf16*>(&vr[u]);
#pragma unroll
      for (int e = 0; e < 8; ++e) svt[(c * 8 + e) * kLdv + r] = v8[e];
    }
    __syncthreads();

    // S = Q K^T: 8 fragments of 16 rows x 8 keys.
    float s[kBk / 8][4];
#pragma unroll
    for (int nt = 0; nt < kBk / 8; ++nt) {
      s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.0f;
      const uint32_t* krow = reinterpret_cast<const uint32_t*>(sk + (nt * 8 + gid) * kLdk);
#pragma unroll
      for (int kc = 0; kc < HD / 16; ++kc) {
        mma_bf16_16816(s[nt], qa[kc], krow[kc * 8 + tig], krow[kc * 8 + 4 + tig]);
      }
    }
    // Causal mask, scale, online softmax per row (rows r0: elements 0,1; r1: elements 2,3).
    float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
    for (int nt = 0; nt < kBk / 8; ++nt) {
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int32_t key = k0 + nt * 8 + tig * 2 + e;
        s[nt][e] = (key <= qpos0 && key < ctx_end) ? s[nt][e] * scale_log2 : -INFINITY;
        s[nt][2 + e] = (key <= qpos1 && key < ctx_end) ? s[nt][2 + e] * scale_log2 : -INFINITY;
        mx0 = fmaxf(mx0, s[nt][e]);
        mx1 = fmaxf(mx1, s[nt][2 + e]);
      }
    }
#pragma unroll
    for (int off = 1; off <= 2; off <<= 1) {
      mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, off));
      mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, off));
    }
    const float mn0 = fmaxf(m0, mx0), mn1 = fmaxf(m1, mx1);
    const float mu0 = mn0 == -INFINITY ? 0.0f : mn0, mu1 = mn1 == -INFINITY ? 0.0f : mn1;
    const float alpha0 = exp2f(m0 - mu0), alpha1 = exp2f(m1 - mu1);
    float sum0 = 0.0f, sum1 = 0.0f;
#pragma unroll
    for (int nt = 0; nt < kBk / 8; ++nt) {
      s[nt][0] = exp2f(s[nt][0] - mu0);
      s[nt][1] = exp2f(s[nt][1] - mu0);
      s[nt][2] = exp2f(s[nt][2] - mu1);
      s[nt][3] = exp2f(s[nt][3] - mu1);
      sum0 += s[nt][0] + s[nt][1];
      sum1 += s[nt][2] + s[nt][3];
    }
#pragma unroll
    for (int off = 1; off <= 2; off <<= 1) {
      sum0 += __shfl_xor_sync(0xffffffffu, sum0, off);
      sum1 += __shfl_xor_sync(0xffffffffu, sum1, off);
    }
    l0 = l0 * alpha0 + sum0;
    l1 = l1 * alpha1 + sum1;
    m0 = mn0;
    m1 = mn1;
#pragma unroll
    for (int nt = 0; nt < HD / 8; ++nt) {
      o[nt][0] *= alpha0;
      o[nt][1] *= alpha0;
      o[nt][2] *= alpha1;
      o[nt][3] *= alpha1;
    }
    // O += P V: P's C fragments of keys 16kc .. 16kc + 15 are the A fragment of chunk kc.
#pragma unroll
    for (int kc = 0; kc < kBk / 16; ++kc) {
      const uint32_t pa[4] = {pack_bf16(s[2 * kc][0], s[2 * kc][1]),
                              pack_bf16(s[2 * kc][2], s[2 * kc][3]),
                              pack_bf16(s[2 * kc + 1][0], s[2 * kc + 1][1]),
                              pack_bf16(s[2 * kc + 1][2], s[2 * kc + 1][3])};
#pragma unroll
      for (int nt = 0; nt < HD / 8; ++nt) {
        const uint32_t* vrow = reinterpret_cast<const uint32_t*>(svt + (nt * 8 + gid) * kLdv);
        mma_bf16_16816(o[nt], pa, vrow[kc * 8 + tig], vrow[kc * 8 + 4 + tig]);
      }
    }
  }
  const float inv0 = l0 > 0.0f ? 1.0f / l0 : 0.0f, inv1 = l1 > 0.0f ? 1.0f / l1 : 0.0f;
  const int64_t base = (seq.token_begin + tile.q_begin) * q_stride + static_cast<int64_t>(h) * HD;
#pragma unroll
  for (int nt = 0; nt < HD / 8; ++nt) {
    const int d = nt * 8 + tig * 2;
    if (r0 < nq) {
      *reinterpret_cast<uint32_t*>(out + base + r0 * q_stride + d) =
          pack_bf16(o[nt][0] * inv0, o[nt][1] * inv0);
    }
    if (r1 < nq) {
      *reinterpret_cast<uint32_t*>(out + base + r1 * q_stride + d) =
          pack_bf16(o[nt][2] * inv1, o[nt][3] * inv1);
    }
  }
}

template <int HD>
void prefill_for(const bf16* q, const bf16* cache, KvLayout kv, int32_t layer,
                 const AttnSeqDesc* seqs, const int32_t* tables, const PrefillTile* tiles,
                 int32_t num_tiles, int32_t num_heads, float scale, bf16* out,
                 cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(num_tiles), static_cast<unsigned>(num_heads));
  launch_kernel(attn_prefill_kernel<HD>, grid, kPrefillThreads, 0, stream, q, cache, kv, layer,
                seqs, tables, tiles, num_heads, scale * 1.4426950408889634f, out);
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
  pdl_wait();
  pdl_launch_dependents();
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
  const bf16* qrow =
      q + static_cast<int64_t>(d.row) * q_stride + static_cast<int64_t>(g) * group * hd;
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
      float* part =
          partials +
          ((static_cast<int64_t>(blockIdx.z) * num_heads + head) * max_splits + split) * (hd + 2);
      part[c] = o;
      if (c == 0) {
        part[hd] = m;
        part[hd + 1] = l;
      }
    }
  }
}

// The decode kernel for head_dim 64/128 and GQA groups up to kFastMaxGroup: the same
// block/split/warp structure, with the state in registers. Per 32-key tile, lane k loads the whole
// K and V rows of key k (all 16-byte loads in flight at once), scores K against each query head of
// the group (q in shared memory, broadcast reads) and parks V in shared memory; for P V, lane l
// owns dims [l*DPL, l*DPL+DPL) and reads each key's V row there, so one V row serves the whole
// group.
constexpr int kFastMaxGroup = 8;

__device__ __forceinline__ float2 bf2(uint32_t w) {
  return __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&w));
}

template <int HD>
__global__ void __launch_bounds__(kDecodeThreads)
    attn_decode_fast_kernel(const bf16* q, const bf16* cache, KvLayout kv, int32_t layer,
                            const DecodeDesc* descs, const int32_t* block_tables,
                            int32_t max_splits, int32_t split_len, int32_t num_heads,
                            float scale_log2, float* partials, bf16* out) {
  pdl_wait();
  pdl_launch_dependents();
  constexpr int kDpl = HD / 32;
  constexpr int kChunks = HD / 8;  // 16-byte chunks per K row
  const DecodeDesc d = descs[blockIdx.z];
  const int32_t split = blockIdx.x;
  if (split >= d.num_splits) return;
  const int32_t g = blockIdx.y;
  const int group = num_heads / kv.num_kv_heads;
  extern __shared__ __align__(16) unsigned char smem[];
  constexpr int kLdv = HD + 8;  // bf16 row stride of the staged V tile (16-byte rows)
  float* sq = reinterpret_cast<float*>(smem);  // [group][HD]
  float* sstate = sq + group * HD;             // [warps][group][HD + 2]
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  // [warps][32 keys][kLdv] after the f32 arrays (16-byte aligned: their size is a multiple of 4).
  bf16* sv = reinterpret_cast<bf16*>(sstate + kDecodeWarps * group * (HD + 2)) + warp * 32 * kLdv;

  const int64_t q_stride = static_cast<int64_t>(num_heads) * HD;
  const bf16* qrow =
      q + static_cast<int64_t>(d.row) * q_stride + static_cast<int64_t>(g) * group * HD;
  for (int i = tid; i < group * HD; i += kDecodeThreads) {
    sq[i] = __bfloat162float(qrow[i]) * scale_log2;
  }
  __syncthreads();

  float acc[kFastMaxGroup][kDpl];
  float m[kFastMaxGroup], l[kFastMaxGroup];
#pragma unroll
  for (int h = 0; h < kFastMaxGroup; ++h) {
    m[h] = -INFINITY;
    l[h] = 0.0f;
#pragma unroll
    for (int j = 0; j < kDpl; ++j) acc[h][j] = 0.0f;
  }
  const int32_t* table = block_tables + d.table_offset;
  const int32_t ctx = d.pos + 1;
  const int32_t s_begin = split * split_len;
  const int32_t s_end = min(ctx, s_begin + split_len);
  for (int32_t k0 = s_begin + warp * 32; k0 < s_end; k0 += kDecodeWarps * 32) {
    const int32_t n = min(32, s_end - k0);
    const bool have = lane < n;
    const bf16* my_k = have ? kv_row(cache, kv, layer, table, k0 + lane, 0, g) : cache;
    const bf16* my_v = have ? kv_row(cache, kv, layer, table, k0 + lane, 1, g) : cache;
    // K and V rows of the tile: every load in flight before any is used.
    uint4 kr[kChunks], vr[kChunks];
#pragma unroll
    for (int u = 0; u < kChunks; ++u) {
      kr[u] = have ? reinterpret_cast<const uint4*>(my_k)[u] : make_uint4(0, 0, 0, 0);
      vr[u] = have ? reinterpret_cast<const uint4*>(my_v)[u] : make_uint4(0, 0, 0, 0);
    }
    __syncwarp();  // the previous tile's V reads are done
#pragma unroll
    for (int u = 0; u < kChunks; ++u) *reinterpret_cast<uint4*>(sv + lane * kLdv + u * 8) = vr[u];
    __syncwarp();
    float s[kFastMaxGroup];
#pragma unroll
    for (int h = 0; h < kFastMaxGroup; ++h) {
      s[h] = 0.0f;
      if (h >= group) continue;
      const float4* qh = reinterpret_cast<const float4*>(sq + h * HD);
#pragma unroll
      for (int u = 0; u < kChunks; ++u) {
        const float4 qa = qh[2 * u], qb = qh[2 * u + 1];
        const float2 k01 = bf2(kr[u].x), k23 = bf2(kr[u].y), k45 = bf2(kr[u].z), k67 = bf2(kr[u].w);
        s[h] = fmaf(qa.x, k01.x, s[h]);
        s[h] = fmaf(qa.y, k01.y, s[h]);
        s[h] = fmaf(qa.z, k23.x, s[h]);
        s[h] = fmaf(qa.w, k23.y, s[h]);
        s[h] = fmaf(qb.x, k45.x, s[h]);
        s[h] = fmaf(qb.y, k45.y, s[h]);
        s[h] = fmaf(qb.z, k67.x, s[h]);
        s[h] = fmaf(qb.w, k67.y, s[h]);
      }
    }
    float p[kFastMaxGroup];
#pragma unroll
    for (int h = 0; h < kFastMaxGroup; ++h) {
      p[h] = 0.0f;
      if (h >= group) continue;
      const float sv = have ? s[h] : -INFINITY;
      float mx = sv;
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
      const float m_new = fmaxf(m[h], mx);  // finite: the tile has a key
      p[h] = have ? exp2f(sv - m_new) : 0.0f;
      float sum = p[h];
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
      const float alpha = exp2f(m[h] - m_new);
      l[h] = l[h] * alpha + sum;
      m[h] = m_new;
#pragma unroll
      for (int j = 0; j < kDpl; ++j) acc[h][j] *= alpha;
    }
#pragma unroll 8
    for (int k = 0; k < n; ++k) {
      const bf16* vrow = sv + k * kLdv + lane * kDpl;
      float vf[kDpl];
      if constexpr (kDpl == 4) {
        const uint2 raw = *reinterpret_cast<const uint2*>(vrow);
        const float2 a = bf2(raw.x), b = bf2(raw.y);
        vf[0] = a.x;
        vf[1] = a.y;
        vf[2] = b.x;
        vf[3] = b.y;
      } else {
        const float2 a = bf2(*reinterpret_cast<const uint32_t*>(vrow));
        vf[0] = a.x;
        vf[1] = a.y;
      }
#pragma unroll
      for (int h = 0; h < kFastMaxGroup; ++h) {
        if (h >= group) continue;
        const float pk = __shfl_sync(0xffffffffu, p[h], k);
#pragma unroll
        for (int j = 0; j < kDpl; ++j) acc[h][j] = fmaf(pk, vf[j], acc[h][j]);
      }
    }
  }
  // Warp states to shared memory, then merge per (head, dim).
  float* ws = sstate + warp * group * (HD + 2);
#pragma unroll
  for (int h = 0; h < kFastMaxGroup; ++h) {
    if (h >= group) continue;
#pragma unroll
    for (int j = 0; j < kDpl; ++j) ws[h * (HD + 2) + lane * kDpl + j] = acc[h][j];
    if (lane == 0) {
      ws[h * (HD + 2) + HD] = m[h];
      ws[h * (HD + 2) + HD + 1] = l[h];
    }
  }
  __syncthreads();
  for (int i = tid; i < group * HD; i += kDecodeThreads) {
    const int hq = i / HD, c = i % HD;
    float mm = -INFINITY;
    for (int w = 0; w < kDecodeWarps; ++w) {
      mm = fmaxf(mm, sstate[(w * group + hq) * (HD + 2) + HD]);
    }
    float o = 0.0f, ll = 0.0f;
    for (int w = 0; w < kDecodeWarps; ++w) {
      const float* st = sstate + (w * group + hq) * (HD + 2);
      if (st[HD] == -INFINITY) continue;  // this warp saw no key
      const float f = exp2f(st[HD] - mm);
      o += st[c] * f;
      ll += st[HD + 1] * f;
    }
    const int32_t head = g * group + hq;
    if (d.num_splits == 1) {
      out[static_cast<int64_t>(d.row) * q_stride + static_cast<int64_t>(head) * HD + c] =
          __float2bfloat16(o / ll);
    } else {
      float* part =
          partials +
          ((static_cast<int64_t>(blockIdx.z) * num_heads + head) * max_splits + split) * (HD + 2);
      part[c] = o;
      if (c == 0) {
        part[HD] = mm;
        part[HD + 1] = ll;
      }
    }
  }
}

template <int HD>
void decode_fast_for(const bf16* q, const bf16* cache, KvLayout kv, int32_t layer,
                     const DecodeDesc* descs, const int32_t* tables, int32_t num_tokens,
                     int32_t max_splits, int32_t split_len, int32_t num_heads, float scale_log2,
                     float* partials, bf16* out, cudaStream_t stream) {
  const int group = num_heads / kv.num_kv_heads;
  const size_t bytes = sizeof(float) * (group * HD + kDecodeWarps * group * (HD + 2)) +
                       sizeof(bf16) * kDecodeWarps * 32 * (HD + 8);
  static size_t configured_bytes = 48 * 1024;
  if (bytes > configured_bytes) {
    cudaFuncSetAttribute(attn_decode_fast_kernel<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                         static_cast<int>(bytes));
    configured_bytes = bytes;
  }
  const dim3 grid(static_cast<unsigned>(max_splits), static_cast<unsigned>(kv.num_kv_heads),
                  static_cast<unsigned>(num_tokens));
  launch_kernel(attn_decode_fast_kernel<HD>, grid, kDecodeThreads, bytes, stream, q, cache, kv,
                layer, descs, tables, max_splits, split_len, num_heads, scale_log2, partials, out);
}

// Merges the splits of one (token, head): grid (num_tokens, num_heads).
__global__ void attn_merge_kernel(const DecodeDesc* descs, int32_t max_splits, int32_t num_heads,
                                  int32_t hd, const float* partials, bf16* out) {
  pdl_wait();
  pdl_launch_dependents();
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

namespace {
DecodeKernel g_decode_kernel = DecodeKernel::kAuto;
}  // namespace

void set_decode_kernel(DecodeKernel kernel) { g_decode_kernel = kernel; }
DecodeKernel decode_kernel() { return g_decode_kernel; }
void force_decode_reference(bool on) {
  g_decode_kernel = on ? DecodeKernel::kGeneric : DecodeKernel::kAuto;
}
bool decode_reference_forced() { return g_decode_kernel == DecodeKernel::kGeneric; }

DecodeKernel decode_kernel_for(int32_t head_dim, int32_t group) {
  switch (g_decode_kernel) {
    case DecodeKernel::kAuto:
    case DecodeKernel::kTensorCore:
      if (decode_mma_supported(head_dim, group)) return DecodeKernel::kTensorCore;
      [[fallthrough]];
    case DecodeKernel::kRegister:
      if ((head_dim == 64 || head_dim == 128) && group <= kFastMaxGroup) {
        return DecodeKernel::kRegister;
      }
      [[fallthrough]];
    case DecodeKernel::kGeneric:
      return DecodeKernel::kGeneric;
  }
  return DecodeKernel::kGeneric;
}

DecodeSplits plan_decode_splits(int64_t num_decode, int32_t num_kv_heads, int32_t head_dim,
                                int32_t group, int64_t ctx_bucket, int32_t num_sms) {
  const int64_t blocks_per_split = std::max<int64_t>(1, num_decode * num_kv_heads);
  int64_t split_len = 0;
  if (decode_kernel_for(head_dim, group) == DecodeKernel::kTensorCore) {
    // The tensor-core kernel cuts each context into ceil(ctx / split_len) even pieces. Pick the
    // fewest pieces per token k whose blocks fill the resident slots (3 blocks per SM) in waves
    // at least 85% full (b256 at Llama-3-8B: 2048 blocks, 5.2 waves, k = 1; b64: k = 2; b16:
    // k = 3), and size split_len so a context of 3/4 of the bucket (contexts lie in (bucket / 2,
    // bucket]) gives k pieces; pieces stay >= 128 keys (decode_attn_bench: shorter ones lose
    // to the merge at batch 1-64). Blocks of splits past a token's pieces exit at once, but
    // thousands of them still cost (b256: +10 us per layer with 2048 empty blocks).
    const double slots = 3.0 * num_sms;
    int64_t k = 1;
    for (; k < 64; ++k) {
      const double waves = static_cast<double>(k * blocks_per_split) / slots;
      if (waves / std::ceil(waves) >= 0.85) break;
    }
    // k = 1: one split of the whole bucket (a shorter split_len would only add empty blocks).
    const int64_t len = k == 1 ? ctx_bucket : (3 * ctx_bucket / 4 + k - 1) / k;
    split_len = std::max<int64_t>(128, (len + 31) / 32 * 32);
  } else {
    // Enough blocks to fill the GPU about twice, splits of >= 128 positions (4 warps x 32).
    const int64_t want_splits =
        std::max<int64_t>(1, (2 * int64_t{num_sms} + blocks_per_split - 1) / blocks_per_split);
    const int64_t len = (ctx_bucket + want_splits - 1) / want_splits;
    split_len = std::max<int64_t>(128, (len + 31) / 32 * 32);
  }
  split_len = std::min<int64_t>(split_len, std::max<int64_t>(128, ctx_bucket));
  return DecodeSplits{static_cast<int32_t>(split_len),
                      static_cast<int32_t>((ctx_bucket + split_len - 1) / split_len)};
}

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
  const float scale_log2 = scale * 1.4426950408889634f;
  const int group = num_heads / kv.num_kv_heads;
  const DecodeKernel kernel = decode_kernel_for(kv.head_dim, group);
  const bool fast = kernel == DecodeKernel::kRegister;
  if (kernel == DecodeKernel::kTensorCore) {
    launch_decode_mma(q, kv_cache, kv, layer, descs, block_tables, num_tokens, max_splits,
                      split_len, num_heads, scale_log2, partials, out, stream);
  } else if (fast && kv.head_dim == 64) {
    decode_fast_for<64>(q, kv_cache, kv, layer, descs, block_tables, num_tokens, max_splits,
                        split_len, num_heads, scale_log2, partials, out, stream);
  } else if (fast && kv.head_dim == 128) {
    decode_fast_for<128>(q, kv_cache, kv, layer, descs, block_tables, num_tokens, max_splits,
                         split_len, num_heads, scale_log2, partials, out, stream);
  } else {
    const DecodeSmemLayout lay{group, kv.head_dim, kv.head_dim + 2};
    const size_t bytes = lay.bytes();
    static size_t configured_bytes = 48 * 1024;
    if (bytes > configured_bytes) {
      cudaFuncSetAttribute(attn_decode_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                           static_cast<int>(bytes));
      configured_bytes = bytes;
    }
    const dim3 grid(static_cast<unsigned>(max_splits), static_cast<unsigned>(kv.num_kv_heads),
                    static_cast<unsigned>(num_tokens));
    launch_kernel(attn_decode_kernel, grid, kDecodeThreads, bytes, stream, q, kv_cache, kv, layer,
                  descs, block_tables, max_splits, split_len, num_heads, scale_log2, partials, out);
  }
  if (max_splits > 1) {
    const dim3 merge_grid(static_cast<unsigned>(num_tokens), static_cast<unsigned>(num_heads));
    const int merge_threads = kv.head_dim < 128 ? 64 : 128;
    launch_kernel(attn_merge_kernel, merge_grid, merge_threads, 0, stream, descs, max_splits,
                  num_heads, kv.head_dim, partials, out);
  }
}

}  // namespace fs::cuda
