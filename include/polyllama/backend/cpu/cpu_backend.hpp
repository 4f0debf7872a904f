#pragma once
// The CPU backend: OpenBLAS (OpenMP build) for matrix products, OpenMP loops for the rest. Every op runs in
// fp32 (production) and fp64 (the reference path the gradient checks run on).
#include <string>

#include "polyllama/core/backend.hpp"

namespace polyllama {

class CpuBackend final : public Backend {
 public:
  // threads <= 0 keeps OpenMP's default (OMP_NUM_THREADS or all cores).
  explicit CpuBackend(int threads = 0);
  const char* name() const override { return "cpu"; }
  bool supports(Op op, DType dtype) const override;
  int threads() const;
  std::string description() const override;  // "cpu, 2 threads, OpenBLAS haswell"
  double measure_matmul_tflops(int64_t n, int reps) override;  // fp32 sgemm (measure_sgemm_gflops / 1000)

  void matmul(Tensor c, Tensor a, Tensor b, bool trans_a, bool trans_b, double alpha, double beta) override;
  void rmsnorm_forward(Tensor y, Tensor rstd, Tensor x, Tensor w, double eps) override;
  void rmsnorm_backward(Tensor dx, Tensor dw, Tensor dy, Tensor x, Tensor w, Tensor rstd) override;
  void rope(Tensor x, Tensor cos, Tensor sin, const int32_t* positions, bool inverse) override;
  void swiglu_forward(Tensor out, Tensor gate, Tensor up) override;
  void swiglu_backward(Tensor dgate, Tensor dup, Tensor dout, Tensor gate, Tensor up) override;
  void attention_forward(Tensor out, Tensor probs, Tensor q, Tensor k, Tensor v, const AttnSpan& span) override;
  void attention_backward(Tensor dq, Tensor dk, Tensor dv, Tensor dout, Tensor q, Tensor k, Tensor v, Tensor out,
                          Tensor probs,
                          Tensor scratch, const AttnSpan& span) override;
  int64_t attention_scratch_elems(int64_t batch, int64_t heads, int64_t seq, int64_t kv_heads = 0,
                                  int64_t head_dim = 0) const override;
  int64_t attention_saved_elems(int64_t batch, int64_t heads, int64_t tq, int64_t tk) const override {
    return batch * heads * tq * tk;
  }
  int64_t attention_decode_elems(int64_t batch, int64_t heads, int64_t tq, int64_t tk,
                                 int64_t head_dim) const override;
  void embedding_forward(Tensor out, Tensor table, const int32_t* ids) override;
  void embedding_backward(Tensor dtable, Tensor dout, const int32_t* ids) override;
  double softmax_xent(Tensor logits, Tensor loss, const int32_t* targets, int32_t ignore_index, bool want_grad,
                      double grad_scale) override;
  void xent_partial(Tensor logits, Tensor stats, const int32_t* targets, int64_t v0, int32_t ignore_index) override;
  double xent_finish(Tensor logits, Tensor loss, Tensor stats_all, const int32_t* targets, int64_t v0,
                     int32_t ignore_index, bool want_grad, double grad_scale) override;
  void adamw(Tensor param, Tensor grad, Tensor m, Tensor v, const AdamWParams& p) override;
  void copy(Tensor dst, Tensor src) override;
  void zero(Tensor x) override;
  void scale(Tensor x, double alpha) override;
  double sum_squares(Tensor x) override;
};

// OpenBLAS picks its kernels from CPUID when it is loaded; a release older than the CPU falls back to SSE-only
// ("Prescott") kernels, 4-6x slower than the CPU's AVX-512 or AVX2 ones. When that happened and the user set no
// OPENBLAS_CORETYPE, this re-executes the program once with OPENBLAS_CORETYPE naming the best kernel family the
// CPU supports. Call first thing in main, before MPI_Init or any thread starts.
void ensure_fast_blas_kernels(char** argv);
// "OpenBLAS <kernel family>", and what detection had chosen when it was overridden.
std::string blas_description();

// The OpenBLAS loaded at run time, for `polyllama doctor`.
struct BlasInfo {
  // openblas_get_config(): "OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY Haswell MAX_THREADS=64"
  std::string config;
  std::string core;         // the kernel family in use (openblas_get_corename), "Haswell"
  std::string threading;    // how OpenBLAS runs its threads: "OpenMP" (the build polyllama wants), "pthreads", "none"
  int threads = 1;          // OpenBLAS's threads (openblas_get_num_threads)
  int omp_threads = 1;      // OpenMP's threads for the CPU backend's loops (omp_get_max_threads)
  int cpus = 1;             // CPUs this process may run on: its affinity mask, as the launcher bound it
  bool overridden = false;  // ensure_fast_blas_kernels re-executed with a better OPENBLAS_CORETYPE
  // A 48 x 40 x 56 sgemm of small integers (exact in fp32) against a plain loop: "" when equal, else the first
  // element that differs.
  std::string sgemm_check;
};
BlasInfo blas_info();

// Peak single-precision GEMM rate of this machine through the same OpenBLAS, in GFLOP/s: the ceiling the
// training step is measured against. Square n x n x n products, best of `reps`.
double measure_sgemm_gflops(int64_t n, int reps);

}  // namespace polyllama
