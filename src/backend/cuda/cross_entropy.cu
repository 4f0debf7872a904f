#include "cross_entropy.cuh"
#include "device_util.cuh"

namespace polyllama::cuda {

namespace {

constexpr int kThreads = 512;

template <typename T>
__global__ void xent_kernel(T* logits, float* loss, const int32_t* targets, int32_t ignore_index, bool want_grad,
                            float grad_scale, int64_t V) {
  __shared__ float sh[32];
  const int64_t n = blockIdx.x;
  T* row = logits + n * V;
  const int32_t tgt = targets[n];
  if (tgt == ignore_index) {
    if (threadIdx.x == 0) loss[n] = 0.f;
    if (want_grad)
      for (int64_t j = threadIdx.x; j < V; j += blockDim.x) row[j] = from_f32<T>(0.f);
    return;
  }
  // Online max and sum per thread, then one block-wide combination.
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
  // Block max, then each thread rescales its sum to it.
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  float wm = warp_max(m);
  if (lane == 0) sh[warp] = wm;
  __syncthreads();
  float bm = lane < nwarps ? sh[lane] : -INFINITY;
  bm = warp_max(bm);
  __syncthreads();
  s = m == -INFINITY ? 0.f : s * expf(m - bm);
  const float sum = block_sum(s, sh);
  const float xt = to_f32(row[tgt]);  // read by every thread before any thread writes the row
  __syncthreads();
  if (threadIdx.x == 0) loss[n] = logf(sum) + bm - xt;
  if (!want_grad) return;
  const float inv = grad_scale / sum;
  for (int64_t j = threadIdx.x; j < V; j += blockDim.x) {
    float g = expf(to_f32(row[j]) - bm) * inv;
    if (j == tgt) g -= grad_scale;
    row[j] = from_f32<T>(g);
  }
}

}  // namespace

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
