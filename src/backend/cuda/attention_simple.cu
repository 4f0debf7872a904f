// The plain attention kernels. Each block owns one query row (forward, dq) or one key row (dk, dv) and walks
// the rows on the other side in chunks of kThreads: thread i takes row i of the chunk for the dot products,
// then the block sums the chunk into the kThreads-strided columns of its fp32 accumulator in shared memory.
// Online softmax (running max m, running sum l) in fp32 keeps the forward to one pass over the keys.
#include <cmath>

#include "attention_simple.cuh"

namespace polyllama::cuda::attn {
namespace {

constexpr int kThreads = 128;

// Max or sum of x over the block; red holds 33 floats of shared memory.
__device__ float block_reduce(float x, bool is_max, float* red) {
  for (int o = 16; o > 0; o >>= 1) {
    const float y = __shfl_xor_sync(0xffffffffu, x, o);
    x = is_max ? fmaxf(x, y) : x + y;
  }
  const int w = static_cast<int>(threadIdx.x) / 32, lane = static_cast<int>(threadIdx.x) % 32;
  __syncthreads();  // the previous call's result has been read
  if (lane == 0) red[w] = x;
  __syncthreads();
  if (w == 0) {
    x = lane < kThreads / 32 ? red[lane] : (is_max ? -INFINITY : 0.f);
    for (int o = 16; o > 0; o >>= 1) {
      const float y = __shfl_xor_sync(0xffffffffu, x, o);
      x = is_max ? fmaxf(x, y) : x + y;
    }
    if (lane == 0) red[32] = x;
  }
  __syncthreads();
  return red[32];
}

template <typename T> __device__ float dot_row(const float* a, const T* b, int64_t D) {
  float s = 0;
  for (int64_t d = 0; d < D; ++d) s = fmaf(a[d], to_f(b[d]), s);
  return s;
}

// grid (Tq, H, B); shared: q[D], acc[D], p[kThreads].
template <typename T>
__global__ void __launch_bounds__(kThreads) simple_fwd_kernel(Geo g, const T* q, const T* k, const T* v, T* out,
                                                              float* lse) {
  extern __shared__ float sm[];
  __shared__ float red[33];
  const int64_t t = blockIdx.x, h = blockIdx.y, b = blockIdx.z, kvh = h / (g.H / g.KV);
  const int tid = static_cast<int>(threadIdx.x);
  float* qf = sm;
  float* acc = sm + g.D;
  float* pr = acc + g.D;
  const T* qr = q + g.qrow(b, t, h);
  for (int64_t d = tid; d < g.D; d += kThreads) {
    qf[d] = to_f(qr[d]);
    acc[d] = 0;
  }
  __syncthreads();
  const int64_t lo = g.lo(b, t), hi = g.hi(t);
  float m = -INFINITY, l = 0;
  for (int64_t j0 = lo; j0 <= hi; j0 += kThreads) {
    const int64_t j = j0 + tid;
    float s = -INFINITY;
    if (j <= hi) s = dot_row(qf, k + g.krow(b, j, kvh), g.D) * g.scale;
    const float mn = fmaxf(m, block_reduce(s, true, red));  // finite: key j0 <= hi is in this chunk
    const float p = j <= hi ? expf(s - mn) : 0.f;
    pr[tid] = p;
    const float alpha = expf(m - mn);  // 0 on the first chunk (m = -inf)
    l = l * alpha + block_reduce(p, false, red);  // its barriers also publish pr
    m = mn;
    const int64_t n = hi - j0 + 1 < kThreads ? hi - j0 + 1 : kThreads;
    for (int64_t d = tid; d < g.D; d += kThreads) {
      float a = acc[d] * alpha;
      for (int64_t i = 0; i < n; ++i) a = fmaf(pr[i], to_f(v[g.krow(b, j0 + i, kvh) + d]), a);
      acc[d] = a;
    }
    __syncthreads();  // pr is rewritten by the next chunk
  }
  T* orow = out + g.qrow(b, t, h);
  for (int64_t d = tid; d < g.D; d += kThreads) orow[d] = from_f<T>(acc[d] / l);
  if (tid == 0) lse[g.stat(b, h, t)] = m + logf(l);
}

// One warp per (b, t, h) row; blocks of kThreads.
template <typename T> __global__ void delta_kernel(Geo g, const T* out, const T* dout, float* delta) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * (kThreads / 32) + threadIdx.x / 32;
  if (row >= g.B * g.Tq * g.H) return;
  const int lane = static_cast<int>(threadIdx.x) % 32;
  const T* o = out + row * g.D;
  const T* d_o = dout + row * g.D;
  float s = 0;
  for (int64_t d = lane; d < g.D; d += 32) s = fmaf(to_f(o[d]), to_f(d_o[d]), s);
  for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
  const int64_t h = row % g.H, t = (row / g.H) % g.Tq, b = row / (g.H * g.Tq);
  if (lane == 0) delta[g.stat(b, h, t)] = s;
}

// dq of one query row: sum over its keys of dS k, dS = P (dP - delta). grid (Tq, H, B);
// shared: q[D], dout[D], acc[D], ds[kThreads].
template <typename T>
__global__ void __launch_bounds__(kThreads) simple_dq_kernel(Geo g, const T* q, const T* k, const T* v,
                                                             const float* lse, const float* delta, const T* dout,
                                                             T* dq) {
  extern __shared__ float sm[];
  const int64_t t = blockIdx.x, h = blockIdx.y, b = blockIdx.z, kvh = h / (g.H / g.KV);
  const int tid = static_cast<int>(threadIdx.x);
  float* qf = sm;
  float* of = sm + g.D;
  float* acc = of + g.D;
  float* ds = acc + g.D;
  for (int64_t d = tid; d < g.D; d += kThreads) {
    qf[d] = to_f(q[g.qrow(b, t, h) + d]);
    of[d] = to_f(dout[g.qrow(b, t, h) + d]);
    acc[d] = 0;
  }
  __syncthreads();
  const int64_t lo = g.lo(b, t), hi = g.hi(t);
  const float L = lse[g.stat(b, h, t)], dl = delta[g.stat(b, h, t)];
  for (int64_t j0 = lo; j0 <= hi; j0 += kThreads) {
    const int64_t j = j0 + tid;
    float x = 0;
    if (j <= hi) {
      const float p = expf(dot_row(qf, k + g.krow(b, j, kvh), g.D) * g.scale - L);
      x = p * (dot_row(of, v + g.krow(b, j, kvh), g.D) - dl);
    }
    ds[tid] = x;
    __syncthreads();
    const int64_t n = hi - j0 + 1 < kThreads ? hi - j0 + 1 : kThreads;
    for (int64_t d = tid; d < g.D; d += kThreads) {
      float a = acc[d];
      for (int64_t i = 0; i < n; ++i) a = fmaf(ds[i], to_f(k[g.krow(b, j0 + i, kvh) + d]), a);
      acc[d] = a;
    }
    __syncthreads();
  }
  for (int64_t d = tid; d < g.D; d += kThreads) dq[g.qrow(b, t, h) + d] = from_f<T>(acc[d] * g.scale);
}

// dk, dv of one key row, summed over the query heads of its group and the queries that see it.
// grid (Tk, KV, B); shared: k[D], v[D], dk[D], dv[D], p[kThreads], ds[kThreads].
template <typename T>
__global__ void __launch_bounds__(kThreads) simple_dkdv_kernel(Geo g, const T* q, const T* k, const T* v,
                                                               const float* lse, const float* delta,
                                                               const T* dout, T* dk, T* dv) {
  extern __shared__ float sm[];
  const int64_t j = blockIdx.x, kvh = blockIdx.y, b = blockIdx.z, rep = g.H / g.KV;
  const int tid = static_cast<int>(threadIdx.x);
  T* dkr = dk + g.krow(b, j, kvh);
  T* dvr = dv + g.krow(b, j, kvh);
  if (j >= g.kv_len) {  // no query sees rows past kv_len: their gradients are zero by contract
    for (int64_t d = tid; d < g.D; d += kThreads) dkr[d] = dvr[d] = from_f<T>(0.f);
    return;
  }
  float* kf = sm;
  float* vf = kf + g.D;
  float* ak = vf + g.D;
  float* av = ak + g.D;
  float* pr = av + g.D;
  float* ds = pr + kThreads;
  for (int64_t d = tid; d < g.D; d += kThreads) {
    kf[d] = to_f(k[g.krow(b, j, kvh) + d]);
    vf[d] = to_f(v[g.krow(b, j, kvh) + d]);
    ak[d] = av[d] = 0;
  }
  __syncthreads();
  // Queries before t0 sit before key j; queries from t0 on see it unless their kv_start lies past it.
  const int64_t t0 = j - (g.kv_len - g.Tq) > 0 ? j - (g.kv_len - g.Tq) : 0;
  for (int64_t h = kvh * rep; h < (kvh + 1) * rep; ++h) {
    for (int64_t c0 = t0; c0 < g.Tq; c0 += kThreads) {
      const int64_t t = c0 + tid;
      float p = 0, x = 0;
      if (t < g.Tq && g.lo(b, t) <= j) {
        p = expf(dot_row(kf, q + g.qrow(b, t, h), g.D) * g.scale - lse[g.stat(b, h, t)]);
        x = p * (dot_row(vf, dout + g.qrow(b, t, h), g.D) - delta[g.stat(b, h, t)]);
      }
      pr[tid] = p;
      ds[tid] = x;
      __syncthreads();
      const int64_t n = g.Tq - c0 < kThreads ? g.Tq - c0 : kThreads;
      for (int64_t d = tid; d < g.D; d += kThreads) {
        float a = ak[d], c = av[d];
        for (int64_t i = 0; i < n; ++i) {
          a = fmaf(ds[i], to_f(q[g.qrow(b, c0 + i, h) + d]), a);
          c = fmaf(pr[i], to_f(dout[g.qrow(b, c0 + i, h) + d]), c);
        }
        ak[d] = a;
        av[d] = c;
      }
      __syncthreads();
    }
  }
  for (int64_t d = tid; d < g.D; d += kThreads) {
    dkr[d] = from_f<T>(ak[d] * g.scale);
    dvr[d] = from_f<T>(av[d]);
  }
}

size_t smem_bytes(int64_t floats) { return static_cast<size_t>(floats) * sizeof(float); }

// Large head dims need more than the default 48 KiB of dynamic shared memory.
template <typename K> void allow_smem(K kernel, size_t bytes) {
  if (bytes > 48 * 1024)
    PL_ATTN_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                            static_cast<int>(bytes)));
}

dim3 grid3(int64_t x, int64_t y, int64_t z) {
  PL_CHECK(x < (int64_t{1} << 31) && y < 65536 && z < 65536, "attention grid too large");
  return dim3(static_cast<unsigned>(x), static_cast<unsigned>(y), static_cast<unsigned>(z));
}

}  // namespace

template <typename T>
void simple_forward(cudaStream_t stream, const Geo& g, const T* q, const T* k, const T* v, T* out, float* lse) {
  const size_t sm = smem_bytes(2 * g.D + kThreads);
  allow_smem(simple_fwd_kernel<T>, sm);
  simple_fwd_kernel<T><<<grid3(g.Tq, g.H, g.B), kThreads, sm, stream>>>(g, q, k, v, out, lse);
  PL_ATTN_LAUNCH_CHECK(simple_fwd_kernel);
}

template <typename T>
void attention_delta(cudaStream_t stream, const Geo& g, const T* out, const T* dout, float* delta) {
  const int64_t rows = g.B * g.Tq * g.H, per = kThreads / 32;
  delta_kernel<T><<<grid3((rows + per - 1) / per, 1, 1), kThreads, 0, stream>>>(g, out, dout, delta);
  PL_ATTN_LAUNCH_CHECK(delta_kernel);
}

template <typename T>
void simple_backward(cudaStream_t stream, const Geo& g, const T* q, const T* k, const T* v, const T* out,
                     const float* lse, const T* dout, T* dq, T* dk, T* dv, float* delta) {
  attention_delta<T>(stream, g, out, dout, delta);
  const size_t sm_q = smem_bytes(3 * g.D + kThreads);
  allow_smem(simple_dq_kernel<T>, sm_q);
  simple_dq_kernel<T><<<grid3(g.Tq, g.H, g.B), kThreads, sm_q, stream>>>(g, q, k, v, lse, delta, dout, dq);
  PL_ATTN_LAUNCH_CHECK(simple_dq_kernel);
  const size_t sm_k = smem_bytes(4 * g.D + 2 * kThreads);
  allow_smem(simple_dkdv_kernel<T>, sm_k);
  simple_dkdv_kernel<T><<<grid3(g.Tk, g.KV, g.B), kThreads, sm_k, stream>>>(g, q, k, v, lse, delta, dout, dk, dv);
  PL_ATTN_LAUNCH_CHECK(simple_dkdv_kernel);
}

#define PL_ATTN_SIMPLE_INSTANTIATE(T)                                                                          \
  template void simple_forward<T>(cudaStream_t, const Geo&, const T*, const T*, const T*, T*, float*);         \
  template void attention_delta<T>(cudaStream_t, const Geo&, const T*, const T*, float*);                      \
  template void simple_backward<T>(cudaStream_t, const Geo&, const T*, const T*, const T*, const T*,           \
                                   const float*, const T*, T*, T*, T*, float*);
PL_ATTN_SIMPLE_INSTANTIATE(float)
PL_ATTN_SIMPLE_INSTANTIATE(__nv_bfloat16)

}  // namespace polyllama::cuda::attn
