#pragma once
// Pieces the attention kernels share: the checked-call macros, the problem geometry as the kernels see it, and
// bf16/f32 conversions. File-internal to the attention_*.cu files (the launchers' contract is attention.cuh).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "polyllama/core/error.hpp"

// Every CUDA call and every launch goes through these: the message names the expression, file and line.
#define PL_ATTN_CUDA_CHECK(expr)                                                                         \
  do {                                                                                                   \
    const cudaError_t pl_attn_err_ = (expr);                                                             \
    if (pl_attn_err_ != cudaSuccess)                                                                     \
      ::polyllama::fail_runtime(std::string("CUDA call failed: " #expr ": ") + cudaGetErrorName(pl_attn_err_) + \
                                    " (" + cudaGetErrorString(pl_attn_err_) + ")",                       \
                                __FILE__, __LINE__);                                                     \
  } while (0)
// After a <<<...>>> launch: catches bad configurations (too much shared memory, grid too large) at once.
#define PL_ATTN_LAUNCH_CHECK(kernel_name) PL_ATTN_CUDA_CHECK(cudaPeekAtLastError())

namespace polyllama::cuda::attn {

// The geometry every kernel reads (AttnArgs without the pointers). Query t of row b sits at key position
// kv_len - Tq + t and sees keys [kv_start[b * Tq + t], kv_len - Tq + t].
struct Geo {
  int64_t B, Tq, Tk, H, KV, D, kv_len;
  const int32_t* kv_start;  // (B, Tq) device memory or nullptr
  float scale;

  __device__ __forceinline__ int64_t lo(int64_t b, int64_t t) const { return kv_start ? kv_start[b * Tq + t] : 0; }
  __device__ __forceinline__ int64_t hi(int64_t t) const { return kv_len - Tq + t; }
  // Offsets of (b, t, head) rows: q/out/dout/dq (B, Tq, H, D), k/v/dk/dv (B, Tk, KV, D), lse/delta (B, H, Tq).
  __device__ __forceinline__ int64_t qrow(int64_t b, int64_t t, int64_t h) const { return ((b * Tq + t) * H + h) * D; }
  __device__ __forceinline__ int64_t krow(int64_t b, int64_t j, int64_t g) const {
    return ((b * Tk + j) * KV + g) * D;
  }
  __device__ __forceinline__ int64_t stat(int64_t b, int64_t h, int64_t t) const { return (b * H + h) * Tq + t; }
};

__device__ __forceinline__ float to_f(float x) { return x; }
__device__ __forceinline__ float to_f(__nv_bfloat16 x) { return __bfloat162float(x); }
template <typename T> __device__ __forceinline__ T from_f(float x);
template <> __device__ __forceinline__ float from_f<float>(float x) { return x; }
template <> __device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float x) { return __float2bfloat16(x); }

}  // namespace polyllama::cuda::attn
