#pragma once
// Flash-attention-2 style bf16 kernels on tensor cores (mma.sync m16n8k16, fp32 accumulation) for the head dims
// flash_supports() lists; the launcher sends every other case to the plain kernels.
#include "attention_common.cuh"

namespace polyllama::cuda::attn {

bool flash_supports(int64_t D);

// rows_per_warp: 16 (Q in registers) or 32 (each K/V fragment feeds two row tiles); 0 picks the default (32).
void flash_forward(cudaStream_t stream, const Geo& g, const __nv_bfloat16* q, const __nv_bfloat16* k,
                   const __nv_bfloat16* v, __nv_bfloat16* out, float* lse, int rows_per_warp = 0);

// delta: (B, H, Tq) floats, dq_acc: (B, Tq, H, D) floats of workspace.
void flash_backward(cudaStream_t stream, const Geo& g, const __nv_bfloat16* q, const __nv_bfloat16* k,
                    const __nv_bfloat16* v, const __nv_bfloat16* out, const float* lse, const __nv_bfloat16* dout,
                    __nv_bfloat16* dq, __nv_bfloat16* dk, __nv_bfloat16* dv, float* delta, float* dq_acc);

}  // namespace polyllama::cuda::attn
