#pragma once
// SwiGLU launchers: out = silu(gate) * up and its backward, elementwise over n values of `dtype`, in f32.
#include <cstdint>

#include "context.hpp"

namespace polyllama::cuda {

void swiglu_forward(CudaBackend::Context& ctx, DType dtype, void* out, const void* gate, const void* up, int64_t n);
// dgate = dout * up * s (1 + g (1 - s)),  dup = dout * g * s  with s = sigmoid(g).
void swiglu_backward(CudaBackend::Context& ctx, DType dtype, void* dgate, void* dup, const void* dout,
                     const void* gate, const void* up, int64_t n);

}  // namespace polyllama::cuda
