#include "device_util.cuh"
#include "rope.cuh"

namespace polyllama::cuda {

namespace {

// One block per token row (b, t); its threads cover the row's H * half rotated pairs. The position and the
// cos/sin rows are per block, and the index math is 32-bit: the former one-thread-per-pair grid spent more time in
// 64-bit divisions (idx % half, / H) than in memory traffic. Per-element arithmetic is unchanged (bit-identical).
template <typename T>
__global__ void rope_row_kernel(T* x, const float* cos, const float* sin, int Tn, int H, int half,
                                const int32_t* positions, float sgn) {
  const int64_t bt = blockIdx.x;
  const int64_t pos = positions ? positions[bt] : bt % Tn;
  const float *cr = cos + pos * half, *sr = sin + pos * half;
  T* row = x + bt * H * 2 * half;
  const int pairs = H * half;
  for (int j = threadIdx.x; j < pairs; j += blockDim.x) {
    const int h = j / half, i = j - h * half;
    const float c = cr[i], s = sgn * sr[i];
    T* v = row + h * 2 * half;
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
  const int64_t rows = B * T;
  PL_CHECK(rows <= 0x7fffffff && H * D <= 0x7fffffff && T <= 0x7fffffff, "rope: shape too large for one grid");
  const auto h = static_cast<int>(H), hf = static_cast<int>(half), tn = static_cast<int>(T);
  const int threads = H * half >= 256 ? 256 : 128;
  const auto grid = static_cast<unsigned>(rows);
  if (dtype == DType::bf16)
    rope_row_kernel<<<grid, threads, 0, ctx.stream>>>(static_cast<__nv_bfloat16*>(x), cos, sin, tn, h, hf, positions,
                                                      sgn);
  else
    rope_row_kernel<<<grid, threads, 0, ctx.stream>>>(static_cast<float*>(x), cos, sin, tn, h, hf, positions, sgn);
  PL_CUDA_CHECK_LAUNCH("rope_row_kernel");
}

}  // namespace polyllama::cuda
