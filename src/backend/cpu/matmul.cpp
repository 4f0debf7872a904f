#include <cblas.h>

#include <algorithm>
#include <vector>

#include "kernels.hpp"
#include "polyllama/backend/cpu/cpu_backend.hpp"
#include "polyllama/core/log.hpp"

namespace polyllama::cpu {

namespace {
CBLAS_TRANSPOSE tr(bool t) { return t ? CblasTrans : CblasNoTrans; }
blasint bi(int64_t v) { return static_cast<blasint>(v); }
}  // namespace

template <>
void gemm<float>(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
                 const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  // One row (a decode step of one sequence): OpenBLAS 0.3.21's sgemm packs the whole of B first, which for a
  // weight matrix costs more than the product; sgemv streams B once (3x the decode speed of a 56M model at
  // batch 1 on one thread).
  if (M == 1 && N > 1 && K > 1) {
    cblas_sgemv(CblasRowMajor, tb ? CblasNoTrans : CblasTrans, tb ? bi(N) : bi(K), tb ? bi(K) : bi(N), alpha, B,
                bi(ldb), A, ta ? bi(lda) : 1, beta, C, 1);
    return;
  }
  cblas_sgemm(CblasRowMajor, tr(ta), tr(tb), bi(M), bi(N), bi(K), alpha, A, bi(lda), B, bi(ldb), beta, C, bi(ldc));
}

template <>
void gemm<double>(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const double* A, int64_t lda,
                  const double* B, int64_t ldb, double beta, double* C, int64_t ldc) {
  cblas_dgemm(CblasRowMajor, tr(ta), tr(tb), bi(M), bi(N), bi(K), alpha, A, bi(lda), B, bi(ldb), beta, C, bi(ldc));
}

}  // namespace polyllama::cpu

namespace polyllama {

double measure_sgemm_gflops(int64_t n, int reps) {
  std::vector<float> a(static_cast<size_t>(n * n), 0.5f), b(a), c(a);
  double best = 1e30;
  for (int r = 0; r < reps + 1; ++r) {  // the first run warms caches and OpenBLAS's thread pool
    double t0 = now_seconds();
    cpu::gemm<float>(false, true, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data(), n);
    double dt = now_seconds() - t0;
    if (r > 0) best = std::min(best, dt);
  }
  return 2.0 * static_cast<double>(n) * static_cast<double>(n) * static_cast<double>(n) / best / 1e9;
}

}  // namespace polyllama
