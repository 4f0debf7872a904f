#pragma once
// Elementwise launchers: dtype conversion (f32 <-> bf16), scaling, AdamW, and the deterministic reductions
// (sum of squares, loss totals). Reductions use a fixed grid and a fixed summation tree: the same bits on
// every run and every GPU, which exact resume relies on.
#include <cstdint>

#include "context.hpp"

namespace polyllama::cuda {

// dst = src converted (round to nearest even into bf16); same-dtype copies are cudaMemcpyAsync.
void convert(CudaBackend::Context& ctx, void* dst, DType dst_dtype, const void* src, DType src_dtype, int64_t n);
void scale(CudaBackend::Context& ctx, DType dtype, void* x, double alpha, int64_t n);
// Sum of x^2 (f32 or bf16 x), accumulated in double, into *ctx.dev_result.
void sum_squares(CudaBackend::Context& ctx, DType dtype, const void* x, int64_t n);
// Sums of squares of several tensors with one result: stage 1 of each into part + 256 * i (256 doubles per
// tensor), then sum_parts() adds each tensor's partials in order and the tensors' sums in order.
void sum_squares_part(CudaBackend::Context& ctx, DType dtype, const void* x, int64_t n, double* part);
void sum_parts(CudaBackend::Context& ctx, const double* part, int64_t ntensors);
int reduce_parts_per_tensor();
// Sum of n floats, accumulated in double, into *ctx.dev_result.
void sum_floats(CudaBackend::Context& ctx, const float* x, int64_t n);
// PyTorch's AdamW arithmetic (the CPU's, adamw.cpp) on f32 parameters, gradients and moments.
void adamw(CudaBackend::Context& ctx, float* p, const float* g, float* m, float* v, int64_t n, const AdamWParams& hp);

}  // namespace polyllama::cuda
