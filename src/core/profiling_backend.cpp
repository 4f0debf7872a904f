#include "polyllama/core/profiling_backend.hpp"

#include <algorithm>
#include <cstdio>
#include <vector>

#include "polyllama/core/log.hpp"

namespace polyllama {

struct ProfilingBackend::Timer {
  ProfilingBackend& p;
  int slot;
  double t0;
  Timer(ProfilingBackend& prof, int s) : p(prof), slot(s) {
    p.in_.synchronize();
    t0 = now_seconds();
  }
  ~Timer() {
    p.in_.synchronize();
    p.sec_[static_cast<size_t>(slot)] += now_seconds() - t0;
    p.calls_[static_cast<size_t>(slot)] += 1;
  }
};

void ProfilingBackend::matmul(Tensor c, Tensor a, Tensor b, bool ta, bool tb, double alpha, double beta) {
  Timer t{*this, kMatmul};
  in_.matmul(c, a, b, ta, tb, alpha, beta);
}
void ProfilingBackend::rmsnorm_forward(Tensor y, Tensor rstd, Tensor x, Tensor w, double eps) {
  Timer t{*this, kNormF};
  in_.rmsnorm_forward(y, rstd, x, w, eps);
}
void ProfilingBackend::rmsnorm_backward(Tensor dx, Tensor dw, Tensor dy, Tensor x, Tensor w, Tensor rstd) {
  Timer t{*this, kNormB};
  in_.rmsnorm_backward(dx, dw, dy, x, w, rstd);
}
void ProfilingBackend::rope(Tensor x, Tensor cos, Tensor sin, const int32_t* positions, bool inverse) {
  Timer t{*this, kRope};
  in_.rope(x, cos, sin, positions, inverse);
}
void ProfilingBackend::swiglu_forward(Tensor out, Tensor gate, Tensor up) {
  Timer t{*this, kSwigluF};
  in_.swiglu_forward(out, gate, up);
}
void ProfilingBackend::swiglu_backward(Tensor dgate, Tensor dup, Tensor dout, Tensor gate, Tensor up) {
  Timer t{*this, kSwigluB};
  in_.swiglu_backward(dgate, dup, dout, gate, up);
}
void ProfilingBackend::attention_forward(Tensor out, Tensor probs, Tensor q, Tensor k, Tensor v,
                                         const AttnSpan& span) {
  Timer t{*this, kAttnF};
  in_.attention_forward(out, probs, q, k, v, span);
}
void ProfilingBackend::attention_backward(Tensor dq, Tensor dk, Tensor dv, Tensor dout, Tensor q, Tensor k, Tensor v,
                                          Tensor out, Tensor probs, Tensor scratch, const AttnSpan& span) {
  Timer t{*this, kAttnB};
  in_.attention_backward(dq, dk, dv, dout, q, k, v, out, probs, scratch, span);
}
void ProfilingBackend::embedding_forward(Tensor out, Tensor table, const int32_t* ids) {
  Timer t{*this, kEmbF};
  in_.embedding_forward(out, table, ids);
}
void ProfilingBackend::embedding_backward(Tensor dtable, Tensor dout, const int32_t* ids) {
  Timer t{*this, kEmbB};
  in_.embedding_backward(dtable, dout, ids);
}
double ProfilingBackend::softmax_xent(Tensor logits, Tensor loss, const int32_t* targets, int32_t ignore_index,
                                      bool want_grad, double grad_scale) {
  Timer t{*this, kXent};
  return in_.softmax_xent(logits, loss, targets, ignore_index, want_grad, grad_scale);
}
void ProfilingBackend::xent_partial(Tensor logits, Tensor stats, const int32_t* targets, int64_t v0,
                                    int32_t ignore_index) {
  Timer t{*this, kXent};
  in_.xent_partial(logits, stats, targets, v0, ignore_index);
}
double ProfilingBackend::xent_finish(Tensor logits, Tensor loss, Tensor stats_all, const int32_t* targets, int64_t v0,
                                     int32_t ignore_index, bool want_grad, double grad_scale) {
  Timer t{*this, kXent};
  return in_.xent_finish(logits, loss, stats_all, targets, v0, ignore_index, want_grad, grad_scale);
}
void ProfilingBackend::adamw(Tensor param, Tensor grad, Tensor m, Tensor v, const AdamWParams& p) {
  Timer t{*this, kAdamw};
  in_.adamw(param, grad, m, v, p);
}
void ProfilingBackend::copy(Tensor dst, Tensor src) {
  Timer t{*this, kElem};
  in_.copy(dst, src);
}
void ProfilingBackend::zero(Tensor x) {
  Timer t{*this, kElem};
  in_.zero(x);
}
void ProfilingBackend::scale(Tensor x, double alpha) {
  Timer t{*this, kElem};
  in_.scale(x, alpha);
}
double ProfilingBackend::sum_squares(Tensor x) {
  Timer t{*this, kElem};
  return in_.sum_squares(x);
}
double ProfilingBackend::sum_squares_all(const std::vector<Tensor>& xs) {
  Timer t{*this, kElem};
  return in_.sum_squares_all(xs);
}

void ProfilingBackend::reset() {
  sec_.fill(0);
  calls_.fill(0);
}

std::string ProfilingBackend::report(int64_t steps) const {
  static const char* names[kSlots] = {"matmul",           "rmsnorm_forward",   "rmsnorm_backward", "rope",
                                      "swiglu_forward",   "swiglu_backward",   "attention_forward",
                                      "attention_backward", "embedding_forward", "embedding_backward",
                                      "softmax_xent",     "adamw",             "copy/zero/scale/norm"};
  double total = 0;
  for (double s : sec_) total += s;
  std::vector<int> order(kSlots);
  for (int i = 0; i < kSlots; ++i) order[static_cast<size_t>(i)] = i;
  std::sort(order.begin(), order.end(), [&](int a, int b) { return sec_[static_cast<size_t>(a)] > sec_[static_cast<size_t>(b)]; });
  const double per = 1.0 / static_cast<double>(std::max<int64_t>(1, steps));
  std::string out = fmt("%-22s %10s %7s %8s\n", "op", "ms/step", "share", "calls");
  for (int i : order) {
    const auto s = static_cast<size_t>(i);
    if (calls_[s] == 0) continue;
    out += fmt("%-22s %10.2f %6.1f%% %8lld\n", names[s], 1e3 * sec_[s] * per, 100.0 * sec_[s] / total,
               static_cast<long long>(static_cast<double>(calls_[s]) * per));
  }
  return out;
}

}  // namespace polyllama
