#pragma once
// Every CUDA runtime and cuBLASLt call is checked: the expression, file and line (and the library's own name
// of the error) go into a polyllama::Error (exit code 2), caught only by cli/main.
#include <cublasLt.h>
#include <cuda_runtime.h>

#include <string>

#include "polyllama/core/error.hpp"

namespace polyllama::cuda {

[[noreturn]] inline void fail_cuda(cudaError_t e, const char* expr, const char* file, int line) {
  fail_runtime(std::string("CUDA error ") + std::to_string(static_cast<int>(e)) + " (" + cudaGetErrorName(e) +
                   ": " + cudaGetErrorString(e) + ") in " + expr,
               file, line);
}
[[noreturn]] inline void fail_cublas(cublasStatus_t s, const char* expr, const char* file, int line) {
  fail_runtime(std::string("cuBLASLt error ") + std::to_string(static_cast<int>(s)) + " (" +
                   cublasLtGetStatusName(s) + ": " + cublasLtGetStatusString(s) + ") in " + expr,
               file, line);
}

}  // namespace polyllama::cuda

#define PL_CUDA_CHECK(expr)                                                                 \
  do {                                                                                      \
    const cudaError_t pl_err_ = (expr);                                                     \
    if (pl_err_ != cudaSuccess) ::polyllama::cuda::fail_cuda(pl_err_, #expr, __FILE__, __LINE__); \
  } while (0)

#define PL_CUBLAS_CHECK(expr)                                                                          \
  do {                                                                                                 \
    const cublasStatus_t pl_st_ = (expr);                                                              \
    if (pl_st_ != CUBLAS_STATUS_SUCCESS) ::polyllama::cuda::fail_cublas(pl_st_, #expr, __FILE__, __LINE__); \
  } while (0)

// After a kernel launch: configuration errors surface here, at the launcher that caused them.
#define PL_CUDA_CHECK_LAUNCH(kernel_name)                                                                 \
  do {                                                                                                     \
    const cudaError_t pl_err_ = cudaGetLastError();                                                        \
    if (pl_err_ != cudaSuccess) ::polyllama::cuda::fail_cuda(pl_err_, "launch of " kernel_name, __FILE__, __LINE__); \
  } while (0)
