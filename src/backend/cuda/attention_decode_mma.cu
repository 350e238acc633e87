// Tensor-core paged decode attention (launch_attention_decode's default kernel for head_dim 64/128
// and GQA groups up to 16; kernels.h, docs/KERNELS.md "Decode attention on tensor cores").
//
// Block = (split, KV head, query token), W = 4 or 3 warps (decode_mma_warps). The query heads of
// the KV head's GQA group are the M rows of mma.sync m16n8k16 (bf16 in, f32 accumulate): rows
// [0, group) hold the heads, the rest are zero, so every K/V row of the split is read from memory
// once per (token, KV head) and serves the whole group. The split's keys go in tiles of 16 W keys
// through a kStages-deep cp.async ring in shared memory (16-byte copies, L2 only; rows past the
// split's end are zero-filled); in a tile, warp w takes keys [16 w, 16 w + 16): S = Q K^T (K's
// rows straight as B fragments), online softmax on the S fragments, P turned in registers into the
// A fragment of O += P V, and V's B fragments from ldmatrix.trans of the row-major V tile. The
// warps' states are merged through shared memory at the end; the split's partial (max, sum,
// unnormalized O; the format of the merge kernel in attention.cu) or, for a single split, the
// output is written.
#include <cfloat>

#include "backend/cuda/attention_decode_mma.h"
#include "backend/cuda/launch.cuh"

namespace fs::cuda {
namespace {

constexpr int kStages = 2;

// W warps per block; a ring stage holds kTileKeys = 16 W keys.
template <int HD, int W>
struct MmaDecodeSmem {
  static constexpr int kThreads = W * 32;
  static constexpr int kTileKeys = W * 16;
  static constexpr int kLd = HD + 8;  // bf16 row stride: 16-byte rows, conflict-free fragments
  static constexpr int kStageElems = 2 * kTileKeys * kLd;  // K tile, then V tile
  static constexpr size_t kRingBytes = sizeof(bf16) * kStages * kStageElems;
  // The merge area reuses the ring: [warps][16 rows][HD + 2] f32 (O, then m, l per row).
  static constexpr size_t kMergeBytes = sizeof(float) * W * 16 * (HD + 2);
  static constexpr size_t kBytes = kRingBytes > kMergeBytes ? kRingBytes : kMergeBytes;
};

__device__ __forceinline__ void mma_16816(float* c, const uint32_t* a, uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);  // .x (low half) = lo
  return *reinterpret_cast<const uint32_t*>(&v);
}

// 16 bytes global -> shared, bypassing L1; src_bytes 0 zero-fills the destination.
__device__ __forceinline__ void cp_async_16(void* dst, const void* src, int src_bytes) {
  const auto d = static_cast<uint32_t>(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(d), "l"(src), "r"(src_bytes)
               : "memory");
}
__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

// Four transposed 8x8 b16 matrices; lane l gives the row address of matrix l / 8.
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t* r, const void* row) {
  const auto a = static_cast<uint32_t>(__cvta_generic_to_shared(row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(a)
               : "memory");
}

// Issues the copies of keys [k0, k0 + kTileKeys) of KV head g into one ring stage (K rows, then V
// rows); keys at or past `end` are zero-filled. Consecutive threads copy consecutive 16-byte
// chunks of a row.
template <int HD, int W>
__device__ __forceinline__ void load_tile(bf16* stage, const bf16* cache, const KvLayout& kv,
                                          int32_t layer, const int32_t* table, int32_t g,
                                          int32_t k0, int32_t end, int tid) {
  using L = MmaDecodeSmem<HD, W>;
  constexpr int kThreads = L::kThreads, kTileKeys = L::kTileKeys;
  constexpr int kChunks = HD / 8;
  constexpr int kPer = kTileKeys * kChunks / kThreads;
  const int64_t row_elems = static_cast<int64_t>(kv.num_kv_heads) * HD;
  const int64_t kv_elems = kv.block_size * row_elems;  // K -> V of one layer in a block
#pragma unroll
  for (int u = 0; u < kPer; ++u) {
    const int i = u * kThreads + tid, r = i / kChunks, c = i % kChunks;
    const int32_t pos = k0 + r;
    const bool valid = pos < end;
    const bf16* k_src = cache;
    if (valid) {
      const int64_t block = __ldg(table + pos / kv.block_size);
      k_src = cache + ((block * kv.num_layers + layer) * 2) * kv_elems +
              (pos % kv.block_size) * row_elems + static_cast<int64_t>(g) * HD + c * 8;
    }
    bf16* dst = stage + r * L::kLd + c * 8;
    cp_async_16(dst, k_src, valid ? 16 : 0);
    cp_async_16(dst + kTileKeys * L::kLd, valid ? k_src + kv_elems : cache, valid ? 16 : 0);
  }
}

template <int HD, int W>
__global__ void __launch_bounds__(W * 32)
    attn_decode_mma_kernel(const bf16* q, const bf16* cache, KvLayout kv, int32_t layer,
                           const DecodeDesc* descs, const int32_t* block_tables, int32_t max_splits,
                           int32_t split_len, int32_t num_heads, float scale_log2, float* partials,
                           bf16* out) {
  using L = MmaDecodeSmem<HD, W>;
  constexpr int kThreads = L::kThreads, kTileKeys = L::kTileKeys, kWarps = W;
  pdl_wait();
  pdl_launch_dependents();
  const DecodeDesc d = descs[blockIdx.z];
  const int32_t split = blockIdx.x;
  if (split >= d.num_splits) return;
  const int32_t g = blockIdx.y;
  const int group = num_heads / kv.num_kv_heads;
  extern __shared__ __align__(16) unsigned char smem[];
  bf16* ring = reinterpret_cast<bf16*>(smem);  // [kStages][K, V][kTileKeys][kLd]

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int gid = lane / 4, tig = lane % 4;
  const int32_t* table = block_tables + d.table_offset;
  // The token's context in d.num_splits even pieces (multiples of 16 keys, at most split_len
  // each): num_splits = ceil(ctx / split_len) makes every piece non-empty and covers [0, ctx)
  // (docs/KERNELS.md), unlike fixed split_len pieces, whose last one may hold a few keys.
  const int32_t ctx = d.pos + 1;
  const int32_t piece = min(split_len, ((ctx + d.num_splits - 1) / d.num_splits + 15) & ~15);
  const int32_t s_begin = split * piece;
  const int32_t s_end = min(ctx, s_begin + piece);
  const int32_t num_tiles = (s_end - s_begin + kTileKeys - 1) / kTileKeys;
  const int64_t q_stride = static_cast<int64_t>(num_heads) * HD;
  if (num_tiles <= 0) {  // an empty piece (num_splits above the contract): a neutral partial
    for (int i = tid; i < group * (HD + 2); i += kThreads) {
      const int32_t head = g * group + i / (HD + 2);
      const int c = i % (HD + 2);
      partials[((static_cast<int64_t>(blockIdx.z) * num_heads + head) * max_splits + split) *
                   (HD + 2) +
               c] = c == HD ? -INFINITY : 0.0f;
    }
    return;
  }

#pragma unroll
  for (int st = 0; st < kStages - 1; ++st) {
    if (st < num_tiles) {
      load_tile<HD, W>(ring + st * L::kStageElems, cache, kv, layer, table, g,
                       s_begin + st * kTileKeys, s_end, tid);
    }
    cp_async_commit();
  }

  // Q of the group as A fragments (row r = query head g * group + r; zero rows from `group`).
  const int64_t q_base =
      static_cast<int64_t>(d.row) * q_stride + static_cast<int64_t>(g) * group * HD;
  const uint32_t* q0 =
      gid < group ? reinterpret_cast<const uint32_t*>(q + q_base + gid * HD) : nullptr;
  const uint32_t* q1 =
      gid + 8 < group ? reinterpret_cast<const uint32_t*>(q + q_base + (gid + 8) * HD) : nullptr;
  uint32_t qa[HD / 16][4];
#pragma unroll
  for (int kc = 0; kc < HD / 16; ++kc) {
    const int w = kc * 8 + tig;  // 32-bit word of dims kc*16 + 2 tig
    qa[kc][0] = q0 ? q0[w] : 0u;
    qa[kc][1] = q1 ? q1[w] : 0u;
    qa[kc][2] = q0 ? q0[w + 4] : 0u;
    qa[kc][3] = q1 ? q1[w + 4] : 0u;
  }
  float o[HD / 8][4];
#pragma unroll
  for (int nt = 0; nt < HD / 8; ++nt) o[nt][0] = o[nt][1] = o[nt][2] = o[nt][3] = 0.0f;
  float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f;

  for (int32_t t = 0; t < num_tiles; ++t) {
    cp_async_wait<kStages - 2>();  // this thread's copies of tile t have landed
    __syncthreads();               // everyone's have; and everyone is done with tile t - 1
    if (const int32_t next = t + kStages - 1; next < num_tiles) {
      load_tile<HD, W>(ring + (next % kStages) * L::kStageElems, cache, kv, layer, table, g,
                       s_begin + next * kTileKeys, s_end, tid);
    }
    cp_async_commit();
    const int32_t key0 = s_begin + t * kTileKeys + warp * 16;  // this warp's first key
    if (key0 >= s_end) continue;                               // warp-uniform
    const bf16* sk = ring + (t % kStages) * L::kStageElems + warp * 16 * L::kLd;
    const bf16* sv = sk + kTileKeys * L::kLd;

    // S = Q K^T: two fragments of 16 rows x 8 keys.
    float s[2][4];
#pragma unroll
    for (int nt = 0; nt < 2; ++nt) {
      s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.0f;
      const uint32_t* krow = reinterpret_cast<const uint32_t*>(sk + (nt * 8 + gid) * L::kLd);
#pragma unroll
      for (int kc = 0; kc < HD / 16; ++kc) {
        mma_16816(s[nt], qa[kc], krow[kc * 8 + tig], krow[kc * 8 + 4 + tig]);
      }
    }
    // Mask keys past the split, scale, online softmax per row (r0: elements 0, 1; r1: 2, 3).
    float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
    for (int nt = 0; nt < 2; ++nt) {
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const bool valid = key0 + nt * 8 + tig * 2 + e < s_end;
        s[nt][e] = valid ? s[nt][e] * scale_log2 : -INFINITY;
        s[nt][2 + e] = valid ? s[nt][2 + e] * scale_log2 : -INFINITY;
        mx0 = fmaxf(mx0, s[nt][e]);
        mx1 = fmaxf(mx1, s[nt][2 + e]);
      }
    }
#pragma unroll
    for (int off = 1; off <= 2; off <<= 1) {
      mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, off));
      mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, off));
    }
    const float mn0 = fmaxf(m0, mx0), mn1 = fmaxf(m1, mx1);  // finite: key0 < s_end
    const float alpha0 = exp2f(m0 - mn0), alpha1 = exp2f(m1 - mn1);
    float sum0 = 0.0f, sum1 = 0.0f;
#pragma unroll
    for (int nt = 0; nt < 2; ++nt) {
      s[nt][0] = exp2f(s[nt][0] - mn0);
      s[nt][1] = exp2f(s[nt][1] - mn0);
      s[nt][2] = exp2f(s[nt][2] - mn1);
      s[nt][3] = exp2f(s[nt][3] - mn1);
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
    // P's C fragments (16 rows x 16 keys) are the A fragment of O += P V.
    const uint32_t pa[4] = {pack_bf16x2(s[0][0], s[0][1]), pack_bf16x2(s[0][2], s[0][3]),
                            pack_bf16x2(s[1][0], s[1][1]), pack_bf16x2(s[1][2], s[1][3])};
    // ldmatrix.trans row address of this lane: key (lane & 15), dims + 8 for lanes 16..31.
    const bf16* vrow = sv + (lane & 15) * L::kLd + (lane >> 4) * 8;
#pragma unroll
    for (int np = 0; np < HD / 16; ++np) {
      uint32_t b[4];
      ldmatrix_x4_trans(b, vrow + np * 16);
      o[2 * np][0] *= alpha0;
      o[2 * np][1] *= alpha0;
      o[2 * np][2] *= alpha1;
      o[2 * np][3] *= alpha1;
      o[2 * np + 1][0] *= alpha0;
      o[2 * np + 1][1] *= alpha0;
      o[2 * np + 1][2] *= alpha1;
      o[2 * np + 1][3] *= alpha1;
      mma_16816(o[2 * np], pa, b[0], b[1]);
      mma_16816(o[2 * np + 1], pa, b[2], b[3]);
    }
  }
  cp_async_wait<0>();
  __syncthreads();  // the ring is free: reuse it for the merge

  // Warp states -> shared memory ([warp][row][HD + 2]: O, m, l), rows of real heads only.
  float* merge = reinterpret_cast<float*>(smem);
  const int r0 = gid, r1 = gid + 8;
  float* w0 = merge + (warp * 16 + r0) * (HD + 2);
  float* w1 = merge + (warp * 16 + r1) * (HD + 2);
#pragma unroll
  for (int nt = 0; nt < HD / 8; ++nt) {
    const int c = nt * 8 + tig * 2;
    if (r0 < group) *reinterpret_cast<float2*>(w0 + c) = make_float2(o[nt][0], o[nt][1]);
    if (r1 < group) *reinterpret_cast<float2*>(w1 + c) = make_float2(o[nt][2], o[nt][3]);
  }
  if (tig == 0) {
    if (r0 < group) {
      w0[HD] = m0;
      w0[HD + 1] = l0;
    }
    if (r1 < group) {
      w1[HD] = m1;
      w1[HD + 1] = l1;
    }
  }
  __syncthreads();
  for (int i = tid; i < group * HD; i += kThreads) {
    const int hq = i / HD, c = i % HD;
    float mm = -INFINITY;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) mm = fmaxf(mm, merge[(w * 16 + hq) * (HD + 2) + HD]);
    float acc = 0.0f, ll = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) {
      const float* st = merge + (w * 16 + hq) * (HD + 2);
      if (st[HD] == -INFINITY) continue;  // this warp saw no key of the split
      const float f = exp2f(st[HD] - mm);
      acc += st[c] * f;
      ll += st[HD + 1] * f;
    }
    const int32_t head = g * group + hq;
    if (d.num_splits == 1) {
      out[static_cast<int64_t>(d.row) * q_stride + static_cast<int64_t>(head) * HD + c] =
          __float2bfloat16(acc / ll);
    } else {
      float* part =
          partials +
          ((static_cast<int64_t>(blockIdx.z) * num_heads + head) * max_splits + split) * (HD + 2);
      part[c] = acc;
      if (c == 0) {
        part[HD] = mm;
        part[HD + 1] = ll;
      }
    }
  }
}

template <int HD, int W>
void launch_for(const bf16* q, const bf16* cache, KvLayout kv, int32_t layer,
                const DecodeDesc* descs, const int32_t* tables, int32_t num_tokens,
                int32_t max_splits, int32_t split_len, int32_t num_heads, float scale_log2,
                float* partials, bf16* out, cudaStream_t stream) {
  constexpr size_t bytes = MmaDecodeSmem<HD, W>::kBytes;
  static bool configured = false;  // the first launch (not thread-safe, like the others here)
  if (!configured && bytes > 48 * 1024) {
    cudaFuncSetAttribute(attn_decode_mma_kernel<HD, W>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                         static_cast<int>(bytes));
  }
  configured = true;
  const dim3 grid(static_cast<unsigned>(max_splits), static_cast<unsigned>(kv.num_kv_heads),
                  static_cast<unsigned>(num_tokens));
  launch_kernel(attn_decode_mma_kernel<HD, W>, grid, W * 32, bytes, stream, q, cache, kv, layer,
                descs, tables, max_splits, split_len, num_heads, scale_log2, partials, out);
}

int g_mma_warps = 0;  // 0: decode_mma_warps() decides

}  // namespace

bool decode_mma_supported(int32_t head_dim, int32_t group) {
  return (head_dim == 64 || head_dim == 128) && group >= 1 && group <= kMaxMmaDecodeGroup;
}

void set_decode_mma_warps(int warps) { g_mma_warps = warps; }

int decode_mma_warps(int32_t max_splits, int64_t num_blocks, int32_t num_sms) {
  if (g_mma_warps == 3 || g_mma_warps == 4) return g_mma_warps;
  // 3 warps (4 blocks per SM) only pay where many long blocks run in several waves: one split
  // per token and at least 3 waves of 4 blocks per SM (decode_attn_bench, H200, Llama-3-8B
  // shape: b256 single split 174 -> 164 us per layer; b1-b64, split or not, 4 warps are
  // 10-25% faster).
  return max_splits == 1 && num_blocks >= 12 * int64_t{num_sms} ? 3 : 4;
}

void launch_decode_mma(const bf16* q, const bf16* kv_cache, KvLayout kv, int32_t layer,
                       const DecodeDesc* descs, const int32_t* block_tables, int32_t num_tokens,
                       int32_t max_splits, int32_t split_len, int32_t num_heads, float scale_log2,
                       float* partials, bf16* out, cudaStream_t stream) {
  static const int32_t num_sms = [] {
    int device = 0, n = 0;
    cudaGetDevice(&device);
    cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, device);
    return n > 0 ? n : 132;
  }();
  const int64_t blocks = int64_t{max_splits} * kv.num_kv_heads * num_tokens;
  const bool three = decode_mma_warps(max_splits, blocks, num_sms) == 3;
  if (kv.head_dim == 64) {
    (three ? launch_for<64, 3> : launch_for<64, 4>)(q, kv_cache, kv, layer, descs, block_tables,
                                                    num_tokens, max_splits, split_len, num_heads,
                                                    scale_log2, partials, out, stream);
  } else {
    (three ? launch_for<128, 3> : launch_for<128, 4>)(q, kv_cache, kv, layer, descs, block_tables,
                                                      num_tokens, max_splits, split_len, num_heads,
                                                      scale_log2, partials, out, stream);
  }
}

}  // namespace fs::cuda
