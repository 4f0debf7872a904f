#include <algorithm>
#include <cmath>

#include "kernels.hpp"

namespace polyllama::cpu {

template <typename T>
void rmsnorm_forward(T* y, T* rstd, const T* x, const T* w, int64_t N, int64_t C, double eps) {
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    const T* xr = x + n * C;
    T* yr = y + n * C;
    T ss = 0;
#pragma omp simd reduction(+ : ss)
    for (int64_t c = 0; c < C; ++c) ss += xr[c] * xr[c];
    T r = T(1) / std::sqrt(ss / static_cast<T>(C) + static_cast<T>(eps));
    rstd[n] = r;
#pragma omp simd
    for (int64_t c = 0; c < C; ++c) yr[c] = xr[c] * r * w[c];
  }
}

// y_c = x_c r w_c with r = (mean(x^2) + eps)^-1/2 gives
// dx_c = r w_c dy_c - x_c r^3 / C * sum_j dy_j w_j x_j and dw_c = sum_n dy_nc x_nc r_n.
template <typename T>
void rmsnorm_backward(T* dx, T* dw, const T* dy, const T* x, const T* w, const T* rstd, int64_t N, int64_t C) {
#pragma omp parallel
  {
#pragma omp for schedule(static) nowait
    for (int64_t n = 0; n < N; ++n) {
      const T* xr = x + n * C;
      const T* gr = dy + n * C;
      T* dxr = dx + n * C;
      T r = rstd[n];
      T dot = 0;
#pragma omp simd reduction(+ : dot)
      for (int64_t c = 0; c < C; ++c) dot += gr[c] * w[c] * xr[c];
      T k = dot * r * r * r / static_cast<T>(C);
#pragma omp simd
      for (int64_t c = 0; c < C; ++c) dxr[c] += r * w[c] * gr[c] - k * xr[c];
    }
    // Column blocks split across threads, rows summed in order inside each block: contiguous reads, and the
    // result does not depend on the thread count.
    constexpr int64_t kCols = 64;
#pragma omp for schedule(static)
    for (int64_t c0 = 0; c0 < C; c0 += kCols) {
      const int64_t nc = std::min(kCols, C - c0);
      T acc[kCols] = {};
      for (int64_t n = 0; n < N; ++n) {
        const T* gr = dy + n * C + c0;
        const T* xr = x + n * C + c0;
        const T r = rstd[n];
#pragma omp simd
        for (int64_t c = 0; c < nc; ++c) acc[c] += gr[c] * xr[c] * r;
      }
      for (int64_t c = 0; c < nc; ++c) dw[c0 + c] += acc[c];
    }
  }
}

template void rmsnorm_forward<float>(float*, float*, const float*, const float*, int64_t, int64_t, double);
template void rmsnorm_forward<double>(double*, double*, const double*, const double*, int64_t, int64_t, double);
template void rmsnorm_backward<float>(float*, float*, const float*, const float*, const float*, const float*, int64_t,
                                      int64_t);
template void rmsnorm_backward<double>(double*, double*, const double*, const double*, const double*, const double*,
                                       int64_t, int64_t);

}  // namespace polyllama::cpu
