#include "device_util.cuh"
#include "rmsnorm.cuh"

#include <initializer_list>

namespace polyllama::cuda {

namespace {

constexpr int kThreads = 256;

// W consecutive elements of a row moved as one access: W = 16 bytes' worth when the row width and the pointers
// allow (8 bf16: the rows are 2048 wide in bench-1b, one 16-byte load per thread), else 1.
template <typename T, int W> struct alignas(W * sizeof(T)) Pack {
  T v[W];
};

template <typename T, int W>
__global__ void rmsnorm_forward_kernel(T* y, float* rstd, const T* x, const T* w, int64_t C, float eps) {
  using P = Pack<T, W>;
  __shared__ float sh[32];
  const int64_t n = blockIdx.x, G = C / W;
  const P* xr = reinterpret_cast<const P*>(x + n * C);
  const P* wr = reinterpret_cast<const P*>(w);
  float ss = 0;
  for (int64_t c = threadIdx.x; c < G; c += blockDim.x) {
    const P xv = xr[c];
#pragma unroll
    for (int k = 0; k < W; ++k) {
      const float v = to_f32(xv.v[k]);
      ss += v * v;
    }
  }
  ss = block_sum(ss, sh);
  const float r = rsqrtf(ss / static_cast<float>(C) + eps);
  if (threadIdx.x == 0) rstd[n] = r;
  P* yr = reinterpret_cast<P*>(y + n * C);
  for (int64_t c = threadIdx.x; c < G; c += blockDim.x) {
    const P xv = xr[c], wv = wr[c];
    P yv;
#pragma unroll
    for (int k = 0; k < W; ++k) yv.v[k] = from_f32<T>(to_f32(xv.v[k]) * r * to_f32(wv.v[k]));
    yr[c] = yv;
  }
}

template <typename T, int W>
__global__ void rmsnorm_dx_kernel(T* dx, const T* dy, const T* x, const T* w, const float* rstd, int64_t C) {
  using P = Pack<T, W>;
  __shared__ float sh[32];
  const int64_t n = blockIdx.x, G = C / W;
  const P *xr = reinterpret_cast<const P*>(x + n * C), *gr = reinterpret_cast<const P*>(dy + n * C);
  const P* wr = reinterpret_cast<const P*>(w);
  P* dxr = reinterpret_cast<P*>(dx + n * C);
  const float r = rstd[n];
  float dot = 0;
  for (int64_t c = threadIdx.x; c < G; c += blockDim.x) {
    const P gv = gr[c], wv = wr[c], xv = xr[c];
#pragma unroll
    for (int k = 0; k < W; ++k) dot += to_f32(gv.v[k]) * to_f32(wv.v[k]) * to_f32(xv.v[k]);
  }
  dot = block_sum(dot, sh);
  const float k = dot * r * r * r / static_cast<float>(C);
  for (int64_t c = threadIdx.x; c < G; c += blockDim.x) {
    const P gv = gr[c], wv = wr[c], xv = xr[c];
    P dv = dxr[c];
#pragma unroll
    for (int j = 0; j < W; ++j)
      dv.v[j] = from_f32<T>(to_f32(dv.v[j]) + r * to_f32(wv.v[j]) * to_f32(gv.v[j]) - k * to_f32(xv.v[j]));
    dxr[c] = dv;
  }
}

// Whether rows of width C can be read 16 bytes at a time from all of ptrs.
template <typename T> bool row_vectorizable(int64_t C, std::initializer_list<const void*> ptrs) {
  if (C % Vec16<T>::kN != 0) return false;
  for (const void* p : ptrs)
    if (!aligned16(p)) return false;
  return true;
}

// Partial dw over one chunk of rows per blockIdx.y; one column per thread (coalesced across the warp).
template <typename T>
__global__ void rmsnorm_dw_partial_kernel(float* part, const T* dy, const T* x, const float* rstd, int64_t N,
                                          int64_t C, int64_t rows_per_chunk) {
  const int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= C) return;
  const int64_t r0 = static_cast<int64_t>(blockIdx.y) * rows_per_chunk;
  const int64_t r1 = r0 + rows_per_chunk < N ? r0 + rows_per_chunk : N;
  float acc = 0;
#pragma unroll 4
  for (int64_t n = r0; n < r1; ++n) acc += to_f32(dy[n * C + c]) * to_f32(x[n * C + c]) * rstd[n];
  part[static_cast<int64_t>(blockIdx.y) * C + c] = acc;
}

// dw[c] += the sum of part[k][c] over the chunks: 32 columns per block, each summed by 8 thread rows over an
// interleaved subset of the chunks, the 8 partials then added in a fixed order (deterministic). The former one
// thread per column ran on C/256 = 8 blocks, each thread a serial 1024-load chain: latency bound, ~0.15 ms.
constexpr int kSumCols = 32, kSumGroups = 8;
__global__ void rmsnorm_dw_sum_kernel(float* dw, const float* part, int64_t chunks, int64_t C) {
  __shared__ float sh[kSumGroups][kSumCols + 1];
  const int64_t c = static_cast<int64_t>(blockIdx.x) * kSumCols + threadIdx.x;
  float acc = 0;
  if (c < C)
    for (int64_t k = threadIdx.y; k < chunks; k += kSumGroups) acc += part[k * C + c];
  sh[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && c < C) {
    float t = 0;
    for (int y = 0; y < kSumGroups; ++y) t += sh[y][threadIdx.x];
    dw[c] += t;
  }
}

}  // namespace

template <typename T>
static void rmsnorm_forward_t(CudaBackend::Context& ctx, T* y, float* rstd, const T* x, const T* w, int64_t N,
                              int64_t C, float eps) {
  const auto grid = static_cast<unsigned>(N);
  if (row_vectorizable<T>(C, {y, x, w}))
    rmsnorm_forward_kernel<T, Vec16<T>::kN><<<grid, kThreads, 0, ctx.stream>>>(y, rstd, x, w, C, eps);
  else
    rmsnorm_forward_kernel<T, 1><<<grid, kThreads, 0, ctx.stream>>>(y, rstd, x, w, C, eps);
}

void rmsnorm_forward(CudaBackend::Context& ctx, DType dtype, void* y, float* rstd, const void* x, const void* w,
                     int64_t N, int64_t C, double eps) {
  if (N == 0) return;
  PL_CHECK(N <= 0x7fffffff, "rmsnorm: too many rows for one grid");
  const auto e = static_cast<float>(eps);
  if (dtype == DType::bf16)
    rmsnorm_forward_t(ctx, static_cast<__nv_bfloat16*>(y), rstd, static_cast<const __nv_bfloat16*>(x),
                      static_cast<const __nv_bfloat16*>(w), N, C, e);
  else
    rmsnorm_forward_t(ctx, static_cast<float*>(y), rstd, static_cast<const float*>(x), static_cast<const float*>(w), N,
                      C, e);
  PL_CUDA_CHECK_LAUNCH("rmsnorm_forward_kernel");
}

template <typename T>
static void rmsnorm_backward_t(CudaBackend::Context& ctx, T* dx, float* dw, const T* dy, const T* x, const T* w,
                               const float* rstd, int64_t N, int64_t C) {
  const auto rows_grid = static_cast<unsigned>(N);
  if (row_vectorizable<T>(C, {dx, dy, x, w}))
    rmsnorm_dx_kernel<T, Vec16<T>::kN><<<rows_grid, kThreads, 0, ctx.stream>>>(dx, dy, x, w, rstd, C);
  else
    rmsnorm_dx_kernel<T, 1><<<rows_grid, kThreads, 0, ctx.stream>>>(dx, dy, x, w, rstd, C);
  PL_CUDA_CHECK_LAUNCH("rmsnorm_dx_kernel");
  // Chunks of 64 rows (fewer when the scratch is short): the chunking depends on N and C only. 64 rows keep
  // the partial kernel at ~N/64 * C/256 blocks (1024 for bench-1b) and the partials to sum at N/64 per column.
  const int64_t max_chunks = static_cast<int64_t>(ctx.reduce_bytes / sizeof(float)) / C;
  PL_CHECK(max_chunks >= 1, "rmsnorm: width " + std::to_string(C) + " exceeds the reduction scratch");
  int64_t chunks = ceil_div(N, 64);
  if (chunks > max_chunks) chunks = max_chunks;
  const int64_t rows = ceil_div(N, chunks);
  chunks = ceil_div(N, rows);
  const dim3 grid(static_cast<unsigned>(ceil_div(C, kThreads)), static_cast<unsigned>(chunks));
  rmsnorm_dw_partial_kernel<<<grid, kThreads, 0, ctx.stream>>>(ctx.reduce, dy, x, rstd, N, C, rows);
  PL_CUDA_CHECK_LAUNCH("rmsnorm_dw_partial_kernel");
  rmsnorm_dw_sum_kernel<<<static_cast<unsigned>(ceil_div(C, kSumCols)), dim3(kSumCols, kSumGroups), 0, ctx.stream>>>(
      dw, ctx.reduce, chunks, C);
  PL_CUDA_CHECK_LAUNCH("rmsnorm_dw_sum_kernel");
}

void rmsnorm_backward(CudaBackend::Context& ctx, DType dtype, void* dx, float* dw, const void* dy, const void* x,
                      const void* w, const float* rstd, int64_t N, int64_t C) {
  if (N == 0) return;
  PL_CHECK(N <= 0x7fffffff, "rmsnorm: too many rows for one grid");
  if (dtype == DType::bf16)
    rmsnorm_backward_t(ctx, static_cast<__nv_bfloat16*>(dx), dw, static_cast<const __nv_bfloat16*>(dy),
                       static_cast<const __nv_bfloat16*>(x), static_cast<const __nv_bfloat16*>(w), rstd, N, C);
  else
    rmsnorm_backward_t(ctx, static_cast<float*>(dx), dw, static_cast<const float*>(dy), static_cast<const float*>(x),
                       static_cast<const float*>(w), rstd, N, C);
}

}  // namespace polyllama::cuda
