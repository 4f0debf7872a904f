#pragma once
// The plain attention kernels: one block per query (forward, dq) or per key (dk, dv), fp32 arithmetic, no
// tensor cores. Any head dim, bf16 and f32. They are the f32 path, the fallback for head dims the flash
// kernels do not instantiate, and the yardstick the benchmark compares those against.
#include "attention_common.cuh"

namespace polyllama::cuda::attn {

// out, lse as attention_forward. T = float or __nv_bfloat16.
template <typename T>
void simple_forward(cudaStream_t stream, const Geo& g, const T* q, const T* k, const T* v, T* out, float* lse);

// dq, dk, dv overwritten; delta: (B, H, Tq) floats of scratch.
template <typename T>
void simple_backward(cudaStream_t stream, const Geo& g, const T* q, const T* k, const T* v, const T* out,
                     const float* lse, const T* dout, T* dq, T* dk, T* dv, float* delta);

// delta[b, h, t] = dot(dout, out) of that query row, in fp32 (shared with the flash backward).
template <typename T>
void attention_delta(cudaStream_t stream, const Geo& g, const T* out, const T* dout, float* delta);

}  // namespace polyllama::cuda::attn
