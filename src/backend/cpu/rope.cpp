#include "kernels.hpp"

namespace polyllama::cpu {

// Rotate-half: for i < D/2 the pair (x_i, x_{i+D/2}) turns by angle a_i(pos):
//   y_i = x_i cos - x_{i+D/2} sin,  y_{i+D/2} = x_{i+D/2} cos + x_i sin.
// The backward is the transposed rotation (sin -> -sin), so one kernel serves both.
template <typename T>
void rope(T* x, const T* cos, const T* sin, int64_t B, int64_t Tn, int64_t H, int64_t D, const int32_t* positions,
          bool inverse) {
  const int64_t half = D / 2;
  const T sgn = inverse ? T(-1) : T(1);
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t t = 0; t < Tn; ++t) {
      const int64_t pos = positions ? positions[b * Tn + t] : t;
      const T* cr = cos + pos * half;
      const T* sr = sin + pos * half;
      for (int64_t h = 0; h < H; ++h) {
        T* v = x + ((b * Tn + t) * H + h) * D;
#pragma omp simd
        for (int64_t i = 0; i < half; ++i) {
          T a = v[i], c = v[i + half], s = sgn * sr[i];
          v[i] = a * cr[i] - c * s;
          v[i + half] = c * cr[i] + a * s;
        }
      }
    }
  }
}

template void rope<float>(float*, const float*, const float*, int64_t, int64_t, int64_t, int64_t, const int32_t*, bool);
template void rope<double>(double*, const double*, const double*, int64_t, int64_t, int64_t, int64_t, const int32_t*, bool);

}  // namespace polyllama::cpu
