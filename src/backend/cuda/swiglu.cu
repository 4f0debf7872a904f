#include "device_util.cuh"
#include "swiglu.cuh"

namespace polyllama::cuda {

namespace {

// exp's argument is capped as on the CPU (swiglu.cpp): sigmoid of a very negative g is then ~1e-35, i.e. 0.
__device__ __forceinline__ float sigmoid(float g) { return 1.f / (1.f + expf(fminf(-g, 80.f))); }

template <typename T> __global__ void swiglu_forward_kernel(T* out, const T* gate, const T* up, int64_t n) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float g = to_f32(gate[i]);
    out[i] = from_f32<T>(g * sigmoid(g) * to_f32(up[i]));
  }
}

template <typename T>
__global__ void swiglu_backward_kernel(T* dgate, T* dup, const T* dout, const T* gate, const T* up, int64_t n) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float g = to_f32(gate[i]), s = sigmoid(g), d = to_f32(dout[i]);
    const float u = to_f32(up[i]);
    dup[i] = from_f32<T>(d * g * s);
    dgate[i] = from_f32<T>(d * u * s * (1.f + g * (1.f - s)));
  }
}

}  // namespace

void swiglu_forward(CudaBackend::Context& ctx, DType dtype, void* out, const void* gate, const void* up, int64_t n) {
  if (n == 0) return;
  const unsigned grid = grid_for(n, 256);
  if (dtype == DType::bf16)
    swiglu_forward_kernel<<<grid, 256, 0, ctx.stream>>>(static_cast<__nv_bfloat16*>(out),
                                                        static_cast<const __nv_bfloat16*>(gate),
                                                        static_cast<const __nv_bfloat16*>(up), n);
  else
    swiglu_forward_kernel<<<grid, 256, 0, ctx.stream>>>(static_cast<float*>(out), static_cast<const float*>(gate),
                                                        static_cast<const float*>(up), n);
  PL_CUDA_CHECK_LAUNCH("swiglu_forward_kernel");
}

void swiglu_backward(CudaBackend::Context& ctx, DType dtype, void* dgate, void* dup, const void* dout,
                     const void* gate, const void* up, int64_t n) {
  if (n == 0) return;
  const unsigned grid = grid_for(n, 256);
  if (dtype == DType::bf16)
    swiglu_backward_kernel<<<grid, 256, 0, ctx.stream>>>(
        static_cast<__nv_bfloat16*>(dgate), static_cast<__nv_bfloat16*>(dup), static_cast<const __nv_bfloat16*>(dout),
        static_cast<const __nv_bfloat16*>(gate), static_cast<const __nv_bfloat16*>(up), n);
  else
    swiglu_backward_kernel<<<grid, 256, 0, ctx.stream>>>(static_cast<float*>(dgate), static_cast<float*>(dup),
                                                         static_cast<const float*>(dout),
                                                         static_cast<const float*>(gate),
                                                         static_cast<const float*>(up), n);
  PL_CUDA_CHECK_LAUNCH("swiglu_backward_kernel");
}

}  // namespace polyllama::cuda
