#pragma once
// Fused softmax cross-entropy over logits (N, V) in `dtype` (bf16 in training: fp32 logits never exist), one
// block per row, arithmetic in f32. loss (N) f32; targets in device memory. With want_grad the logits are
// overwritten by grad_scale * (softmax - onehot), zero rows where target == ignore_index.
#include <cstdint>

#include "context.hpp"

namespace polyllama::cuda {

void softmax_xent(CudaBackend::Context& ctx, DType dtype, void* logits, float* loss, const int32_t* targets,
                  int32_t ignore_index, bool want_grad, double grad_scale, int64_t N, int64_t V);

// The vocab-parallel halves (Backend::xent_partial / xent_finish): logits (N, Vl) hold ids [v0, v0 + Vl);
// stats (N, 2) and stats_all (parts, N, 2) f32; one block per row.
void xent_partial(CudaBackend::Context& ctx, DType dtype, const void* logits, float* stats, const int32_t* targets,
                  int64_t v0, int32_t ignore_index, int64_t N, int64_t Vl);
void xent_finish(CudaBackend::Context& ctx, DType dtype, void* logits, float* loss, const float* stats_all,
                 int64_t parts, const int32_t* targets, int64_t v0, int32_t ignore_index, bool want_grad,
                 double grad_scale, int64_t N, int64_t Vl);

}  // namespace polyllama::cuda
