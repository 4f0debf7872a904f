#include <algorithm>
#include <numeric>
#include <vector>

#include "device_util.cuh"
#include "embedding.cuh"

namespace polyllama::cuda {

namespace {

template <typename T> __global__ void embedding_forward_kernel(T* out, const T* table, const int32_t* ids, int64_t C) {
  const int64_t n = blockIdx.x;
  const T* src = table + static_cast<int64_t>(ids[n]) * C;
  T* dst = out + n * C;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) dst[c] = src[c];
}

// Block (u, column tile): one column per thread, the token's rows summed in order.
template <typename T>
__global__ void embedding_backward_kernel(float* dtable, const T* dout, const int32_t* tokens, const int32_t* offsets,
                                          const int32_t* rows, int64_t C) {
  const int64_t c = static_cast<int64_t>(blockIdx.y) * blockDim.x + threadIdx.x;
  if (c >= C) return;
  const int64_t u = blockIdx.x;
  float* dst = dtable + static_cast<int64_t>(tokens[u]) * C + c;
  float acc = *dst;
  for (int32_t k = offsets[u]; k < offsets[u + 1]; ++k) acc += to_f32(dout[static_cast<int64_t>(rows[k]) * C + c]);
  *dst = acc;
}

}  // namespace

int64_t embedding_plan(const int32_t* ids, int64_t N, std::vector<int32_t>& plan) {
  std::vector<int32_t> order(static_cast<size_t>(N));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return ids[a] < ids[b]; });
  std::vector<int32_t> tokens, offsets;
  for (int64_t k = 0; k < N; ++k)
    if (k == 0 || ids[order[static_cast<size_t>(k)]] != ids[order[static_cast<size_t>(k - 1)]]) {
      tokens.push_back(ids[order[static_cast<size_t>(k)]]);
      offsets.push_back(static_cast<int32_t>(k));
    }
  offsets.push_back(static_cast<int32_t>(N));
  plan.clear();
  plan.insert(plan.end(), tokens.begin(), tokens.end());
  plan.insert(plan.end(), offsets.begin(), offsets.end());
  plan.insert(plan.end(), order.begin(), order.end());
  return static_cast<int64_t>(tokens.size());
}

void embedding_forward(CudaBackend::Context& ctx, DType dtype, void* out, const void* table, const int32_t* ids,
                       int64_t N, int64_t C) {
  if (N == 0) return;
  PL_CHECK(N <= 0x7fffffff, "embedding: too many rows for one grid");
  if (dtype == DType::bf16)
    embedding_forward_kernel<<<static_cast<unsigned>(N), 256, 0, ctx.stream>>>(
        static_cast<__nv_bfloat16*>(out), static_cast<const __nv_bfloat16*>(table), ids, C);
  else
    embedding_forward_kernel<<<static_cast<unsigned>(N), 256, 0, ctx.stream>>>(
        static_cast<float*>(out), static_cast<const float*>(table), ids, C);
  PL_CUDA_CHECK_LAUNCH("embedding_forward_kernel");
}

void embedding_backward(CudaBackend::Context& ctx, DType dtype, float* dtable, const void* dout,
                        const int32_t* plan, int64_t U, int64_t N, int64_t C) {
  if (N == 0) return;
  const dim3 grid(static_cast<unsigned>(U), static_cast<unsigned>(ceil_div(C, 256)));
  const int32_t *tokens = plan, *offsets = plan + U, *rows = plan + 2 * U + 1;
  if (dtype == DType::bf16)
    embedding_backward_kernel<<<grid, 256, 0, ctx.stream>>>(dtable, static_cast<const __nv_bfloat16*>(dout), tokens,
                                                            offsets, rows, C);
  else
    embedding_backward_kernel<<<grid, 256, 0, ctx.stream>>>(dtable, static_cast<const float*>(dout), tokens, offsets,
                                                            rows, C);
  PL_CUDA_CHECK_LAUNCH("embedding_backward_kernel");
}

}  // namespace polyllama::cuda
