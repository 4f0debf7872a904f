#include <cmath>

#include "kernels.hpp"

namespace polyllama::cpu {

// PyTorch's AdamW arithmetic, so a run can be compared update for update (g = grad_scale * grad):
// p *= 1 - lr wd;  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
// p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps).
template <typename T> void adamw(T* p, const T* g, T* m, T* v, int64_t n, const AdamWParams& hp) {
  const double bc1 = 1.0 - std::pow(hp.beta1, static_cast<double>(hp.step));
  const double bc2 = 1.0 - std::pow(hp.beta2, static_cast<double>(hp.step));
  const T decay = static_cast<T>(1.0 - hp.lr * hp.weight_decay);
  const T b1 = static_cast<T>(hp.beta1), b2 = static_cast<T>(hp.beta2);
  const T step_size = static_cast<T>(hp.lr / bc1);
  const T inv_sqrt_bc2 = static_cast<T>(1.0 / std::sqrt(bc2));
  const T eps = static_cast<T>(hp.eps);
  const T gs = static_cast<T>(hp.grad_scale);
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    T gi = gs * g[i];
    T mi = b1 * m[i] + (T(1) - b1) * gi;
    T vi = b2 * v[i] + (T(1) - b2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] = p[i] * decay - step_size * mi / (std::sqrt(vi) * inv_sqrt_bc2 + eps);
  }
}

template void adamw<float>(float*, const float*, float*, float*, int64_t, const AdamWParams&);
template void adamw<double>(double*, const double*, double*, double*, int64_t, const AdamWParams&);

}  // namespace polyllama::cpu
