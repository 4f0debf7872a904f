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

// The same per-element arithmetic as the kernels above, 16 bytes per operand per iteration (bit-identical results).
template <typename T> __global__ void swiglu_forward_vec_kernel(T* out, const T* gate, const T* up, int64_t nvec) {
  using V = Vec16<T>;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < nvec;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const V g = reinterpret_cast<const V*>(gate)[i], u = reinterpret_cast<const V*>(up)[i];
    V o;
#pragma unroll
    for (int k = 0; k < V::kN; ++k) {
      const float gf = to_f32(g.v[k]);
      o.v[k] = from_f32<T>(gf * sigmoid(gf) * to_f32(u.v[k]));
    }
    reinterpret_cast<V*>(out)[i] = o;
  }
}

template <typename T>
__global__ void swiglu_backward_vec_kernel(T* dgate, T* dup, const T* dout, const T* gate, const T* up, int64_t nvec) {
  using V = Vec16<T>;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < nvec;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const V gv = reinterpret_cast<const V*>(gate)[i], uv = reinterpret_cast<const V*>(up)[i],
            dv = reinterpret_cast<const V*>(dout)[i];
    V dgv, duv;
#pragma unroll
    for (int k = 0; k < V::kN; ++k) {
      const float g = to_f32(gv.v[k]), s = sigmoid(g), d = to_f32(dv.v[k]);
      const float u = to_f32(uv.v[k]);
      duv.v[k] = from_f32<T>(d * g * s);
      dgv.v[k] = from_f32<T>(d * u * s * (1.f + g * (1.f - s)));
    }
    reinterpret_cast<V*>(dup)[i] = duv;
    reinterpret_cast<V*>(dgate)[i] = dgv;
  }
}

// Vector kernel over the aligned body, scalar kernel over the tail (< 16 bytes) or everything when misaligned.
template <typename T> void swiglu_forward_t(cudaStream_t st, T* out, const T* gate, const T* up, int64_t n) {
  constexpr int kN = Vec16<T>::kN;
  const int64_t nvec = aligned16(out) && aligned16(gate) && aligned16(up) ? n / kN : 0;
  if (nvec > 0) {
    swiglu_forward_vec_kernel<<<grid_for(nvec, 256), 256, 0, st>>>(out, gate, up, nvec);
    PL_CUDA_CHECK_LAUNCH("swiglu_forward_vec_kernel");
  }
  const int64_t done = nvec * kN;
  if (done < n) {
    swiglu_forward_kernel<<<grid_for(n - done, 256), 256, 0, st>>>(out + done, gate + done, up + done, n - done);
    PL_CUDA_CHECK_LAUNCH("swiglu_forward_kernel");
  }
}

template <typename T>
void swiglu_backward_t(cudaStream_t st, T* dgate, T* dup, const T* dout, const T* gate, const T* up, int64_t n) {
  constexpr int kN = Vec16<T>::kN;
  const bool al = aligned16(dgate) && aligned16(dup) && aligned16(dout) && aligned16(gate) && aligned16(up);
  const int64_t nvec = al ? n / kN : 0;
  if (nvec > 0) {
    swiglu_backward_vec_kernel<<<grid_for(nvec, 256), 256, 0, st>>>(dgate, dup, dout, gate, up, nvec);
    PL_CUDA_CHECK_LAUNCH("swiglu_backward_vec_kernel");
  }
  const int64_t done = nvec * kN;
  if (done < n) {
    swiglu_backward_kernel<<<grid_for(n - done, 256), 256, 0, st>>>(dgate + done, dup + done, dout + done,
                                                                     gate + done, up + done, n - done);
    PL_CUDA_CHECK_LAUNCH("swiglu_backward_kernel");
  }
}

}  // namespace

void swiglu_forward(CudaBackend::Context& ctx, DType dtype, void* out, const void* gate, const void* up, int64_t n) {
  if (n == 0) return;
  if (dtype == DType::bf16)
    swiglu_forward_t(ctx.stream, static_cast<__nv_bfloat16*>(out), static_cast<const __nv_bfloat16*>(gate),
                     static_cast<const __nv_bfloat16*>(up), n);
  else
    swiglu_forward_t(ctx.stream, static_cast<float*>(out), static_cast<const float*>(gate),
                     static_cast<const float*>(up), n);
}

void swiglu_backward(CudaBackend::Context& ctx, DType dtype, void* dgate, void* dup, const void* dout,
                     const void* gate, const void* up, int64_t n) {
  if (n == 0) return;
  if (dtype == DType::bf16)
    swiglu_backward_t(ctx.stream, static_cast<__nv_bfloat16*>(dgate), static_cast<__nv_bfloat16*>(dup),
                      static_cast<const __nv_bfloat16*>(dout), static_cast<const __nv_bfloat16*>(gate),
                      static_cast<const __nv_bfloat16*>(up), n);
  else
    swiglu_backward_t(ctx.stream, static_cast<float*>(dgate), static_cast<float*>(dup), static_cast<const float*>(dout),
                      static_cast<const float*>(gate), static_cast<const float*>(up), n);
}

}  // namespace polyllama::cuda
