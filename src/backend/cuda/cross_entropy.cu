#include "cross_entropy.cuh"
#include "device_util.cuh"

namespace polyllama::cuda {

namespace {

constexpr int kThreads = 512;

// A row's max and its sum of exp(x - max), for the whole block (every thread gets both): an online max and sum
// per thread, the block's max, then each thread's sum rescaled to it and summed.
template <typename T>
__device__ float2 row_max_sumexp(const T* row, int64_t V, float* sh) {
  float m = -INFINITY, s = 0.f;
  for (int64_t j = threadIdx.x; j < V; j += blockDim.x) {
    const float x = to_f32(row[j]);
    if (x > m) {
      s = s * expf(m - x) + 1.f;
      m = x;
    } else {
      s += expf(x - m);
    }
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  const float wm = warp_max(m);
  if (lane == 0) sh[warp] = wm;
  __syncthreads();
  float bm = lane < nwarps ? sh[lane] : -INFINITY;
  bm = warp_max(bm);
  __syncthreads();
  s = m == -INFINITY ? 0.f : s * expf(m - bm);
  return make_float2(bm, block_sum(s, sh));
}

// A row whose target is ignored: no loss, and with want_grad a zero gradient.
template <typename T>
__device__ void ignored_row(T* row, int64_t V, float* loss, bool want_grad) {
  if (threadIdx.x == 0) *loss = 0.f;
  if (want_grad)
    for (int64_t j = threadIdx.x; j < V; j += blockDim.x) row[j] = from_f32<T>(0.f);
}

// The row's gradient in place: exp(x - shift) * mul, minus grad_scale at column `target` (which may lie outside
// the row: a vocabulary slice without the target).
template <typename T>
__device__ void softmax_grad_row(T* row, int64_t V, float shift, float mul, int64_t target, float grad_scale) {
  for (int64_t j = threadIdx.x; j < V; j += blockDim.x) {
    float g = expf(to_f32(row[j]) - shift) * mul;
    if (j == target) g -= grad_scale;
    row[j] = from_f32<T>(g);
  }
}

template <typename T>
__global__ void xent_kernel(T* logits, float* loss, const int32_t* targets, int32_t ignore_index, bool want_grad,
                            float grad_scale, int64_t V) {
  __shared__ float sh[32];
  const int64_t n = blockIdx.x;
  T* row = logits + n * V;
  const int32_t tgt = targets[n];
  if (tgt == ignore_index) return ignored_row(row, V, loss + n, want_grad);
  const float2 ms = row_max_sumexp(row, V, sh);
  const float bm = ms.x, sum = ms.y;
  const float xt = to_f32(row[tgt]);  // read by every thread before any thread writes the row
  __syncthreads();
  if (threadIdx.x == 0) loss[n] = logf(sum) + bm - xt;
  if (!want_grad) return;
  softmax_grad_row(row, V, bm, grad_scale / sum, tgt, grad_scale);
}

// The row's slice: its log-sum-exp and the target's logit when the slice holds it.
template <typename T>
__global__ void xent_partial_kernel(const T* logits, float* stats, const int32_t* targets, int64_t v0,
                                    int32_t ignore_index, int64_t Vl) {
  __shared__ float sh[32];
  const int64_t n = blockIdx.x;
  const T* row = logits + n * Vl;
  const int32_t tgt = targets[n];
  if (tgt == ignore_index) {
    if (threadIdx.x == 0) stats[2 * n] = stats[2 * n + 1] = 0.f;
    return;
  }
  const float2 ms = row_max_sumexp(row, Vl, sh);
  const float bm = ms.x, sum = ms.y;
  if (threadIdx.x == 0) {
    const int64_t local = static_cast<int64_t>(tgt) - v0;
    stats[2 * n] = bm + logf(sum);
    stats[2 * n + 1] = local >= 0 && local < Vl ? to_f32(row[local]) : 0.f;
  }
}

// Every thread combines the parts' log-sum-exps (a handful: one per tp rank), then the row's gradient.
template <typename T>
__global__ void xent_finish_kernel(T* logits, float* loss, const float* stats, int64_t parts, const int32_t* targets,
                                   int64_t v0, int32_t ignore_index, bool want_grad, float grad_scale, int64_t N,
                                   int64_t Vl) {
  const int64_t n = blockIdx.x;
  T* row = logits + n * Vl;
  const int32_t tgt = targets[n];
  if (tgt == ignore_index) return ignored_row(row, Vl, loss + n, want_grad);
  float top = -INFINITY, sum = 0.f, xt = 0.f;
  for (int64_t p = 0; p < parts; ++p) top = fmaxf(top, stats[(p * N + n) * 2]);
  for (int64_t p = 0; p < parts; ++p) {
    sum += expf(stats[(p * N + n) * 2] - top);
    xt += stats[(p * N + n) * 2 + 1];
  }
  const float lse = top + logf(sum);
  if (threadIdx.x == 0) loss[n] = lse - xt;
  if (!want_grad) return;
  softmax_grad_row(row, Vl, lse, grad_scale, static_cast<int64_t>(tgt) - v0, grad_scale);
}

}  // namespace

void xent_partial(CudaBackend::Context& ctx, DType dtype, const void* logits, float* stats, const int32_t* targets,
                  int64_t v0, int32_t ignore_index, int64_t N, int64_t Vl) {
  if (N == 0) return;
  PL_CHECK(N <= 0x7fffffff, "xent_partial: too many rows for one grid");
  const auto grid = static_cast<unsigned>(N);
  if (dtype == DType::bf16)
    xent_partial_kernel<<<grid, kThreads, 0, ctx.stream>>>(static_cast<const __nv_bfloat16*>(logits), stats, targets,
                                                           v0, ignore_index, Vl);
  else
    xent_partial_kernel<<<grid, kThreads, 0, ctx.stream>>>(static_cast<const float*>(logits), stats, targets, v0,
                                                           ignore_index, Vl);
  PL_CUDA_CHECK_LAUNCH("xent_partial_kernel");
}

void xent_finish(CudaBackend::Context& ctx, DType dtype, void* logits, float* loss, const float* stats_all,
                 int64_t parts, const int32_t* targets, int64_t v0, int32_t ignore_index, bool want_grad,
                 double grad_scale, int64_t N, int64_t Vl) {
  if (N == 0) return;
  PL_CHECK(N <= 0x7fffffff, "xent_finish: too many rows for one grid");
  const auto grid = static_cast<unsigned>(N);
  const auto gs = static_cast<float>(grad_scale);
  if (dtype == DType::bf16)
    xent_finish_kernel<<<grid, kThreads, 0, ctx.stream>>>(static_cast<__nv_bfloat16*>(logits), loss, stats_all, parts,
                                                          targets, v0, ignore_index, want_grad, gs, N, Vl);
  else
    xent_finish_kernel<<<grid, kThreads, 0, ctx.stream>>>(static_cast<float*>(logits), loss, stats_all, parts,
                                                          targets, v0, ignore_index, want_grad, gs, N, Vl);
  PL_CUDA_CHECK_LAUNCH("xent_finish_kernel");
}

void softmax_xent(CudaBackend::Context& ctx, DType dtype, void* logits, float* loss, const int32_t* targets,
                  int32_t ignore_index, bool want_grad, double grad_scale, int64_t N, int64_t V) {
  if (N == 0) return;
  PL_CHECK(N <= 0x7fffffff, "softmax_xent: too many rows for one grid");
  const auto gs = static_cast<float>(grad_scale);
  if (dtype == DType::bf16)
    xent_kernel<<<static_cast<unsigned>(N), kThreads, 0, ctx.stream>>>(static_cast<__nv_bfloat16*>(logits), loss,
                                                                       targets, ignore_index, want_grad, gs, V);
  else
    xent_kernel<<<static_cast<unsigned>(N), kThreads, 0, ctx.stream>>>(static_cast<float*>(logits), loss, targets,
                                                                       ignore_index, want_grad, gs, V);
  PL_CUDA_CHECK_LAUNCH("xent_kernel");
}

}  // namespace polyllama::cuda
