#include <algorithm>
#include <cmath>

#include "kernels.hpp"

namespace polyllama::cpu {

// out = silu(g) * u with silu(g) = g * sigmoid(g);
// d/dg silu(g) = sigmoid(g) * (1 + g * (1 - sigmoid(g))).
// exp's argument is capped below the type's overflow: under -ffast-math the reciprocal may be computed as an
// approximation plus a Newton step, which turns 1/inf into NaN. At the cap sigmoid is ~1e-35 (f32), i.e. 0.

namespace {
template <typename T> constexpr T kExpCap = T(80);  // exp(80) = 5.5e34 < FLT_MAX
template <> constexpr double kExpCap<double> = 700.0;  // exp(700) = 1e304 < DBL_MAX

template <typename T> inline T sigmoid(T g) { return T(1) / (T(1) + std::exp(std::min(-g, kExpCap<T>))); }
}  // namespace
template <typename T> void swiglu_forward(T* out, const T* gate, const T* up, int64_t n) {
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    T g = gate[i];
    T s = sigmoid(g);
    out[i] = g * s * up[i];
  }
}

template <typename T> void swiglu_backward(T* dgate, T* dup, const T* dout, const T* gate, const T* up, int64_t n) {
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    T g = gate[i];
    T s = sigmoid(g);
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
