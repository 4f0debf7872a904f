// The OpenBLAS loaded at run time and a checked sgemm, for `polyllama doctor` (BlasInfo in cpu_backend.hpp).
#include <cblas.h>
#include <sched.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "polyllama/backend/cpu/cpu_backend.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace polyllama {

namespace {

std::string check_sgemm() {
  constexpr int M = 48, N = 40, K = 56;  // not multiples of the kernels' block sizes: edge paths run too
  std::vector<float> a(M * K), b(K * N), c(M * N, 0.0f);
  for (int i = 0; i < M * K; ++i) a[static_cast<size_t>(i)] = static_cast<float>(i % 7 - 3);
  for (int i = 0; i < K * N; ++i) b[static_cast<size_t>(i)] = static_cast<float>(i % 5 - 2);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1.0f, a.data(), K, b.data(), N, 0.0f, c.data(), N);
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j) {
      double want = 0;  // small integers: every partial sum is exact in fp32
      for (int k = 0; k < K; ++k) want += a[static_cast<size_t>(i * K + k)] * b[static_cast<size_t>(k * N + j)];
      const float got = c[static_cast<size_t>(i * N + j)];
      if (got != static_cast<float>(want))
        return "sgemm gave " + std::to_string(got) + " at (" + std::to_string(i) + ", " + std::to_string(j) +
               "), expected " + std::to_string(want);
    }
  return "";
}

}  // namespace

BlasInfo blas_info() {
  BlasInfo info;
  info.config = openblas_get_config();
  info.core = openblas_get_corename();
  switch (openblas_get_parallel()) {
    case 0:
      info.threading = "none";
      break;
    case 1:
      info.threading = "pthreads";
      break;
    case 2:
      info.threading = "OpenMP";
      break;
    default:
      info.threading = "unknown";
  }
  info.threads = openblas_get_num_threads();
#ifdef _OPENMP
  info.omp_threads = omp_get_max_threads();
#endif
  cpu_set_t set;
  CPU_ZERO(&set);
  info.cpus = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 1;
  info.overridden = std::getenv("POLYLLAMA_BLAS_REEXEC") != nullptr;
  info.sgemm_check = check_sgemm();
  return info;
}

}  // namespace polyllama
