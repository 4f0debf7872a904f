#pragma once
// Wraps any backend and accumulates wall time and calls per op: `bench --profile` prints where a step's time
// goes. Timing is host-side, so a backend with asynchronous ops is synchronised before and after each op
// (Backend::synchronize; the CPU's is a no-op).
#include <array>
#include <string>

#include "polyllama/core/backend.hpp"

namespace polyllama {

class ProfilingBackend final : public Backend {
 public:
  explicit ProfilingBackend(Backend& inner) : in_(inner) {}
  const char* name() const override { return in_.name(); }
  bool supports(Op op, DType dtype) const override { return in_.supports(op, dtype); }
  bool host_memory() const override { return in_.host_memory(); }
  void* device_alloc(size_t bytes) override { return in_.device_alloc(bytes); }
  void device_free(void* p) override { in_.device_free(p); }
  void upload(Tensor dst, const void* src) override { in_.upload(dst, src); }
  void download(void* dst, Tensor src) override { in_.download(dst, src); }
  void synchronize() override { in_.synchronize(); }
  std::string description() const override { return in_.description(); }
  double measure_matmul_tflops(int64_t n, int reps) override { return in_.measure_matmul_tflops(n, reps); }
  double peak_tflops() const override { return in_.peak_tflops(); }
  void set_attention(const std::string& impl) override { in_.set_attention(impl); }
  std::string attention_summary() const override { return in_.attention_summary(); }
  int64_t fused_attention_calls() const override { return in_.fused_attention_calls(); }

  void matmul(Tensor c, Tensor a, Tensor b, bool ta, bool tb, double alpha, double beta) override;
  void rmsnorm_forward(Tensor y, Tensor rstd, Tensor x, Tensor w, double eps) override;
  void rmsnorm_backward(Tensor dx, Tensor dw, Tensor dy, Tensor x, Tensor w, Tensor rstd) override;
  void rope(Tensor x, Tensor cos, Tensor sin, const int32_t* positions, bool inverse) override;
  void swiglu_forward(Tensor out, Tensor gate, Tensor up) override;
  void swiglu_backward(Tensor dgate, Tensor dup, Tensor dout, Tensor gate, Tensor up) override;
  void attention_forward(Tensor out, Tensor probs, Tensor q, Tensor k, Tensor v,
                                         const AttnSpan& span) override;
  void attention_backward(Tensor dq, Tensor dk, Tensor dv, Tensor dout, Tensor q, Tensor k, Tensor v, Tensor out,
                          Tensor probs,
                          Tensor scratch, const AttnSpan& span) override;
  int64_t attention_scratch_elems(int64_t b, int64_t h, int64_t t, int64_t kv = 0, int64_t d = 0) const override {
    return in_.attention_scratch_elems(b, h, t, kv, d);
  }
  int64_t attention_saved_elems(int64_t b, int64_t h, int64_t tq, int64_t tk) const override {
    return in_.attention_saved_elems(b, h, tq, tk);
  }
  int64_t attention_decode_elems(int64_t b, int64_t h, int64_t tq, int64_t tk, int64_t d) const override {
    return in_.attention_decode_elems(b, h, tq, tk, d);
  }
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

  // Rows "op  seconds  share  calls", sorted by time; `steps` divides the totals.
  std::string report(int64_t steps) const;
  void reset();

 private:
  enum Slot : int {
    kMatmul, kNormF, kNormB, kRope, kSwigluF, kSwigluB, kAttnF, kAttnB, kEmbF, kEmbB, kXent, kAdamw, kElem, kSlots
  };
  struct Timer;
  Backend& in_;
  std::array<double, kSlots> sec_{};
  std::array<int64_t, kSlots> calls_{};
};

}  // namespace polyllama
