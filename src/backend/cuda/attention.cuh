#pragma once
// Causal grouped-query attention on the GPU, flash-style: the (Tq, Tk) scores never exist in device memory.
// Forward saves one float per query and head (the log-sum-exp of its scaled scores); backward recomputes the
// probabilities from it. Layouts are the op table's (core/backend.hpp), row-major and contiguous:
//   q, out, dout, dq: (B, Tq, H, D)    k, v, dk, dv: (B, Tk, KV, D)    lse: (B, H, Tq) float32
// H % KV == 0 (query head h reads kv head h / (H / KV)). Only the first kv_len rows of k and v hold keys; query
// t sits at key position p(t) = kv_len - Tq + t and sees keys [kv_start[b * Tq + t], p(t)] (kv_start: device
// memory, or nullptr for 0). A query that sees no key is impossible by that contract (kv_start <= p(t)).
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "polyllama/core/tensor.hpp"

namespace polyllama::cuda {

struct AttnArgs {
  const void* q = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  void* out = nullptr;
  float* lse = nullptr;
  int64_t B = 0, Tq = 0, Tk = 0, H = 0, KV = 0, D = 0;
  int64_t kv_len = 0;                 // valid key rows, Tq <= kv_len <= Tk
  const int32_t* kv_start = nullptr;  // (B, Tq) device memory, or nullptr
  float scale = 0;                    // 1 / sqrt(D)
  DType dtype = DType::bf16;          // of q, k, v, out, dout, dq, dk, dv: bf16 (training) or f32 (reference)
};

// out = softmax(q k^T * scale, masked) v; lse saved. Checks shapes, launches, checks the launch.
void attention_forward(cudaStream_t stream, const AttnArgs& a);

// dq, dk, dv overwritten (=); dk and dv rows >= kv_len are zero. workspace holds
// attention_backward_workspace_bytes(...) bytes (e.g. fp32 accumulators, the per-query dot(dout, out)).
void attention_backward(cudaStream_t stream, const AttnArgs& a, const void* dout, void* dq, void* dk, void* dv,
                        void* workspace);
size_t attention_backward_workspace_bytes(const AttnArgs& a);

}  // namespace polyllama::cuda
