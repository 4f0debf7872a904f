#include "matmul.hpp"

#include <string>

namespace polyllama::cuda {

namespace {

cudaDataType_t lt_type(DType d) { return d == DType::bf16 ? CUDA_R_16BF : CUDA_R_32F; }

// The largest power of two (up to 256) dividing the address: cuBLASLt's heuristic must know it.
int alignment(const void* p) {
  const auto a = reinterpret_cast<uintptr_t>(p);
  int al = 256;
  while (al > 1 && a % static_cast<uintptr_t>(al) != 0) al /= 2;
  return al;
}

// Row-major C (M, N) = op(A) op(B) is column-major C^T (N, M) = op(B)^T op(A)^T: cuBLASLt's first operand is b's
// memory, its second a's, with the transposes carried over.
LtPlan make_plan(CudaBackend::Context& ctx, const GemmArgs& g, int al_a, int al_b, int al_c) {
  LtPlan p;
  const cublasComputeType_t compute = CUBLAS_COMPUTE_32F;  // never TF32: f32 inputs get true fp32 arithmetic
  PL_CUBLAS_CHECK(cublasLtMatmulDescCreate(&p.op, compute, CUDA_R_32F));
  const cublasOperation_t op_first = g.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_second = g.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  PL_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSA, &op_first, sizeof op_first));
  PL_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSB, &op_second, sizeof op_second));
  // b's memory: row-major (K, N) = column-major (N, K), ld N; transposed: row-major (N, K) = column-major (K, N).
  const auto u = [](int64_t v) { return static_cast<uint64_t>(v); };
  if (g.trans_b)
    PL_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.a, lt_type(g.ab_dtype), u(g.K), u(g.N), g.K));
  else
    PL_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.a, lt_type(g.ab_dtype), u(g.N), u(g.K), g.N));
  if (g.trans_a)
    PL_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.b, lt_type(g.ab_dtype), u(g.M), u(g.K), g.M));
  else
    PL_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.b, lt_type(g.ab_dtype), u(g.K), u(g.M), g.K));
  PL_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.c, lt_type(g.c_dtype), u(g.N), u(g.M), g.N));

  cublasLtMatmulPreference_t pref = nullptr;
  PL_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  const uint64_t ws = ctx.lt_workspace_bytes;
  PL_CUBLAS_CHECK(
      cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
  const uint32_t a1 = static_cast<uint32_t>(al_b), a2 = static_cast<uint32_t>(al_a), a3 = static_cast<uint32_t>(al_c);
  PL_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &a1, sizeof a1));
  PL_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &a2, sizeof a2));
  PL_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &a3, sizeof a3));
  PL_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &a3, sizeof a3));
  cublasLtMatmulHeuristicResult_t res{};
  int found = 0;
  const cublasStatus_t st =
      cublasLtMatmulAlgoGetHeuristic(ctx.lt, p.op, p.a, p.b, p.c, p.c, pref, 1, &res, &found);
  cublasLtMatmulPreferenceDestroy(pref);
  if (st != CUBLAS_STATUS_SUCCESS || found == 0)
    fail_runtime("cuBLASLt has no algorithm for " + std::string(dtype_name(g.ab_dtype)) + " -> " +
                     dtype_name(g.c_dtype) + " GEMM M=" + std::to_string(g.M) + " N=" + std::to_string(g.N) +
                     " K=" + std::to_string(g.K) + (g.trans_a ? " a^T" : "") + (g.trans_b ? " b^T" : "") +
                     " (status " + cublasLtGetStatusName(st) + ")",
                 __FILE__, __LINE__);
  p.algo = res.algo;
  return p;
}

}  // namespace

void gemm(CudaBackend::Context& ctx, const GemmArgs& g) {
  if (g.M == 0 || g.N == 0) return;
  const int al_a = alignment(g.a), al_b = alignment(g.b), al_c = alignment(g.c);
  const LtKey key{g.M, g.N, g.K, g.trans_a, g.trans_b, static_cast<int>(g.ab_dtype), static_cast<int>(g.c_dtype),
                  al_a, al_b, al_c};
  auto it = ctx.plans.find(key);
  if (it == ctx.plans.end()) it = ctx.plans.emplace(key, make_plan(ctx, g, al_a, al_b, al_c)).first;
  const LtPlan& p = it->second;
  const float alpha = static_cast<float>(g.alpha), beta = static_cast<float>(g.beta);
  PL_CUBLAS_CHECK(cublasLtMatmul(ctx.lt, p.op, &alpha, g.b, p.a, g.a, p.b, &beta, g.c, p.c, g.c, p.c, &p.algo,
                                 ctx.lt_workspace, ctx.lt_workspace_bytes, ctx.stream));
}

void destroy_plans(CudaBackend::Context& ctx) {
  for (auto& [key, p] : ctx.plans) {
    cublasLtMatrixLayoutDestroy(p.a);
    cublasLtMatrixLayoutDestroy(p.b);
    cublasLtMatrixLayoutDestroy(p.c);
    cublasLtMatmulDescDestroy(p.op);
  }
  ctx.plans.clear();
}

}  // namespace polyllama::cuda
