#include <cmath>

#include "device_util.cuh"
#include "elementwise.cuh"

namespace polyllama::cuda {

namespace {

constexpr int kReduceBlocks = 256, kReduceThreads = 256;

template <typename D, typename S> __global__ void convert_kernel(D* dst, const S* src, int64_t n) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    dst[i] = from_f32<D>(to_f32(src[i]));
}

// convert_kernel over whole 16-byte groups of the source (4 f32 -> 4 bf16, or 8 bf16 -> 2 x 4 f32): bit-identical.
template <typename D, typename S> __global__ void convert_vec_kernel(D* dst, const S* src, int64_t ngroups) {
  constexpr int kN = Vec16<S>::kN;
  struct alignas(kN * sizeof(D)) Out {
    D v[kN];
  };
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < ngroups;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const Vec16<S> a = reinterpret_cast<const Vec16<S>*>(src)[i];
    Out o;
#pragma unroll
    for (int k = 0; k < kN; ++k) o.v[k] = from_f32<D>(to_f32(a.v[k]));
    reinterpret_cast<Out*>(dst)[i] = o;
  }
}

template <typename T> __global__ void scale_kernel(T* x, float a, int64_t n) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    x[i] = from_f32<T>(to_f32(x[i]) * a);
}

// Stage 1: kReduceBlocks partial sums (block b covers a fixed grid-stride set of 16-byte groups, in order, then
// block 0 the < 16-byte tail; the same split on every run, so the same bits). Vector loads give each thread 4-8
// elements in flight: 256 blocks of scalar loads could not saturate the memory system on a 953M-element arena.
template <typename T, bool kSquare> __global__ void partial_sum_kernel(double* part, const T* x, int64_t n) {
  __shared__ double sh[32];
  constexpr int kN = Vec16<T>::kN;
  const int64_t ngroups = aligned16_dev(x) ? n / kN : 0;
  double acc = 0;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < ngroups;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const Vec16<T> a = reinterpret_cast<const Vec16<T>*>(x)[i];
#pragma unroll
    for (int k = 0; k < kN; ++k) {
      const double v = to_f32(a.v[k]);
      acc += kSquare ? v * v : v;
    }
  }
  if (blockIdx.x == 0)
    for (int64_t i = ngroups * kN + threadIdx.x; i < n; i += blockDim.x) {
      const double v = to_f32(x[i]);
      acc += kSquare ? v * v : v;
    }
  acc = block_sum(acc, sh);
  if (threadIdx.x == 0) part[blockIdx.x] = acc;
}

// Stage 2: one block sums the partials in a fixed order.
__global__ void final_sum_kernel(double* out, const double* part, int nparts) {
  __shared__ double sh[32];
  double acc = 0;
  for (int i = threadIdx.x; i < nparts; i += blockDim.x) acc += part[i];
  acc = block_sum(acc, sh);
  if (threadIdx.x == 0) *out = acc;
}

// Thread t sums tensor t's partials in order; thread 0 then sums the tensors' totals in order.
__global__ void sum_parts_kernel(double* out, const double* part, double* per_tensor, int64_t ntensors) {
  for (int64_t t = threadIdx.x; t < ntensors; t += blockDim.x) {
    double acc = 0;
    for (int i = 0; i < kReduceBlocks; ++i) acc += part[t * kReduceBlocks + i];
    per_tensor[t] = acc;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    double acc = 0;
    for (int64_t t = 0; t < ntensors; ++t) acc += per_tensor[t];
    *out = acc;
  }
}

__global__ void adamw_kernel(float* p, const float* g, float* m, float* v, int64_t n, float decay, float b1, float b2,
                             float step_size, float inv_sqrt_bc2, float eps, float gs) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float gi = gs * g[i];
    const float mi = b1 * m[i] + (1.f - b1) * gi;
    const float vi = b2 * v[i] + (1.f - b2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] = p[i] * decay - step_size * mi / (sqrtf(vi) * inv_sqrt_bc2 + eps);
  }
}

// adamw_kernel's arithmetic on 4 floats per access (16-byte loads/stores of p, g, m, v): bit-identical.
__global__ void adamw_vec_kernel(float4* p, const float4* g, float4* m, float4* v, int64_t nvec, float decay, float b1,
                                 float b2, float step_size, float inv_sqrt_bc2, float eps, float gs) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < nvec;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float pv[4], gv[4], mv[4], vv[4];
    *reinterpret_cast<float4*>(pv) = p[i];
    *reinterpret_cast<float4*>(gv) = g[i];
    *reinterpret_cast<float4*>(mv) = m[i];
    *reinterpret_cast<float4*>(vv) = v[i];
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const float gi = gs * gv[k];
      const float mi = b1 * mv[k] + (1.f - b1) * gi;
      const float vi = b2 * vv[k] + (1.f - b2) * gi * gi;
      mv[k] = mi;
      vv[k] = vi;
      pv[k] = pv[k] * decay - step_size * mi / (sqrtf(vi) * inv_sqrt_bc2 + eps);
    }
    m[i] = *reinterpret_cast<float4*>(mv);
    v[i] = *reinterpret_cast<float4*>(vv);
    p[i] = *reinterpret_cast<float4*>(pv);
  }
}

template <typename T, bool kSquare> void reduce(CudaBackend::Context& ctx, const T* x, int64_t n) {
  auto* part = reinterpret_cast<double*>(ctx.reduce);
  partial_sum_kernel<T, kSquare><<<kReduceBlocks, kReduceThreads, 0, ctx.stream>>>(part, x, n);
  PL_CUDA_CHECK_LAUNCH("partial_sum_kernel");
  final_sum_kernel<<<1, kReduceThreads, 0, ctx.stream>>>(ctx.dev_result, part, kReduceBlocks);
  PL_CUDA_CHECK_LAUNCH("final_sum_kernel");
}

}  // namespace

void convert(CudaBackend::Context& ctx, void* dst, DType dd, const void* src, DType sd, int64_t n) {
  if (n == 0) return;
  if (dd == sd) {
    PL_CUDA_CHECK(cudaMemcpyAsync(dst, src, static_cast<size_t>(n) * dtype_size(dd), cudaMemcpyDeviceToDevice,
                                  ctx.stream));
    return;
  }
  // The bulk in 16-byte groups of the source when both ends are aligned, the rest (tail or all) scalar.
  const bool al = aligned16(dst) && aligned16(src);
  if (al && dd == DType::bf16 && sd == DType::f32 && n >= 4) {
    const int64_t ng = n / 4;
    convert_vec_kernel<<<grid_for(ng, 256), 256, 0, ctx.stream>>>(static_cast<__nv_bfloat16*>(dst),
                                                                   static_cast<const float*>(src), ng);
    PL_CUDA_CHECK_LAUNCH("convert_vec_kernel");
    const int64_t done = ng * 4;
    dst = static_cast<__nv_bfloat16*>(dst) + done;
    src = static_cast<const float*>(src) + done;
    n -= done;
  } else if (al && dd == DType::f32 && sd == DType::bf16 && n >= 8) {
    const int64_t ng = n / 8;
    convert_vec_kernel<<<grid_for(ng, 256), 256, 0, ctx.stream>>>(static_cast<float*>(dst),
                                                                   static_cast<const __nv_bfloat16*>(src), ng);
    PL_CUDA_CHECK_LAUNCH("convert_vec_kernel");
    const int64_t done = ng * 8;
    dst = static_cast<float*>(dst) + done;
    src = static_cast<const __nv_bfloat16*>(src) + done;
    n -= done;
  }
  if (n == 0) return;
  const unsigned grid = grid_for(n, 256);
  if (dd == DType::bf16 && sd == DType::f32)
    convert_kernel<<<grid, 256, 0, ctx.stream>>>(static_cast<__nv_bfloat16*>(dst), static_cast<const float*>(src), n);
  else if (dd == DType::f32 && sd == DType::bf16)
    convert_kernel<<<grid, 256, 0, ctx.stream>>>(static_cast<float*>(dst), static_cast<const __nv_bfloat16*>(src), n);
  else
    PL_CHECK(false, std::string("copy from ") + dtype_name(sd) + " to " + dtype_name(dd) + " is not supported");
  PL_CUDA_CHECK_LAUNCH("convert_kernel");
}

void scale(CudaBackend::Context& ctx, DType dtype, void* x, double alpha, int64_t n) {
  if (n == 0) return;
  const unsigned grid = grid_for(n, 256);
  if (dtype == DType::bf16)
    scale_kernel<<<grid, 256, 0, ctx.stream>>>(static_cast<__nv_bfloat16*>(x), static_cast<float>(alpha), n);
  else
    scale_kernel<<<grid, 256, 0, ctx.stream>>>(static_cast<float*>(x), static_cast<float>(alpha), n);
  PL_CUDA_CHECK_LAUNCH("scale_kernel");
}

void sum_squares(CudaBackend::Context& ctx, DType dtype, const void* x, int64_t n) {
  if (dtype == DType::bf16)
    reduce<__nv_bfloat16, true>(ctx, static_cast<const __nv_bfloat16*>(x), n);
  else
    reduce<float, true>(ctx, static_cast<const float*>(x), n);
}

int reduce_parts_per_tensor() { return kReduceBlocks; }

void sum_squares_part(CudaBackend::Context& ctx, DType dtype, const void* x, int64_t n, double* part) {
  if (dtype == DType::bf16)
    partial_sum_kernel<__nv_bfloat16, true>
        <<<kReduceBlocks, kReduceThreads, 0, ctx.stream>>>(part, static_cast<const __nv_bfloat16*>(x), n);
  else
    partial_sum_kernel<float, true><<<kReduceBlocks, kReduceThreads, 0, ctx.stream>>>(part, static_cast<const float*>(x), n);
  PL_CUDA_CHECK_LAUNCH("partial_sum_kernel");
}

void sum_parts(CudaBackend::Context& ctx, const double* part, int64_t ntensors) {
  double* per_tensor = const_cast<double*>(part) + ntensors * kReduceBlocks;
  sum_parts_kernel<<<1, kReduceThreads, 0, ctx.stream>>>(ctx.dev_result, part, per_tensor, ntensors);
  PL_CUDA_CHECK_LAUNCH("sum_parts_kernel");
}

void sum_floats(CudaBackend::Context& ctx, const float* x, int64_t n) { reduce<float, false>(ctx, x, n); }

void adamw(CudaBackend::Context& ctx, float* p, const float* g, float* m, float* v, int64_t n, const AdamWParams& hp) {
  if (n == 0) return;
  // The constants exactly as the CPU forms them: in double, then rounded once to f32.
  const double bc1 = 1.0 - std::pow(hp.beta1, static_cast<double>(hp.step));
  const double bc2 = 1.0 - std::pow(hp.beta2, static_cast<double>(hp.step));
  const auto decay = static_cast<float>(1.0 - hp.lr * hp.weight_decay), b1 = static_cast<float>(hp.beta1),
             b2 = static_cast<float>(hp.beta2), step_size = static_cast<float>(hp.lr / bc1),
             inv_sqrt_bc2 = static_cast<float>(1.0 / std::sqrt(bc2)), eps = static_cast<float>(hp.eps),
             gs = static_cast<float>(hp.grad_scale);
  const int64_t nvec = aligned16(p) && aligned16(g) && aligned16(m) && aligned16(v) ? n / 4 : 0;
  if (nvec > 0) {
    adamw_vec_kernel<<<grid_for(nvec, 256), 256, 0, ctx.stream>>>(
        reinterpret_cast<float4*>(p), reinterpret_cast<const float4*>(g), reinterpret_cast<float4*>(m),
        reinterpret_cast<float4*>(v), nvec, decay, b1, b2, step_size, inv_sqrt_bc2, eps, gs);
    PL_CUDA_CHECK_LAUNCH("adamw_vec_kernel");
  }
  const int64_t done = nvec * 4;
  if (done == n) return;
  adamw_kernel<<<grid_for(n - done, 256), 256, 0, ctx.stream>>>(p + done, g + done, m + done, v + done, n - done,
                                                                decay, b1, b2, step_size, inv_sqrt_bc2, eps, gs);
  PL_CUDA_CHECK_LAUNCH("adamw_kernel");
}

}  // namespace polyllama::cuda
