// Flash-attention-2 backward, bf16 on tensor cores.
//  1. delta[b, h, t] = dot(dout, out) per query row (attention_delta); the fp32 dq accumulator is zeroed.
//  2. One block of 4 warps per (64-key tile, kv head, batch row), first key tiles first. Each warp owns 16 keys and keeps their dk and
//     dv in fp32 registers while the block streams 32-query tiles of q and dout (double-buffered cp.async)
//     for every query head of the group (GQA: the group's dk, dv are summed here, no atomics). Per tile, in
//     the transposed orientation so the key rows stay with their warp:
//       S^T = K Q^T,  P^T = exp(S^T scale - lse),  dP^T = V dO^T,  dS^T = P^T (dP^T - delta)
//       dV += P^T dO,  dK += dS^T Q,  dQ += dS K (dS^T through shared memory, fp32 atomics into the workspace).
//     Query tiles before the causal diagonal and tiles whose every query starts (kv_start) past the key tile
//     are skipped.
//  3. dq = bf16(scale * accumulator).
// Only dq's summation order depends on scheduling (atomics); dk and dv are deterministic.
#include <climits>

#include "attention_flash.cuh"
#include "attention_mma.cuh"
#include "attention_simple.cuh"

namespace polyllama::cuda::attn {
namespace {

using bf16 = __nv_bfloat16;
using namespace mma;

constexpr int kWarps = 4, kThreads = 32 * kWarps, kBc = 16 * kWarps, kBr = 32;
constexpr int kDsLd = kBr + 8;  // padded dS^T row (bf16): 80 bytes, so ldmatrix rows hit distinct banks
constexpr float kLog2e = 1.4426950408889634f;

template <int D> struct BwdSmem {
  static constexpr uint32_t kK = 0, kV = kK + kBc * D * 2, kQ = kV + kBc * D * 2, kQStage = kBr * D * 2,
                            kO = kQ + 2 * kQStage, kDs = kO + 2 * kQStage, kLse = kDs + kBc * kDsLd * 2,
                            kDelta = kLse + 2 * kBr * 4, kLo = kDelta + 2 * kBr * 4, kBytes = kLo + 2 * kBr * 4;
};

__device__ __forceinline__ void add2(float* p, float x, float y) {
#if __CUDA_ARCH__ >= 900
  atomicAdd(reinterpret_cast<float2*>(p), make_float2(x, y));
#else
  atomicAdd(p, x);
  atomicAdd(p + 1, y);
#endif
}

template <int D>
__global__ void __launch_bounds__(kThreads, 2) flash_bwd_kernel(Geo g, const bf16* q, const bf16* k, const bf16* v,
                                                                const float* lse, const float* delta,
                                                                const bf16* dout, bf16* dk, bf16* dv, float* dq_acc) {
  using L = BwdSmem<D>;
  constexpr int kDt = D / 8, kKd = D / 16;
  extern __shared__ __align__(128) unsigned char smem[];
  const uint32_t s0 = smem_addr(smem);
  const uint32_t sK = s0 + L::kK, sV = s0 + L::kV, sQ0 = s0 + L::kQ, sO0 = s0 + L::kO, sDs = s0 + L::kDs;
  bf16* ds_tile = reinterpret_cast<bf16*>(smem + L::kDs);
  float* s_lse = reinterpret_cast<float*>(smem + L::kLse);      // [2][kBr], lse * log2(e)
  float* s_delta = reinterpret_cast<float*>(smem + L::kDelta);  // [2][kBr]
  int* s_lo = reinterpret_cast<int*>(smem + L::kLo);            // [2][kBr], INT_MAX past Tq

  const int tid = static_cast<int>(threadIdx.x), warp = tid / 32, lane = tid % 32, gr = lane / 4, gc = lane % 4;
  // A 1-D grid, the first key tiles (seen by the most queries) of every kv head and row first: longest-first.
  const unsigned kvb = static_cast<unsigned>(g.KV * g.B), kb = blockIdx.x % kvb;
  const int64_t n0 = static_cast<int64_t>(blockIdx.x / kvb) * kBc, kvh = kb % static_cast<unsigned>(g.KV),
                b = kb / static_cast<unsigned>(g.KV);
  const int64_t rep = g.H / g.KV;
  const int64_t ldq = g.H * D, ldk = g.KV * D;

  if (n0 >= g.kv_len) {  // keys no query sees: zero gradients by contract
    const int64_t rows = g.Tk - n0 < kBc ? g.Tk - n0 : kBc;
    for (int64_t i = tid; i < rows * (D / 8); i += kThreads) {
      const int64_t off = g.krow(b, n0 + i / (D / 8), kvh) + (i % (D / 8)) * 8;
      *reinterpret_cast<uint4*>(dk + off) = make_uint4(0, 0, 0, 0);
      *reinterpret_cast<uint4*>(dv + off) = make_uint4(0, 0, 0, 0);
    }
    return;
  }

  load_tile<kBc, D, kThreads>(sK, k + g.krow(b, 0, kvh), ldk, n0, g.kv_len, tid);
  load_tile<kBc, D, kThreads>(sV, v + g.krow(b, 0, kvh), ldk, n0, g.kv_len, tid);

  // Query tiles: for each head of the group, those from the one holding the first query that reaches key n0.
  const int64_t t_begin = n0 - (g.kv_len - g.Tq) > 0 ? n0 - (g.kv_len - g.Tq) : 0;
  const int64_t qt_begin = t_begin / kBr, n_qt = (g.Tq + kBr - 1) / kBr - qt_begin, total = rep * n_qt;
  const int64_t n_last = n0 + kBc - 1;
  auto tile_t0 = [&](int64_t idx) { return (qt_begin + idx % n_qt) * kBr; };
  auto tile_h = [&](int64_t idx) { return kvh * rep + idx / n_qt; };
  // The first tile from idx on with a query whose keys start at or before this key tile (block-uniform).
  auto next_active = [&](int64_t idx) {
    for (; idx < total; ++idx) {
      const int64_t t = tile_t0(idx) + tid;
      if (__syncthreads_or(tid < kBr && t < g.Tq && g.lo(b, t) <= n_last)) break;
    }
    return idx;
  };
  auto prefetch = [&](int64_t idx, int stage) {
    const int64_t t0 = tile_t0(idx), h = tile_h(idx);
    load_tile<kBr, D, kThreads>(sQ0 + stage * L::kQStage, q + g.qrow(b, 0, h), ldq, t0, g.Tq, tid);
    load_tile<kBr, D, kThreads>(sO0 + stage * L::kQStage, dout + g.qrow(b, 0, h), ldq, t0, g.Tq, tid);
    if (tid < kBr) {
      const int64_t t = t0 + tid;
      const bool ok = t < g.Tq;
      s_lse[stage * kBr + tid] = ok ? lse[g.stat(b, h, t)] * kLog2e : 0.f;
      s_delta[stage * kBr + tid] = ok ? delta[g.stat(b, h, t)] : 0.f;
      s_lo[stage * kBr + tid] = ok ? static_cast<int>(g.lo(b, t)) : INT_MAX;
    }
  };

  float dka[kDt][4], dva[kDt][4];
#pragma unroll
  for (int i = 0; i < kDt; ++i)
#pragma unroll
    for (int e = 0; e < 4; ++e) dka[i][e] = dva[i][e] = 0.f;

  const float sl2 = g.scale * kLog2e;
  const int key_row = warp * 16 + gr;  // this thread's key rows in the tile: key_row, key_row + 8
  const int64_t causal_off = g.kv_len - g.Tq;
  int64_t idx = next_active(0);
  if (idx < total) prefetch(idx, 0);
  cp_async_commit();
  int stage = 0;
  while (idx < total) {
    cp_async_wait_all();
    __syncthreads();  // tile idx (and K, V) landed; every warp is done with the previous tile and dS^T
    const int64_t nidx = next_active(idx + 1);
    if (nidx < total) {
      prefetch(nidx, stage ^ 1);
      cp_async_commit();
    }
    const int64_t t0 = tile_t0(idx), h = tile_h(idx);
    const uint32_t sQ = sQ0 + stage * L::kQStage, sO = sO0 + stage * L::kQStage;
    const float* lse_t = s_lse + stage * kBr;
    const float* delta_t = s_delta + stage * kBr;
    const int* lo_t = s_lo + stage * kBr;
    // 32-bit positions (the launcher checks Tk < 2^31): query t0 + qi sees keys up to diag + qi.
    const int key0 = static_cast<int>(n0) + key_row, diag = static_cast<int>(causal_off + t0);

    // S^T = K Q^T and dP^T = V dO^T: this warp's 16 keys x the tile's 32 queries.
    float s[4][4], dp[4][4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int e = 0; e < 4; ++e) s[i][e] = dp[i][e] = 0.f;
#pragma unroll 2  // fully unrolled, the preloaded fragments push D = 128 past 255 registers
    for (int kk = 0; kk < kKd; ++kk) {
      uint32_t ka[4], va[4];
      ldsm_x4(ka, sK + swz<D>(warp * 16 + a_row(lane), 2 * kk + a_chunk(lane)));
      ldsm_x4(va, sV + swz<D>(warp * 16 + a_row(lane), 2 * kk + a_chunk(lane)));
#pragma unroll
      for (int np = 0; np < 2; ++np) {
        uint32_t bq[4], bo[4];
        ldsm_x4(bq, sQ + swz<D>(np * 16 + bn_row(lane), 2 * kk + bn_chunk(lane)));
        ldsm_x4(bo, sO + swz<D>(np * 16 + bn_row(lane), 2 * kk + bn_chunk(lane)));
        mma16816(s[2 * np], ka, bq[0], bq[1]);
        mma16816(s[2 * np + 1], ka, bq[2], bq[3]);
        mma16816(dp[2 * np], va, bo[0], bo[1]);
        mma16816(dp[2 * np + 1], va, bo[2], bo[3]);
      }
    }
    // P^T and dS^T (unscaled: dS = P (dP - delta); the softmax scale is applied to dk and dq at the end).
#pragma unroll
    for (int nt = 0; nt < 4; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int qi = nt * 8 + gc * 2 + (e & 1);
        const int key = key0 + 8 * (e >> 1);
        const bool ok = lo_t[qi] <= key && key <= diag + qi;
        const float p = ok ? exp2f(fmaf(s[nt][e], sl2, -lse_t[qi])) : 0.f;
        s[nt][e] = p;
        dp[nt][e] = p * (dp[nt][e] - delta_t[qi]);
      }
    // dS^T to shared memory for dQ (the other orientation needs every warp's keys).
#pragma unroll
    for (int nt = 0; nt < 4; ++nt) {
      *reinterpret_cast<uint32_t*>(ds_tile + key_row * kDsLd + nt * 8 + gc * 2) = pack_bf16(dp[nt][0], dp[nt][1]);
      *reinterpret_cast<uint32_t*>(ds_tile + (key_row + 8) * kDsLd + nt * 8 + gc * 2) =
          pack_bf16(dp[nt][2], dp[nt][3]);
    }
    // dV += P^T dO and dK += dS^T Q, contracting over the 32 queries in two 16-deep steps.
#pragma unroll
    for (int ks = 0; ks < 2; ++ks) {
      uint32_t pa[4], da[4];
      pa[0] = pack_bf16(s[2 * ks][0], s[2 * ks][1]);
      pa[1] = pack_bf16(s[2 * ks][2], s[2 * ks][3]);
      pa[2] = pack_bf16(s[2 * ks + 1][0], s[2 * ks + 1][1]);
      pa[3] = pack_bf16(s[2 * ks + 1][2], s[2 * ks + 1][3]);
      da[0] = pack_bf16(dp[2 * ks][0], dp[2 * ks][1]);
      da[1] = pack_bf16(dp[2 * ks][2], dp[2 * ks][3]);
      da[2] = pack_bf16(dp[2 * ks + 1][0], dp[2 * ks + 1][1]);
      da[3] = pack_bf16(dp[2 * ks + 1][2], dp[2 * ks + 1][3]);
#pragma unroll
      for (int dq2 = 0; dq2 < kDt / 2; ++dq2) {
        uint32_t bo[4], bq[4];
        ldsm_x4_t(bo, sO + swz<D>(ks * 16 + bt_row(lane), 2 * dq2 + bt_chunk(lane)));
        ldsm_x4_t(bq, sQ + swz<D>(ks * 16 + bt_row(lane), 2 * dq2 + bt_chunk(lane)));
        mma16816(dva[2 * dq2], pa, bo[0], bo[1]);
        mma16816(dva[2 * dq2 + 1], pa, bo[2], bo[3]);
        mma16816(dka[2 * dq2], da, bq[0], bq[1]);
        mma16816(dka[2 * dq2 + 1], da, bq[2], bq[3]);
      }
    }
    __syncthreads();  // dS^T complete

    // dQ (32 x D) += dS K: warp takes query rows mq..mq+15 and columns [dh, dh + D/2).
    {
      const int mq = (warp & 1) * 16, dh = (warp >> 1) * (D / 2);
      float acc[kDt / 2][4];
#pragma unroll
      for (int i = 0; i < kDt / 2; ++i) acc[i][0] = acc[i][1] = acc[i][2] = acc[i][3] = 0.f;
#pragma unroll
      for (int ks = 0; ks < kBc / 16; ++ks) {
        uint32_t a[4];
        ldsm_x4_t(a, sDs + static_cast<uint32_t>(((ks * 16 + bn_row(lane)) * kDsLd + mq + 8 * bn_chunk(lane)) * 2));
#pragma unroll
        for (int dq2 = 0; dq2 < kDt / 4; ++dq2) {
          uint32_t bk[4];
          ldsm_x4_t(bk, sK + swz<D>(ks * 16 + bt_row(lane), dh / 8 + 2 * dq2 + bt_chunk(lane)));
          mma16816(acc[2 * dq2], a, bk[0], bk[1]);
          mma16816(acc[2 * dq2 + 1], a, bk[2], bk[3]);
        }
      }
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        const int64_t t = t0 + mq + gr + 8 * i;
        if (t >= g.Tq) continue;
        float* row = dq_acc + g.qrow(b, t, h) + dh + gc * 2;
#pragma unroll
        for (int dt = 0; dt < kDt / 2; ++dt) add2(row + dt * 8, acc[dt][2 * i], acc[dt][2 * i + 1]);
      }
    }
    idx = nidx;
    stage ^= 1;
  }
  cp_async_wait_all();  // nothing may still be landing in shared memory when the block exits

#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int64_t key = n0 + key_row + 8 * i;
    if (key >= g.Tk) continue;
    const int64_t off = g.krow(b, key, kvh) + gc * 2;
#pragma unroll
    for (int dt = 0; dt < kDt; ++dt) {
      *reinterpret_cast<uint32_t*>(dk + off + dt * 8) =
          pack_bf16(dka[dt][2 * i] * g.scale, dka[dt][2 * i + 1] * g.scale);
      *reinterpret_cast<uint32_t*>(dv + off + dt * 8) = pack_bf16(dva[dt][2 * i], dva[dt][2 * i + 1]);
    }
  }
}

__global__ void dq_convert_kernel(const float* acc, bf16* dq, int64_t n, float scale) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    dq[i] = __float2bfloat16(acc[i] * scale);
}

template <int D>
void launch_bwd(cudaStream_t stream, const Geo& g, const bf16* q, const bf16* k, const bf16* v, const float* lse,
                const float* delta, const bf16* dout, bf16* dk, bf16* dv, float* dq_acc) {
  constexpr size_t smem = BwdSmem<D>::kBytes;
  PL_ATTN_CUDA_CHECK(
      cudaFuncSetAttribute(flash_bwd_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
  const int64_t blocks = (g.Tk + kBc - 1) / kBc * g.KV * g.B;
  PL_CHECK(blocks < (int64_t{1} << 31), "flash attention grid too large");
  const dim3 grid(static_cast<unsigned>(blocks));
  flash_bwd_kernel<D><<<grid, kThreads, smem, stream>>>(g, q, k, v, lse, delta, dout, dk, dv, dq_acc);
  PL_ATTN_LAUNCH_CHECK(flash_bwd_kernel);
}

}  // namespace

void flash_backward(cudaStream_t stream, const Geo& g, const bf16* q, const bf16* k, const bf16* v, const bf16* out,
                    const float* lse, const bf16* dout, bf16* dq, bf16* dk, bf16* dv, float* delta, float* dq_acc) {
  PL_CHECK(g.D == 64 || g.D == 128, "flash_backward: head dim " + std::to_string(g.D) + " not instantiated");
  const int64_t n = g.B * g.Tq * g.H * g.D;
  attention_delta<bf16>(stream, g, out, dout, delta);
  PL_ATTN_CUDA_CHECK(cudaMemsetAsync(dq_acc, 0, static_cast<size_t>(n) * sizeof(float), stream));
  if (g.D == 64)
    launch_bwd<64>(stream, g, q, k, v, lse, delta, dout, dk, dv, dq_acc);
  else
    launch_bwd<128>(stream, g, q, k, v, lse, delta, dout, dk, dv, dq_acc);
  const int64_t blocks = (n + 255) / 256 < 65536 ? (n + 255) / 256 : 65536;
  dq_convert_kernel<<<static_cast<unsigned>(blocks), 256, 0, stream>>>(dq_acc, dq, n, g.scale);
  PL_ATTN_LAUNCH_CHECK(dq_convert_kernel);
}

}  // namespace polyllama::cuda::attn
