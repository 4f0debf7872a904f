// Micro benchmark of the CUDA attention kernels: causal bf16, B=4, H=16, KV=16 and KV=4, T=2048, D=128 (and
// D=64), forward and backward through the launchers (the flash kernels) and through the plain kernels, and, where
// cuDNN was found, through cuDNN's fused attention (cudnn_sdpa.hpp; `--attention cudnn`) on the same inputs.
// FLOPs counted as in FlashAttention: forward 4 B H T^2 D / 2 (causal), backward 2.5x that.
// Timed with CUDA events after warm-up; the median of --runs runs (default 20; --simple-runs for the plain
// kernels, default 10). Usage: cuda_attention_bench [--runs N] [--simple-runs N] [--T N]
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "attention.cuh"
#include "attention_flash.cuh"
#include "attention_simple.cuh"
#ifdef POLYLLAMA_HAVE_CUDNN
#include "cudnn_sdpa.hpp"
#endif

using namespace polyllama;
using namespace polyllama::cuda;

namespace {

#ifdef POLYLLAMA_HAVE_CUDNN
using Cudnn = CudnnSdpa;
#else
struct Cudnn {};  // a build without cuDNN times the own kernels only
#endif

__global__ void fill_random(__nv_bfloat16* x, int64_t n, uint32_t seed) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    uint32_t h = static_cast<uint32_t>(i) * 0x9e3779b1u ^ seed;
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    h ^= h >> 16;
    x[i] = __float2bfloat16((static_cast<float>(h & 0xffffff) / 16777216.f - 0.5f) * 3.f);
  }
}

__global__ void max_abs_diff_kernel(const __nv_bfloat16* a, const __nv_bfloat16* b, size_t n, unsigned* out) {
  float m = 0.f;
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const float d = fabsf(__bfloat162float(a[i]) - __bfloat162float(b[i]));
    m = d != d ? INFINITY : fmaxf(m, d);  // NaN counts as infinitely wrong
  }
  atomicMax(out, __float_as_uint(m));  // non-negative floats order like their bit patterns
}

float max_abs_diff(const __nv_bfloat16* a, const __nv_bfloat16* b, size_t n) {
  unsigned* d = nullptr;
  PL_ATTN_CUDA_CHECK(cudaMalloc(&d, sizeof(unsigned)));
  PL_ATTN_CUDA_CHECK(cudaMemset(d, 0, sizeof(unsigned)));
  max_abs_diff_kernel<<<256, 256>>>(a, b, n, d);
  PL_ATTN_LAUNCH_CHECK(max_abs_diff_kernel);
  unsigned bits = 0;
  PL_ATTN_CUDA_CHECK(cudaMemcpy(&bits, d, sizeof(unsigned), cudaMemcpyDeviceToHost));
  PL_ATTN_CUDA_CHECK(cudaFree(d));
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

struct Buf {
  void* p = nullptr;
  explicit Buf(size_t n) { PL_ATTN_CUDA_CHECK(cudaMalloc(&p, n)); }
  ~Buf() { cudaFree(p); }
};

template <typename F> double median_ms(int runs, F&& fn) {
  cudaEvent_t e0, e1;
  PL_ATTN_CUDA_CHECK(cudaEventCreate(&e0));
  PL_ATTN_CUDA_CHECK(cudaEventCreate(&e1));
  for (int i = 0; i < 3; ++i) fn();  // warm-up
  PL_ATTN_CUDA_CHECK(cudaDeviceSynchronize());
  std::vector<float> ms;
  for (int i = 0; i < runs; ++i) {
    PL_ATTN_CUDA_CHECK(cudaEventRecord(e0));
    fn();
    PL_ATTN_CUDA_CHECK(cudaEventRecord(e1));
    PL_ATTN_CUDA_CHECK(cudaEventSynchronize(e1));
    float t = 0;
    PL_ATTN_CUDA_CHECK(cudaEventElapsedTime(&t, e0, e1));
    ms.push_back(t);
  }
  PL_ATTN_CUDA_CHECK(cudaEventDestroy(e0));
  PL_ATTN_CUDA_CHECK(cudaEventDestroy(e1));
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

void bench(int64_t B, int64_t H, int64_t KV, int64_t T, int64_t D, int runs, int simple_runs, Cudnn* cudnn) {
  const size_t nq = static_cast<size_t>(B * T * H * D), nk = static_cast<size_t>(B * T * KV * D);
  Buf q(nq * 2), k(nk * 2), v(nk * 2), o(nq * 2), d_o(nq * 2), dq(nq * 2), dk(nk * 2), dv(nk * 2),
      lse(static_cast<size_t>(B * H * T) * 4);
  fill_random<<<1024, 256>>>(static_cast<__nv_bfloat16*>(q.p), static_cast<int64_t>(nq), 1);
  fill_random<<<1024, 256>>>(static_cast<__nv_bfloat16*>(k.p), static_cast<int64_t>(nk), 2);
  fill_random<<<1024, 256>>>(static_cast<__nv_bfloat16*>(v.p), static_cast<int64_t>(nk), 3);
  fill_random<<<1024, 256>>>(static_cast<__nv_bfloat16*>(d_o.p), static_cast<int64_t>(nq), 4);
  PL_ATTN_LAUNCH_CHECK(fill_random);
  AttnArgs a;
  a.q = q.p, a.k = k.p, a.v = v.p, a.out = o.p, a.lse = static_cast<float*>(lse.p);
  a.B = B, a.Tq = T, a.Tk = T, a.H = H, a.KV = KV, a.D = D, a.kv_len = T;
  a.scale = 1.f / std::sqrt(static_cast<float>(D));
  a.dtype = DType::bf16;
  Buf ws(attention_backward_workspace_bytes(a));
  const double fwd_flop = 4.0 * B * H * T * T * D / 2, bwd_flop = 2.5 * fwd_flop;

  const double f_ms = median_ms(runs, [&] { attention_forward(nullptr, a); });
  // The other forward variant (16 rows per warp), timed and compared element by element with the launcher's.
  using bf = __nv_bfloat16;
  const attn::Geo g{B, T, T, H, KV, D, T, nullptr, a.scale};
  const auto* qb = static_cast<const bf*>(q.p);
  const auto* kb = static_cast<const bf*>(k.p);
  const auto* vb = static_cast<const bf*>(v.p);
  Buf o2(nq * 2), lse2(static_cast<size_t>(B * H * T) * 4);
  const double f32_ms = median_ms(runs, [&] {
    attn::flash_forward(nullptr, g, qb, kb, vb, static_cast<bf*>(o2.p), static_cast<float*>(lse2.p), 16);
  });
  attention_forward(nullptr, a);
  PL_ATTN_CUDA_CHECK(cudaDeviceSynchronize());
  const float diff = max_abs_diff(static_cast<const bf*>(o.p), static_cast<const bf*>(o2.p), nq);
  const double b_ms = median_ms(runs, [&] { attention_backward(nullptr, a, d_o.p, dq.p, dk.p, dv.p, ws.p); });

  const double sf_ms = median_ms(simple_runs, [&] {
    attn::simple_forward<bf>(nullptr, g, qb, kb, vb, static_cast<bf*>(o.p), static_cast<float*>(lse.p));
  });
  const double sb_ms = median_ms(simple_runs, [&] {
    attn::simple_backward<bf>(nullptr, g, qb, kb, vb, static_cast<const bf*>(o.p), static_cast<float*>(lse.p),
                              static_cast<const bf*>(d_o.p), static_cast<bf*>(dq.p), static_cast<bf*>(dk.p),
                              static_cast<bf*>(dv.p), static_cast<float*>(ws.p));
  });
  PL_ATTN_CUDA_CHECK(cudaDeviceSynchronize());
  auto tf = [](double flop, double ms) { return flop / (ms * 1e-3) / 1e12; };
  std::printf("B=%-2lld H=%-2lld KV=%-2lld T=%-5lld D=%-3lld | launcher fwd %8.3f ms %6.1f TFLOP/s  bwd %8.3f ms %6.1f "
              "TFLOP/s | plain fwd %8.2f ms %6.2f TFLOP/s  bwd %8.2f ms %6.2f TFLOP/s\n",
              static_cast<long long>(B), static_cast<long long>(H), static_cast<long long>(KV),
              static_cast<long long>(T), static_cast<long long>(D), f_ms, tf(fwd_flop, f_ms), b_ms, tf(bwd_flop, b_ms),
              sf_ms, tf(fwd_flop, sf_ms), sb_ms, tf(bwd_flop, sb_ms));
  std::printf("%47s | fwd, 16 rows per warp: %8.3f ms %6.1f TFLOP/s (max |out - launcher's out| = %.3g)\n", "",
              f32_ms, tf(fwd_flop, f32_ms), static_cast<double>(diff));
#ifdef POLYLLAMA_HAVE_CUDNN
  // cuDNN on the same inputs, into its own output and saved state; its backward reads them. The first call
  // builds the plan (inside median_ms's warm-up).
  {
    CudnnSdpa& sdpa = *cudnn;
    Buf oc(nq * 2), lsec(static_cast<size_t>(B * H * T) * 4);
    AttnArgs c = a;
    c.out = oc.p;
    c.lse = static_cast<float*>(lsec.p);
    if (!sdpa.forward(c) || !sdpa.backward(c, d_o.p, dq.p, dk.p, dv.p)) {
      std::printf("%47s | cuDNN: not run (%s)\n", "", sdpa.summary().c_str());
    } else {
      const double cf_ms = median_ms(runs, [&] { sdpa.forward(c); });
      const double cb_ms = median_ms(runs, [&] { sdpa.backward(c, d_o.p, dq.p, dk.p, dv.p); });
      attention_forward(nullptr, a);  // o held the plain kernels' output
      PL_ATTN_CUDA_CHECK(cudaDeviceSynchronize());
      const float cdiff = max_abs_diff(static_cast<const bf*>(o.p), static_cast<const bf*>(oc.p), nq);
      std::printf("%47s | cuDNN fwd %8.3f ms %6.1f TFLOP/s  bwd %8.3f ms %6.1f TFLOP/s (max |out - launcher's out| "
                  "= %.3g)\n", "", cf_ms, tf(fwd_flop, cf_ms), cb_ms, tf(bwd_flop, cb_ms), static_cast<double>(cdiff));
    }
  }
#else
  (void)cudnn;
#endif
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  int runs = 20, simple_runs = 10;
  int64_t T = 2048;
  for (int i = 1; i < argc; ++i) {
    const std::string s = argv[i];
    if (s == "--runs" && i + 1 < argc) runs = std::max(1, std::atoi(argv[++i]));
    else if (s == "--simple-runs" && i + 1 < argc) simple_runs = std::max(1, std::atoi(argv[++i]));
    else if (s == "--T" && i + 1 < argc) T = std::max(1, std::atoi(argv[++i]));
    else {
      std::fprintf(stderr, "usage: %s [--runs N] [--simple-runs N] [--T N]\n", argv[0]);
      return s == "--help" || s == "-h" ? 0 : 1;
    }
  }
  try {
    int dev = 0, n = 0;
    PL_ATTN_CUDA_CHECK(cudaGetDeviceCount(&n));
    cudaDeviceProp prop{};
    PL_ATTN_CUDA_CHECK(cudaGetDeviceProperties(&prop, dev));
    std::printf("%s (sm_%d%d), causal bf16, median of %d runs (plain kernels: %d)\n", prop.name, prop.major,
                prop.minor, runs, simple_runs);
#ifdef POLYLLAMA_HAVE_CUDNN
    Cudnn cudnn(nullptr);  // one handle and plan cache (on the default stream, as the launches here)
#else
    Cudnn cudnn;
#endif
    bench(4, 16, 16, T, 128, runs, simple_runs, &cudnn);
    bench(4, 16, 4, T, 128, runs, simple_runs, &cudnn);
    bench(4, 16, 16, T, 64, runs, simple_runs, &cudnn);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cuda_attention_bench: %s\n", e.what());
    return 2;
  }
  return 0;
}
