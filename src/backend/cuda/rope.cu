#include "device_util.cuh"
#include "rope.cuh"

namespace polyllama::cuda {

namespace {

// One thread per rotated pair (b, t, h, i), i < D/2.
template <typename T>
__global__ void rope_kernel(T* x, const float* cos, const float* sin, int64_t total, int64_t Tn, int64_t H,
                            int64_t half, const int32_t* positions, float sgn) {
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = idx % half, bth = idx / half, bt = bth / H;
    const int64_t pos = positions ? positions[bt] : bt % Tn;
    const float c = cos[pos * half + i], s = sgn * sin[pos * half + i];
    T* v = x + bth * 2 * half;
    const float a = to_f32(v[i]), b = to_f32(v[i + half]);
    v[i] = from_f32<T>(a * c - b * s);
    v[i + half] = from_f32<T>(b * c + a * s);
  }
}

}  // namespace

void rope(CudaBackend::Context& ctx, DType dtype, void* x, const float* cos, const float* sin, int64_t B, int64_t T,
          int64_t H, int64_t D, const int32_t* positions, bool inverse) {
  const int64_t half = D / 2, total = B * T * H * half;
  if (total == 0) return;
  const float sgn = inverse ? -1.f : 1.f;
  const unsigned grid = grid_for(total, 256);
  if (dtype == DType::bf16)
    rope_kernel<<<grid, 256, 0, ctx.stream>>>(static_cast<__nv_bfloat16*>(x), cos, sin, total, T, H, half, positions,
                                              sgn);
  else
    rope_kernel<<<grid, 256, 0, ctx.stream>>>(static_cast<float*>(x), cos, sin, total, T, H, half, positions, sgn);
  PL_CUDA_CHECK_LAUNCH("rope_kernel");
}

}  // namespace polyllama::cuda
