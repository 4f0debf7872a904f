#include <algorithm>

#include "kernels.hpp"

namespace polyllama::cpu {

template <typename T> void embedding_forward(T* out, const T* table, const int32_t* ids, int64_t N, int64_t C) {
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) std::copy_n(table + static_cast<int64_t>(ids[n]) * C, C, out + n * C);
}

// Threads own disjoint column ranges and visit tokens in order: no atomics, and the sum for a repeated token
// is formed in the same order whatever the thread count.
template <typename T> void embedding_backward(T* dtable, const T* dout, const int32_t* ids, int64_t N, int64_t C) {
  constexpr int64_t kCols = 16;
  const int64_t nblk = (C + kCols - 1) / kCols;
#pragma omp parallel for schedule(static)
  for (int64_t blk = 0; blk < nblk; ++blk) {
    const int64_t c0 = blk * kCols, c1 = std::min(C, c0 + kCols);
    for (int64_t n = 0; n < N; ++n) {
      T* row = dtable + static_cast<int64_t>(ids[n]) * C;
      const T* g = dout + n * C;
      for (int64_t c = c0; c < c1; ++c) row[c] += g[c];
    }
  }
}

template void embedding_forward<float>(float*, const float*, const int32_t*, int64_t, int64_t);
template void embedding_forward<double>(double*, const double*, const int32_t*, int64_t, int64_t);
template void embedding_backward<float>(float*, const float*, const int32_t*, int64_t, int64_t);
template void embedding_backward<double>(double*, const double*, const int32_t*, int64_t, int64_t);

}  // namespace polyllama::cpu
