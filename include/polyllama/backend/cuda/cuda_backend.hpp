#pragma once
// The CUDA backend (one GPU): cuBLASLt GEMMs with fp32 accumulation, fused kernels for the other ops, flash-style
// attention (attention.cuh). Tensors live in device memory (host_memory() is false); token ids, positions and
// spans arrive in host memory and are staged into device buffers that grow to the largest call and are then
// reused, so a training step allocates nothing after the first. Every op is asynchronous on the backend's one
// stream except those that return a host value (softmax_xent, sum_squares) and download().
// Dtypes: f32 everywhere (the reference path, true fp32 GEMMs), and bf16 activations with f32 statistics and
// f32 parameter gradients (the mixed-precision training path); supports() lists which.
// This header needs no CUDA headers: the device context is behind a pointer.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "polyllama/core/backend.hpp"

namespace polyllama {
namespace cuda {
struct AttnArgs;
}

// Which kernels run attention: `own` (the backend's flash kernels, the default and the measured path) or `cudnn`
// (cuDNN's fused flash attention for the bf16 causal training case; every other call, and every shape cuDNN
// refuses, still runs the own kernels).
enum class AttentionImpl { own, cudnn };
const char* attention_impl_name(AttentionImpl impl);
// "own" or "cudnn"; anything else fails (exit 1) naming the choices.
AttentionImpl parse_attention_impl(const std::string& name);

class CudaBackend final : public Backend {
 public:
  // Binds `device`; fails with cudaGetDeviceCount's reason when there is none.
  explicit CudaBackend(int device = 0);
  ~CudaBackend() override;
  CudaBackend(const CudaBackend&) = delete;
  CudaBackend& operator=(const CudaBackend&) = delete;

  const char* name() const override { return "cuda"; }
  bool supports(Op op, DType dtype) const override;
  bool host_memory() const override { return false; }
  void* device_alloc(size_t bytes) override;
  void device_free(void* p) override;
  void upload(Tensor dst, const void* host_src) override;
  void download(void* host_dst, Tensor src) override;
  void synchronize() override;

  void matmul(Tensor c, Tensor a, Tensor b, bool trans_a, bool trans_b, double alpha, double beta) override;
  void rmsnorm_forward(Tensor y, Tensor rstd, Tensor x, Tensor w, double eps) override;
  void rmsnorm_backward(Tensor dx, Tensor dw, Tensor dy, Tensor x, Tensor w, Tensor rstd) override;
  void rope(Tensor x, Tensor cos, Tensor sin, const int32_t* positions, bool inverse) override;
  void swiglu_forward(Tensor out, Tensor gate, Tensor up) override;
  void swiglu_backward(Tensor dgate, Tensor dup, Tensor dout, Tensor gate, Tensor up) override;
  void attention_forward(Tensor out, Tensor saved, Tensor q, Tensor k, Tensor v, const AttnSpan& span) override;
  void attention_backward(Tensor dq, Tensor dk, Tensor dv, Tensor dout, Tensor q, Tensor k, Tensor v, Tensor out,
                          Tensor saved,
                          Tensor scratch, const AttnSpan& span) override;
  int64_t attention_scratch_elems(int64_t batch, int64_t heads, int64_t seq, int64_t kv_heads = 0,
                                  int64_t head_dim = 0) const override;
  int64_t attention_saved_elems(int64_t batch, int64_t heads, int64_t tq, int64_t tk) const override;
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
  double sum_squares_all(const std::vector<Tensor>& xs) override;

  // The compute stream every op runs on (a cudaStream_t), and the device ordinal: for the NCCL communicators,
  // which order their own stream against this one with events.
  void* stream_handle() const;
  int device() const;

  // Selects the attention kernels for the calls that follow. cudnn on a build without cuDNN fails (exit 1).
  void set_attention(AttentionImpl impl);
  void set_attention(const std::string& impl) override { set_attention(parse_attention_impl(impl)); }
  AttentionImpl attention() const;
  // Whether this build has the cuDNN path (cuDNN was found at configure time).
  static bool cudnn_built();
  // Which kernels ran the attention calls so far: "own kernels" or the cuDNN counts and refused shapes.
  std::string attention_summary() const override;
  // Attention calls cuDNN ran (0 with the own kernels), forward and backward.
  int64_t cudnn_attention_calls(bool backward) const;
  int64_t fused_attention_calls() const override { return cudnn_attention_calls(false) + cudnn_attention_calls(true); }

  // The device: "NVIDIA H100 80GB HBM3", its memory, its compute capability (90 for sm_90).
  std::string device_name() const;
  size_t device_memory_bytes() const;
  int compute_capability() const;
  // CUDA events on the backend's stream: the time between timer_start() and timer_stop_ms() on the device.
  void timer_start();
  double timer_stop_ms();
  // The cuBLASLt bf16 GEMM rate (fp32 accumulation, bf16 output) of an n x n x n product, best of `reps`,
  // in TFLOP/s: the practical ceiling of a training step.
  double measure_gemm_tflops(int64_t n, int reps);
  double measure_matmul_tflops(int64_t n, int reps) override { return measure_gemm_tflops(n, reps); }
  // "NVIDIA H100 80GB HBM3 (sm_90, 81559 MiB)"; the bf16 dense peak by name (bf16_peak_tflops).
  std::string description() const override;
  double peak_tflops() const override;

  struct Context;  // device context (stream, cuBLASLt handle and plans, workspace, properties, staging)

 private:
  bool cudnn_attention_forward(const cuda::AttnArgs& a);
  bool cudnn_attention_backward(const cuda::AttnArgs& a, const void* dout, void* dq, void* dk, void* dv);

  std::unique_ptr<Context> ctx_;
};

// Dense bf16 tensor-core peak of a GPU by its name, in TFLOP/s (H100 SXM / H200 989, H100 PCIe 756,
// A100 312); 0 when the name is not known.
double bf16_peak_tflops(const std::string& device_name);

// True when cudaGetDeviceCount finds a device; else `why` holds the runtime's error (e.g. 35, no driver).
bool cuda_device_usable(std::string* why);
// cudaGetDeviceCount's count (0 on error).
int cuda_visible_devices();

// The CUDA stack this process sees, for `polyllama doctor`. Versions as "12.4" (driver, runtime) and "12.4.2"
// (cuBLASLt, cuDNN), "" when unknown or absent (cuDNN in a build without it); no device is information here.
struct CudaStackInfo {
  std::string driver, runtime, cublaslt, cudnn;
  std::vector<std::string> devices;  // "NVIDIA H100 80GB HBM3 (sm_90, 81559 MiB)", in CUDA's order
  std::string error;                 // why no device is usable ("" when one is)
};
CudaStackInfo cuda_stack_info();

}  // namespace polyllama
