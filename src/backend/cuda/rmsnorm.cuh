#pragma once
// RMSNorm launchers. x, y, dx, dy, w in `dtype` (f32 or bf16); rstd and dw always f32. Arithmetic in f32.
#include <cstdint>

#include "context.hpp"

namespace polyllama::cuda {

// y (N, C) = x * rstd * w;  rstd (N) = 1 / sqrt(mean(x^2) + eps).
void rmsnorm_forward(CudaBackend::Context& ctx, DType dtype, void* y, float* rstd, const void* x, const void* w,
                     int64_t N, int64_t C, double eps);
// dx += r w dy - x r^3 / C sum(dy w x);  dw += sum_n dy x r (rows summed in a fixed order).
void rmsnorm_backward(CudaBackend::Context& ctx, DType dtype, void* dx, float* dw, const void* dy, const void* x,
                      const void* w, const float* rstd, int64_t N, int64_t C);

}  // namespace polyllama::cuda
