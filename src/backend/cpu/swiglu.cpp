#include <cmath>

#include "kernels.hpp"

namespace polyllama::cpu {

// out = silu(g) * u with silu(g) = g * sigmoid(g);
// d/dg silu(g) = sigmoid(g) * (1 + g * (1 - sigmoid(g))).
template <typename T> void swiglu_forward(T* out, const T* gate, const T* up, int64_t n) {
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    T g = gate[i];
    T s = T(1) / (T(1) + std::exp(-g));
    out[i] = g * s * up[i];
  }
}

template <typename T> void swiglu_backward(T* dgate, T* dup, const T* dout, const T* gate, const T* up, int64_t n) {
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    T g = gate[i];
    T s = T(1) / (T(1) + std::exp(-g));
    T d = dout[i];
    dup[i] = d * g * s;
    dgate[i] = d * up[i] * s * (T(1) + g * (T(1) - s));
  }
}

template void swiglu_forward<float>(float*, const float*, const float*, int64_t);
template void swiglu_forward<double>(double*, const double*, const double*, int64_t);
template void swiglu_backward<float>(float*, float*, const float*, const float*, const float*, int64_t);
template void swiglu_backward<double>(double*, double*, const double*, const double*, const double*, int64_t);

}  // namespace polyllama::cpu
