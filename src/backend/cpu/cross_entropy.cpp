#include <algorithm>
#include <cmath>

#include "kernels.hpp"

namespace polyllama::cpu {

template <typename T>
double softmax_xent(T* logits, T* loss, const int32_t* targets, int32_t ignore_index, bool want_grad,
                    double grad_scale, int64_t N, int64_t V) {
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    T* row = logits + n * V;
    const int32_t tgt = targets[n];
    if (tgt == ignore_index) {
      loss[n] = 0;
      if (want_grad) std::fill(row, row + V, T(0));
      continue;
    }
    T mx = row[0];
    for (int64_t j = 1; j < V; ++j) mx = std::max(mx, row[j]);
    const T xt = row[tgt];
    double sum = 0;  // a 32k-term sum: accumulate in double for fp32 logits
    if (want_grad) {
#pragma omp simd reduction(+ : sum)
      for (int64_t j = 0; j < V; ++j) {
        T e = std::exp(row[j] - mx);
        row[j] = e;
        sum += static_cast<double>(e);
      }
      const T s = static_cast<T>(grad_scale / sum);
#pragma omp simd
      for (int64_t j = 0; j < V; ++j) row[j] *= s;
      row[tgt] -= static_cast<T>(grad_scale);
    } else {
#pragma omp simd reduction(+ : sum)
      for (int64_t j = 0; j < V; ++j) sum += static_cast<double>(std::exp(row[j] - mx));
    }
    const double l = std::log(sum) + static_cast<double>(mx) - static_cast<double>(xt);
    loss[n] = static_cast<T>(l);
  }
  double total = 0;  // in row order: the same bits for any thread count
  for (int64_t n = 0; n < N; ++n) total += static_cast<double>(loss[n]);
  return total;
}

template double softmax_xent<float>(float*, float*, const int32_t*, int32_t, bool, double, int64_t, int64_t);
template double softmax_xent<double>(double*, double*, const int32_t*, int32_t, bool, double, int64_t, int64_t);

}  // namespace polyllama::cpu
