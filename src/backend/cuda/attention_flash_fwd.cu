// Flash-attention-2 forward, bf16 on tensor cores. One block of 4 warps per (query tile of 64, head, batch
// row); each warp owns 16 query rows and keeps them, their output accumulator and their softmax statistics in
// registers while the block streams 64-key tiles of K and V through shared memory (double-buffered cp.async).
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

constexpr int kWarps = 4, kThreads = 32 * kWarps, kBr = 16 * kWarps, kBc = 64;
constexpr float kLog2e = 1.4426950408889634f;

template <int D> constexpr size_t fwd_smem() { return static_cast<size_t>(kBr * D + 4 * kBc * D) * sizeof(bf16); }

template <int D>
__global__ void __launch_bounds__(kThreads, 2) flash_fwd_kernel(Geo g, const bf16* q, const bf16* k, const bf16* v,
                                                                bf16* out, float* lse) {
  constexpr int kDt = D / 8;    // 8-column output tiles
  constexpr int kKd = D / 16;   // 16-deep k-steps over D
  constexpr int kNt = kBc / 8;  // 8-key score tiles
  extern __shared__ __align__(128) unsigned char smem[];
  const uint32_t sQ = smem_addr(smem);
  // Stage st of K at sK0 + st * kStage, of V at sV0 + st * kStage (arithmetic, not an array: no local memory).
  constexpr uint32_t kStage = kBc * D * 2;
  const uint32_t sK0 = sQ + kBr * D * 2, sV0 = sK0 + 2 * kStage;
  __shared__ int s_lo_min, s_lo_max;

  const int tid = static_cast<int>(threadIdx.x), warp = tid / 32, lane = tid % 32, gr = lane / 4, gc = lane % 4;
  const int64_t q0 = static_cast<int64_t>(gridDim.x - 1 - blockIdx.x) * kBr;  // heaviest tiles first
  const int64_t h = blockIdx.y, b = blockIdx.z, kvh = h / (g.H / g.KV);
  const int64_t rows = g.Tq - q0 < kBr ? g.Tq - q0 : kBr;

  if (tid == 0) {
    s_lo_min = INT_MAX;
    s_lo_max = 0;
  }
  __syncthreads();
  if (tid < rows) {
    const int lo = static_cast<int>(g.lo(b, q0 + tid));
    atomicMin(&s_lo_min, lo);
    atomicMax(&s_lo_max, lo);
  }
  // The two rows this thread holds: keys [row_lo, row_hi]; rows past Tq see nothing.
  int row_lo[2], row_hi[2];  // 32-bit positions: the launcher checks Tk < 2^31
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int64_t t = q0 + warp * 16 + gr + 8 * i;
    row_lo[i] = t < g.Tq ? static_cast<int>(g.lo(b, t)) : 0;
    row_hi[i] = t < g.Tq ? static_cast<int>(g.hi(t)) : -1;
  }
  __syncthreads();
  const int64_t lo_max = s_lo_max, hi_first = g.hi(q0), hi_last = g.hi(q0 + rows - 1);
  const int64_t n_first = s_lo_min / kBc * kBc;
  const int64_t n_tiles = (hi_last - n_first) / kBc + 1;

  const bf16* qg = q + g.qrow(b, 0, h);
  const bf16* kg = k + g.krow(b, 0, kvh);
  const bf16* vg = v + g.krow(b, 0, kvh);
  const int64_t ldq = g.H * D, ldk = g.KV * D;
  load_tile<kBr, D, kThreads>(sQ, qg, ldq, q0, g.Tq, tid);
  load_tile<kBc, D, kThreads>(sK0, kg, ldk, n_first, g.kv_len, tid);
  load_tile<kBc, D, kThreads>(sV0, vg, ldk, n_first, g.kv_len, tid);
  cp_async_commit();

  const float sl2 = g.scale * kLog2e;
  float o[kDt][4];
#pragma unroll
  for (int i = 0; i < kDt; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};
  uint32_t qf[kKd][4];

  for (int64_t it = 0; it < n_tiles; ++it) {
    const uint32_t cur = static_cast<uint32_t>(it & 1) * kStage, nxt = kStage - cur;
    const int64_t n0 = n_first + it * kBc;
    cp_async_wait_all();
    __syncthreads();  // tile `it` landed for every thread; every warp is done with tile it - 1
    if (it == 0) {
#pragma unroll
      for (int kk = 0; kk < kKd; ++kk) ldsm_x4(qf[kk], sQ + swz<D>(warp * 16 + a_row(lane), 2 * kk + a_chunk(lane)));
    }
    if (it + 1 < n_tiles) {
      load_tile<kBc, D, kThreads>(sK0 + nxt, kg, ldk, n0 + kBc, g.kv_len, tid);
      load_tile<kBc, D, kThreads>(sV0 + nxt, vg, ldk, n0 + kBc, g.kv_len, tid);
      cp_async_commit();
    }

    // S = Q K^T for this warp's 16 rows and the tile's 64 keys.
    float s[kNt][4];
#pragma unroll
    for (int i = 0; i < kNt; ++i) s[i][0] = s[i][1] = s[i][2] = s[i][3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < kKd; ++kk) {
#pragma unroll
      for (int np = 0; np < kNt / 2; ++np) {
        uint32_t bk[4];
        ldsm_x4(bk, sK0 + cur + swz<D>(np * 16 + bn_row(lane), 2 * kk + bn_chunk(lane)));
        mma16816(s[2 * np], qf[kk], bk[0], bk[1]);
        mma16816(s[2 * np + 1], qf[kk], bk[2], bk[3]);
      }
    }
    if (n0 + kBc - 1 > hi_first || n0 < lo_max || rows < kBr) {
#pragma unroll
      for (int nt = 0; nt < kNt; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int key = static_cast<int>(n0) + nt * 8 + gc * 2 + (e & 1);
          if (key < row_lo[e >> 1] || key > row_hi[e >> 1]) s[nt][e] = -INFINITY;
        }
    }

    // Online softmax; each row is spread over the 4 lanes of a quad.
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      float mx = -INFINITY;
#pragma unroll
      for (int nt = 0; nt < kNt; ++nt) mx = fmaxf(mx, fmaxf(s[nt][2 * i], s[nt][2 * i + 1]));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      const float m_new = fmaxf(m[i], mx);
      const float m_use = m_new == -INFINITY ? 0.f : m_new;  // a row that has seen no key yet stays at 0
      const float alpha = exp2f((m[i] - m_use) * sl2);       // 0 while m = -inf
      const float shift = m_use * sl2;
      m[i] = m_new;
      float sum = 0.f;
#pragma unroll
      for (int nt = 0; nt < kNt; ++nt) {
        s[nt][2 * i] = exp2f(fmaf(s[nt][2 * i], sl2, -shift));
        s[nt][2 * i + 1] = exp2f(fmaf(s[nt][2 * i + 1], sl2, -shift));
        sum += s[nt][2 * i] + s[nt][2 * i + 1];
      }
      l[i] = l[i] * alpha + sum;
#pragma unroll
      for (int dt = 0; dt < kDt; ++dt) {
        o[dt][2 * i] *= alpha;
        o[dt][2 * i + 1] *= alpha;
      }
    }

    // O += P V, P straight from the score registers.
#pragma unroll
    for (int kk = 0; kk < kBc / 16; ++kk) {
      uint32_t pa[4];
      pa[0] = pack_bf16(s[2 * kk][0], s[2 * kk][1]);
      pa[1] = pack_bf16(s[2 * kk][2], s[2 * kk][3]);
      pa[2] = pack_bf16(s[2 * kk + 1][0], s[2 * kk + 1][1]);
      pa[3] = pack_bf16(s[2 * kk + 1][2], s[2 * kk + 1][3]);
#pragma unroll
      for (int dp = 0; dp < kDt / 2; ++dp) {
        uint32_t bv[4];
        ldsm_x4_t(bv, sV0 + cur + swz<D>(kk * 16 + bt_row(lane), 2 * dp + bt_chunk(lane)));
        mma16816(o[2 * dp], pa, bv[0], bv[1]);
        mma16816(o[2 * dp + 1], pa, bv[2], bv[3]);
      }
    }
  }

#pragma unroll
  for (int i = 0; i < 2; ++i) {
    l[i] += __shfl_xor_sync(0xffffffffu, l[i], 1);
    l[i] += __shfl_xor_sync(0xffffffffu, l[i], 2);
    const int64_t t = q0 + warp * 16 + gr + 8 * i;
    if (t >= g.Tq) continue;
    const float inv = l[i] > 0.f ? 1.f / l[i] : 0.f;
    bf16* orow = out + g.qrow(b, t, h) + gc * 2;
#pragma unroll
    for (int dt = 0; dt < kDt; ++dt)
      *reinterpret_cast<uint32_t*>(orow + dt * 8) = pack_bf16(o[dt][2 * i] * inv, o[dt][2 * i + 1] * inv);
    if (gc == 0) lse[g.stat(b, h, t)] = m[i] * g.scale + logf(l[i]);
  }
}

template <int D>
void launch_fwd(cudaStream_t stream, const Geo& g, const bf16* q, const bf16* k, const bf16* v, bf16* out, float* lse) {
  constexpr size_t smem = fwd_smem<D>();
  PL_ATTN_CUDA_CHECK(
      cudaFuncSetAttribute(flash_fwd_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
  const int64_t tiles = (g.Tq + kBr - 1) / kBr;
  PL_CHECK(tiles < (int64_t{1} << 31) && g.H < 65536 && g.B < 65536, "flash attention grid too large");
  const dim3 grid(static_cast<unsigned>(tiles), static_cast<unsigned>(g.H), static_cast<unsigned>(g.B));
  flash_fwd_kernel<D><<<grid, kThreads, smem, stream>>>(g, q, k, v, out, lse);
  PL_ATTN_LAUNCH_CHECK(flash_fwd_kernel);
}

}  // namespace

bool flash_supports(int64_t D) { return D == 64 || D == 128; }

void flash_forward(cudaStream_t stream, const Geo& g, const bf16* q, const bf16* k, const bf16* v, bf16* out,
                   float* lse) {
  if (g.D == 64)
    launch_fwd<64>(stream, g, q, k, v, out, lse);
  else if (g.D == 128)
    launch_fwd<128>(stream, g, q, k, v, out, lse);
  else
    PL_CHECK(false, "flash_forward: head dim " + std::to_string(g.D) + " not instantiated");
}

}  // namespace polyllama::cuda::attn
