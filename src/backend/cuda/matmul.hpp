#pragma once
// Row-major GEMMs through cuBLASLt with cached plans. a, b in one dtype (f32: true fp32 arithmetic, the reference
// path; bf16: tensor cores with fp32 accumulation); c in that dtype or f32 (weight gradients accumulate in f32).
#include <cstdint>

#include "context.hpp"

namespace polyllama::cuda {

struct GemmArgs {
  const void* a;  // (M, K), or stored (K, M) with trans_a
  const void* b;  // (K, N), or stored (N, K) with trans_b
  void* c;        // (M, N)
  int64_t M, N, K;
  bool trans_a, trans_b;
  DType ab_dtype, c_dtype;
  double alpha, beta;
};

void gemm(CudaBackend::Context& ctx, const GemmArgs& g);
void destroy_plans(CudaBackend::Context& ctx);

}  // namespace polyllama::cuda
