// Flash-attention-2 forward, bf16 on tensor cores. One block of 4 warps per (query tile, head, batch row);
// each warp owns 32 query rows (or 16, the other variant) and keeps their output accumulator and softmax
// statistics in registers while the block streams 64-key tiles of K and V through shared memory
// (double-buffered cp.async).
// Only the key tiles a query of the tile can see are visited: from the smallest kv_start of the tile up to the
// causal limit of its last query. Tiles that cross the diagonal or a kv_start get an element mask; the others
// run unmasked. The longest query tiles (latest in the causal order) are launched first.
#include <climits>

#include "attention_flash.cuh"
#include "attention_mma.cuh"

namespace polyllama::cuda::attn {
namespace {

using bf16 = __nv_bfloat16;
using namespace mma;

constexpr int kWarps = 4, kThreads = 32 * kWarps, kBc = 64;
constexpr float kLog2e = 1.4426950408889634f;
// What the launcher uses; the benchmark times both. 32 is FlashAttention-2's own choice for these head dims
// (128 x 64 tiles, 4 warps) and fits 255 registers without spills on sm_90.
constexpr int kDefaultRowsPerWarp = 32;

// Each warp owns kMt 16-row m-tiles: kMt = 1 keeps Q's fragments in registers; kMt = 2 reads them from shared
// memory but reuses every K and V fragment for two m-tiles (half the shared-memory traffic per FLOP).
template <int kMt> __host__ __device__ constexpr int block_rows() { return 16 * kMt * kWarps; }
template <int D, int kMt> constexpr size_t fwd_smem() {
  return static_cast<size_t>(block_rows<kMt>() * D + 4 * kBc * D) * sizeof(bf16);
}

template <int D, int kMt>
__global__ void __launch_bounds__(kThreads, 2) flash_fwd_kernel(Geo g, const bf16* q, const bf16* k, const bf16* v,
                                                                bf16* out, float* lse) {
  constexpr int kBr = block_rows<kMt>();
  constexpr bool kQInRegs = kMt == 1;
  constexpr int kDt = D / 8;    // 8-column output tiles
  constexpr int kKd = D / 16;   // 16-deep k-steps over D
  constexpr int kNt = kBc / 8;  // 8-key score tiles
  // Fully unrolled, the two-tile variant preloads so many fragments that D = 128 spills; at one k-step at a time
  // it fits 255 registers on sm_90 (128 accumulators + 64 scores per thread; a few bytes spill on sm_80).
  // Which variant is faster is for the benchmark to say.
  constexpr int kUnrollS = kMt == 1 ? kKd : 1;
  extern __shared__ __align__(128) unsigned char smem[];
  const uint32_t sQ = smem_addr(smem);
  // Stage st of K at sK0 + st * kStage, of V at sV0 + st * kStage (arithmetic, not an array: no local memory).
  constexpr uint32_t kStage = kBc * D * 2;
  const uint32_t sK0 = sQ + kBr * D * 2, sV0 = sK0 + 2 * kStage;
  __shared__ int s_lo_min, s_lo_max;
  __shared__ int s_row_lo[kBr];  // first key of each row of the tile; INT_MAX past Tq (sees nothing)

  const int tid = static_cast<int>(threadIdx.x), warp = tid / 32, lane = tid % 32, gr = lane / 4, gc = lane % 4;
  // A 1-D grid, the longest query tiles (last in causal order) of every head and row first: the scheduler
  // then hands out work longest-first, and the short tiles fill the tail.
  const int64_t hb = blockIdx.x % (g.H * g.B), n_qt = gridDim.x / (g.H * g.B);
  const int64_t q0 = (n_qt - 1 - blockIdx.x / (g.H * g.B)) * kBr;
  const int64_t h = hb % g.H, b = hb / g.H, kvh = h / (g.H / g.KV);
  const int64_t rows = g.Tq - q0 < kBr ? g.Tq - q0 : kBr;
  const int wrow = warp * 16 * kMt;  // the warp's first row in the tile

  if (tid == 0) {
    s_lo_min = INT_MAX;
    s_lo_max = 0;
  }
  __syncthreads();
  for (int r = tid; r < kBr; r += kThreads) {
    const int lo = r < rows ? static_cast<int>(g.lo(b, q0 + r)) : INT_MAX;
    s_row_lo[r] = lo;
    if (r < rows) {
      atomicMin(&s_lo_min, lo);
      atomicMax(&s_lo_max, lo);
    }
  }
  __syncthreads();
  // Row r of the tile sees keys [s_row_lo[r], diag0 + r] (32-bit: the launcher checks Tk < 2^30).
  const int diag0 = static_cast<int>(g.hi(q0));
  const int lo_max = s_lo_max, hi_last = static_cast<int>(g.hi(q0 + rows - 1));
  const int n_first = s_lo_min / kBc * kBc, n_tiles = (hi_last - n_first) / kBc + 1;
  const bool partial = rows < kBr;

  const bf16* qg = q + g.qrow(b, 0, h);
  const bf16* kg = k + g.krow(b, 0, kvh);
  const bf16* vg = v + g.krow(b, 0, kvh);
  const int64_t ldq = g.H * D, ldk = g.KV * D;
  load_tile<kBr, D, kThreads>(sQ, qg, ldq, q0, g.Tq, tid);
  load_tile<kBc, D, kThreads>(sK0, kg, ldk, n_first, g.kv_len, tid);
  load_tile<kBc, D, kThreads>(sV0, vg, ldk, n_first, g.kv_len, tid);
  cp_async_commit();

  const float sl2 = g.scale * kLog2e;
  float o[kMt][kDt][4];
#pragma unroll
  for (int mt = 0; mt < kMt; ++mt)
#pragma unroll
    for (int i = 0; i < kDt; ++i) o[mt][i][0] = o[mt][i][1] = o[mt][i][2] = o[mt][i][3] = 0.f;
  float m[kMt][2], l[kMt][2];
#pragma unroll
  for (int mt = 0; mt < kMt; ++mt) m[mt][0] = m[mt][1] = -INFINITY, l[mt][0] = l[mt][1] = 0.f;
  uint32_t qf[kQInRegs ? kKd : 1][4];

  for (int it = 0; it < n_tiles; ++it) {
    const uint32_t cur = static_cast<uint32_t>(it & 1) * kStage, nxt = kStage - cur;
    const int n0 = n_first + it * kBc;
    cp_async_wait_all();
    __syncthreads();  // tile `it` landed for every thread; every warp is done with tile it - 1
    if (kQInRegs && it == 0) {
#pragma unroll
      for (int kk = 0; kk < kKd; ++kk) ldsm_x4(qf[kk], sQ + swz<D>(wrow + a_row(lane), 2 * kk + a_chunk(lane)));
    }
    if (it + 1 < n_tiles) {
      load_tile<kBc, D, kThreads>(sK0 + nxt, kg, ldk, n0 + kBc, g.kv_len, tid);
      load_tile<kBc, D, kThreads>(sV0 + nxt, vg, ldk, n0 + kBc, g.kv_len, tid);
      cp_async_commit();
    }

    // S = Q K^T for this warp's rows and the tile's 64 keys.
    float s[kMt][kNt][4];
#pragma unroll
    for (int mt = 0; mt < kMt; ++mt)
#pragma unroll
      for (int i = 0; i < kNt; ++i) s[mt][i][0] = s[mt][i][1] = s[mt][i][2] = s[mt][i][3] = 0.f;
#pragma unroll(kUnrollS)
    for (int kk = 0; kk < kKd; ++kk) {
      uint32_t qa[kMt][4];
      if constexpr (!kQInRegs) {
#pragma unroll
        for (int mt = 0; mt < kMt; ++mt)
          ldsm_x4(qa[mt], sQ + swz<D>(wrow + mt * 16 + a_row(lane), 2 * kk + a_chunk(lane)));
      } else {
#pragma unroll
        for (int e = 0; e < 4; ++e) qa[0][e] = qf[kk][e];
      }
#pragma unroll
      for (int np = 0; np < kNt / 2; ++np) {
        uint32_t bk[4];
        ldsm_x4(bk, sK0 + cur + swz<D>(np * 16 + bn_row(lane), 2 * kk + bn_chunk(lane)));
#pragma unroll
        for (int mt = 0; mt < kMt; ++mt) {
          mma16816(s[mt][2 * np], qa[mt], bk[0], bk[1]);
          mma16816(s[mt][2 * np + 1], qa[mt], bk[2], bk[3]);
        }
      }
    }
    if (n0 + kBc - 1 > diag0 || n0 < lo_max || partial) {
#pragma unroll
      for (int mt = 0; mt < kMt; ++mt)
#pragma unroll
        for (int nt = 0; nt < kNt; ++nt)
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const int key = n0 + nt * 8 + gc * 2 + (e & 1);
            const int r = wrow + mt * 16 + gr + 8 * (e >> 1);
            if (key < s_row_lo[r] || key > diag0 + r) s[mt][nt][e] = -INFINITY;
          }
    }

    // Online softmax; each row is spread over the 4 lanes of a quad.
#pragma unroll
    for (int mt = 0; mt < kMt; ++mt)
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        float mx = -INFINITY;
#pragma unroll
        for (int nt = 0; nt < kNt; ++nt) mx = fmaxf(mx, fmaxf(s[mt][nt][2 * i], s[mt][nt][2 * i + 1]));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        const float m_new = fmaxf(m[mt][i], mx);
        const float m_use = m_new == -INFINITY ? 0.f : m_new;  // a row that has seen no key yet stays at 0
        const float alpha = exp2f((m[mt][i] - m_use) * sl2);   // 0 while m = -inf
        const float shift = m_use * sl2;
        m[mt][i] = m_new;
        float sum = 0.f;
#pragma unroll
        for (int nt = 0; nt < kNt; ++nt) {
          s[mt][nt][2 * i] = exp2f(fmaf(s[mt][nt][2 * i], sl2, -shift));
          s[mt][nt][2 * i + 1] = exp2f(fmaf(s[mt][nt][2 * i + 1], sl2, -shift));
          sum += s[mt][nt][2 * i] + s[mt][nt][2 * i + 1];
        }
        l[mt][i] = l[mt][i] * alpha + sum;
#pragma unroll
        for (int dt = 0; dt < kDt; ++dt) {
          o[mt][dt][2 * i] *= alpha;
          o[mt][dt][2 * i + 1] *= alpha;
        }
      }

    // O += P V, P straight from the score registers.
#pragma unroll
    for (int kk = 0; kk < kBc / 16; ++kk) {
      uint32_t pa[kMt][4];
#pragma unroll
      for (int mt = 0; mt < kMt; ++mt) {
        pa[mt][0] = pack_bf16(s[mt][2 * kk][0], s[mt][2 * kk][1]);
        pa[mt][1] = pack_bf16(s[mt][2 * kk][2], s[mt][2 * kk][3]);
        pa[mt][2] = pack_bf16(s[mt][2 * kk + 1][0], s[mt][2 * kk + 1][1]);
        pa[mt][3] = pack_bf16(s[mt][2 * kk + 1][2], s[mt][2 * kk + 1][3]);
      }
#pragma unroll
      for (int dp = 0; dp < kDt / 2; ++dp) {
        uint32_t bv[4];
        ldsm_x4_t(bv, sV0 + cur + swz<D>(kk * 16 + bt_row(lane), 2 * dp + bt_chunk(lane)));
#pragma unroll
        for (int mt = 0; mt < kMt; ++mt) {
          mma16816(o[mt][2 * dp], pa[mt], bv[0], bv[1]);
          mma16816(o[mt][2 * dp + 1], pa[mt], bv[2], bv[3]);
        }
      }
    }
  }

#pragma unroll
  for (int mt = 0; mt < kMt; ++mt)
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      float li = l[mt][i];
      li += __shfl_xor_sync(0xffffffffu, li, 1);
      li += __shfl_xor_sync(0xffffffffu, li, 2);
      const int64_t t = q0 + wrow + mt * 16 + gr + 8 * i;
      if (t >= g.Tq) continue;
      const float inv = li > 0.f ? 1.f / li : 0.f;
      bf16* orow = out + g.qrow(b, t, h) + gc * 2;
#pragma unroll
      for (int dt = 0; dt < kDt; ++dt)
        *reinterpret_cast<uint32_t*>(orow + dt * 8) = pack_bf16(o[mt][dt][2 * i] * inv, o[mt][dt][2 * i + 1] * inv);
      if (gc == 0) lse[g.stat(b, h, t)] = m[mt][i] * g.scale + logf(li);
    }
}

template <int D, int kMt>
void launch_fwd(cudaStream_t stream, const Geo& g, const bf16* q, const bf16* k, const bf16* v, bf16* out, float* lse) {
  constexpr size_t smem = fwd_smem<D, kMt>();
  constexpr int kBr = block_rows<kMt>();
  PL_ATTN_CUDA_CHECK(cudaFuncSetAttribute(flash_fwd_kernel<D, kMt>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                          static_cast<int>(smem)));
  const int64_t blocks = (g.Tq + kBr - 1) / kBr * g.H * g.B;
  PL_CHECK(blocks < (int64_t{1} << 31), "flash attention grid too large");
  const dim3 grid(static_cast<unsigned>(blocks));
  flash_fwd_kernel<D, kMt><<<grid, kThreads, smem, stream>>>(g, q, k, v, out, lse);
  PL_ATTN_LAUNCH_CHECK(flash_fwd_kernel);
}

}  // namespace

bool flash_supports(int64_t D) { return D == 64 || D == 128; }

void flash_forward(cudaStream_t stream, const Geo& g, const bf16* q, const bf16* k, const bf16* v, bf16* out,
                   float* lse, int rows_per_warp) {
  PL_CHECK(g.D == 64 || g.D == 128, "flash_forward: head dim " + std::to_string(g.D) + " not instantiated");
  PL_CHECK(rows_per_warp == 0 || rows_per_warp == 16 || rows_per_warp == 32, "flash_forward: rows per warp");
  const bool wide = rows_per_warp == 0 ? kDefaultRowsPerWarp == 32 : rows_per_warp == 32;
  if (g.D == 64)
    wide ? launch_fwd<64, 2>(stream, g, q, k, v, out, lse) : launch_fwd<64, 1>(stream, g, q, k, v, out, lse);
  else
    wide ? launch_fwd<128, 2>(stream, g, q, k, v, out, lse) : launch_fwd<128, 1>(stream, g, q, k, v, out, lse);
}

}  // namespace polyllama::cuda::attn
