#pragma once
// RoPE launcher (rotate-half, Hugging Face LLaMA). x (B, T, H, D) in `dtype`, in place; cos, sin (max_pos, D/2)
// f32; positions (B, T) device memory or nullptr (pos = t). inverse: the transposed rotation (the backward).
#include <cstdint>

#include "context.hpp"

namespace polyllama::cuda {

void rope(CudaBackend::Context& ctx, DType dtype, void* x, const float* cos, const float* sin, int64_t B, int64_t T,
          int64_t H, int64_t D, const int32_t* positions, bool inverse);

}  // namespace polyllama::cuda
