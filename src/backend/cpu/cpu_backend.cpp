#include "polyllama/backend/cpu/cpu_backend.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <thread>

#include "kernels.hpp"
#include "polyllama/core/error.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace polyllama {

namespace {

void same_dtype(std::initializer_list<Tensor> ts) {
  DType d = ts.begin()->dtype;
  for (const Tensor& t : ts)
    if (!t.empty()) PL_CHECK(t.dtype == d, "mixed dtypes in one op");
}

void same_numel(const Tensor& a, const Tensor& b, const char* what) {
  PL_CHECK(a.numel() == b.numel(), std::string(what) + ": " + a.shape_str() + " vs " + b.shape_str());
}

// Calls f with the C++ type of t's dtype.
template <typename F> void dispatch(const Tensor& t, F&& f) {
  if (t.dtype == DType::f32)
    f(float{});
  else
    f(double{});
}

}  // namespace

CpuBackend::CpuBackend(int threads) {
  // OpenMP creates what it is asked for: 100000 threads end in a crash, not an error. The verbs' --threads check
  // says the same with the flag's name; this covers every caller.
  const int hw = std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  if (threads < 0 || threads > 4 * hw)
    fail_input("--threads " + std::to_string(threads) + ": CPU threads must be at least 1 (or left out) and at most "
               "4 x the " + std::to_string(hw) + " hardware threads here");
#ifdef _OPENMP
  if (threads > 0) omp_set_num_threads(threads);
#else
  (void)threads;
#endif
}

int CpuBackend::threads() const {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

std::string CpuBackend::description() const {
  return "cpu, " + std::to_string(threads()) + " threads, " + blas_description();
}

double CpuBackend::measure_matmul_tflops(int64_t n, int reps) { return measure_sgemm_gflops(n, reps) / 1e3; }

bool CpuBackend::supports(Op op, DType dtype) const {
  return op < Op::count && (dtype == DType::f32 || dtype == DType::f64);
}

void CpuBackend::matmul(Tensor c, Tensor a, Tensor b, bool ta, bool tb, double alpha, double beta) {
  same_dtype({c, a, b});
  const int64_t M = ta ? a.cols() : a.rows(), K = ta ? a.rows() : a.cols();
  const int64_t Kb = tb ? b.cols() : b.rows(), N = tb ? b.rows() : b.cols();
  PL_CHECK(K == Kb && c.rows() == M && c.cols() == N,
           "matmul shapes " + a.shape_str() + (ta ? "^T" : "") + " @ " + b.shape_str() + (tb ? "^T" : "") + " -> " +
               c.shape_str());
  dispatch(c, [&](auto z) {
    using T = decltype(z);
    cpu::gemm<T>(ta, tb, M, N, K, static_cast<T>(alpha), a.ptr<T>(), a.cols(), b.ptr<T>(), b.cols(),
                 static_cast<T>(beta), c.ptr<T>(), c.cols());
  });
}

void CpuBackend::rmsnorm_forward(Tensor y, Tensor rstd, Tensor x, Tensor w, double eps) {
  same_dtype({y, rstd, x, w});
  same_numel(y, x, "rmsnorm y/x");
  PL_CHECK(w.numel() == x.cols() && rstd.numel() == x.rows(), "rmsnorm w/rstd");
  dispatch(x, [&](auto z) {
    using T = decltype(z);
    cpu::rmsnorm_forward<T>(y.ptr<T>(), rstd.ptr<T>(), x.ptr<T>(), w.ptr<T>(), x.rows(), x.cols(), eps);
  });
}

void CpuBackend::rmsnorm_backward(Tensor dx, Tensor dw, Tensor dy, Tensor x, Tensor w, Tensor rstd) {
  same_dtype({dx, dw, dy, x, w, rstd});
  same_numel(dx, x, "rmsnorm dx/x");
  same_numel(dy, x, "rmsnorm dy/x");
  PL_CHECK(w.numel() == x.cols() && dw.numel() == x.cols() && rstd.numel() == x.rows(), "rmsnorm w/rstd");
  dispatch(x, [&](auto z) {
    using T = decltype(z);
    cpu::rmsnorm_backward<T>(dx.ptr<T>(), dw.ptr<T>(), dy.ptr<T>(), x.ptr<T>(), w.ptr<T>(), rstd.ptr<T>(), x.rows(),
                             x.cols());
  });
}

void CpuBackend::rope(Tensor x, Tensor cos, Tensor sin, const int32_t* positions, bool inverse) {
  same_dtype({x, cos, sin});
  check_rope_args(x, cos, sin, positions);
  dispatch(x, [&](auto z) {
    using T = decltype(z);
    cpu::rope<T>(x.ptr<T>(), cos.ptr<T>(), sin.ptr<T>(), x.dim(0), x.dim(1), x.dim(2), x.dim(3), positions, inverse);
  });
}

void CpuBackend::swiglu_forward(Tensor out, Tensor gate, Tensor up) {
  same_dtype({out, gate, up});
  same_numel(out, gate, "swiglu");
  same_numel(out, up, "swiglu");
  dispatch(out, [&](auto z) {
    using T = decltype(z);
    cpu::swiglu_forward<T>(out.ptr<T>(), gate.ptr<T>(), up.ptr<T>(), out.numel());
  });
}

void CpuBackend::swiglu_backward(Tensor dgate, Tensor dup, Tensor dout, Tensor gate, Tensor up) {
  same_dtype({dgate, dup, dout, gate, up});
  same_numel(dout, gate, "swiglu");
  same_numel(dgate, gate, "swiglu");
  same_numel(dup, up, "swiglu");
  dispatch(dout, [&](auto z) {
    using T = decltype(z);
    cpu::swiglu_backward<T>(dgate.ptr<T>(), dup.ptr<T>(), dout.ptr<T>(), gate.ptr<T>(), up.ptr<T>(), dout.numel());
  });
}

namespace {

// Shapes of an attention call, with the span checked: every query must see at least itself.
cpu::AttnDims attention_dims(const Tensor& q, const Tensor& k, const Tensor& v, const AttnSpan& span) {
  PL_CHECK(q.ndim == 4 && k.ndim == 4 && v.ndim == 4, "attention wants (B, T, heads, D) tensors");
  const int64_t B = q.dim(0), Tq = q.dim(1), H = q.dim(2), Tk = k.dim(1), KV = k.dim(2), D = q.dim(3);
  PL_CHECK(KV > 0 && H % KV == 0 && k.dim(0) == B && k.dim(3) == D,
           "attention q/k shapes " + q.shape_str() + " / " + k.shape_str());
  same_numel(k, v, "attention k/v");
  const int64_t kv_len = span.kv_len < 0 ? Tk : span.kv_len;
  PL_CHECK(Tq <= kv_len && kv_len <= Tk, "attention: " + std::to_string(Tq) + " queries, kv_len " +
                                             std::to_string(kv_len) + ", " + std::to_string(Tk) + " key rows");
  if (span.kv_start)
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 0; t < Tq; ++t) {
        const int32_t s = span.kv_start[b * Tq + t];
        PL_CHECK(s >= 0 && s <= kv_len - Tq + t, "attention kv_start " + std::to_string(s) + " of query " +
                                                     std::to_string(t) + " in row " + std::to_string(b) +
                                                     " lets it see no key");
      }
  return {B, Tq, Tk, H, KV, D, kv_len, span.kv_start};
}

}  // namespace

void CpuBackend::attention_forward(Tensor out, Tensor probs, Tensor q, Tensor k, Tensor v, const AttnSpan& span) {
  same_dtype({out, probs, q, k, v});
  const cpu::AttnDims d = attention_dims(q, k, v, span);
  same_numel(out, q, "attention out/q");
  if (!span.for_backward) {
    PL_CHECK(d.H / d.KV <= cpu::kDecodeRows, "attention: more than " + std::to_string(cpu::kDecodeRows) +
                                                 " query heads per kv head");
    const int64_t slots = std::min<int64_t>(threads(), probs.numel() / cpu::attention_decode_slot_elems(d.Tk, d.D));
    PL_CHECK(slots >= 1, "attention workspace holds less than one decoding block (attention_decode_elems)");
    dispatch(q, [&](auto z) {
      using T = decltype(z);
      cpu::attention_forward_decode<T>(out.ptr<T>(), probs.ptr<T>(), static_cast<int>(slots), q.ptr<T>(), k.ptr<T>(),
                                       v.ptr<T>(), d);
    });
    return;
  }
  PL_CHECK(probs.numel() >= d.B * d.H * d.Tq * d.Tk, "attention probs must hold (B, H, Tq, Tk)");
  dispatch(q, [&](auto z) {
    using T = decltype(z);
    cpu::attention_forward<T>(out.ptr<T>(), probs.ptr<T>(), q.ptr<T>(), k.ptr<T>(), v.ptr<T>(), d);
  });
}

void CpuBackend::attention_backward(Tensor dq, Tensor dk, Tensor dv, Tensor dout, Tensor q, Tensor k, Tensor v,
                                    Tensor /*out: the saved probabilities suffice*/, Tensor probs, Tensor scratch,
                                    const AttnSpan& span) {
  same_dtype({dq, dk, dv, dout, q, k, v, probs, scratch});
  const cpu::AttnDims d = attention_dims(q, k, v, span);
  same_numel(dq, q, "attention dq");
  same_numel(dk, k, "attention dk");
  same_numel(dv, v, "attention dv");
  same_numel(dout, q, "attention dout");
  const int64_t slots = std::min<int64_t>(threads(), scratch.numel() / std::max<int64_t>(1, d.Tq * d.Tk));
  PL_CHECK(slots >= 1, "attention scratch holds less than one (Tq, Tk) block");
  dispatch(q, [&](auto z) {
    using T = decltype(z);
    cpu::attention_backward<T>(dq.ptr<T>(), dk.ptr<T>(), dv.ptr<T>(), dout.ptr<T>(), q.ptr<T>(), k.ptr<T>(),
                               v.ptr<T>(), probs.ptr<T>(), scratch.ptr<T>(), static_cast<int>(slots), d);
  });
}

int64_t CpuBackend::attention_decode_elems(int64_t batch, int64_t heads, int64_t tq, int64_t tk,
                                           int64_t head_dim) const {
  // One block per thread; there are at most batch * heads * tq work items (each holds at least one query row).
  const int64_t slots = std::min<int64_t>(threads(), std::max<int64_t>(1, batch * heads * tq));
  return slots * cpu::attention_decode_slot_elems(tk, head_dim);
}

int64_t CpuBackend::attention_scratch_elems(int64_t, int64_t, int64_t seq, int64_t, int64_t) const {
  return static_cast<int64_t>(threads()) * seq * seq;  // one dS block per thread
}

void CpuBackend::embedding_forward(Tensor out, Tensor table, const int32_t* ids) {
  same_dtype({out, table});
  PL_CHECK(out.cols() == table.cols(), "embedding width");
  dispatch(out, [&](auto z) {
    using T = decltype(z);
    cpu::embedding_forward<T>(out.ptr<T>(), table.ptr<T>(), ids, out.rows(), out.cols());
  });
}

void CpuBackend::embedding_backward(Tensor dtable, Tensor dout, const int32_t* ids) {
  same_dtype({dtable, dout});
  PL_CHECK(dout.cols() == dtable.cols(), "embedding width");
  dispatch(dout, [&](auto z) {
    using T = decltype(z);
    cpu::embedding_backward<T>(dtable.ptr<T>(), dout.ptr<T>(), ids, dout.rows(), dout.cols());
  });
}

double CpuBackend::softmax_xent(Tensor logits, Tensor loss, const int32_t* targets, int32_t ignore_index,
                                bool want_grad, double grad_scale) {
  same_dtype({logits, loss});
  PL_CHECK(loss.numel() >= logits.rows(), "xent loss buffer");
  double total = 0;
  dispatch(logits, [&](auto z) {
    using T = decltype(z);
    total = cpu::softmax_xent<T>(logits.ptr<T>(), loss.ptr<T>(), targets, ignore_index, want_grad, grad_scale,
                                 logits.rows(), logits.cols());
  });
  return total;
}

void CpuBackend::xent_partial(Tensor logits, Tensor stats, const int32_t* targets, int64_t v0, int32_t ignore_index) {
  same_dtype({logits, stats});
  PL_CHECK(stats.numel() == 2 * logits.rows(), "xent_partial: stats must be (N, 2) for logits " + logits.shape_str());
  dispatch(logits, [&](auto z) {
    using T = decltype(z);
    cpu::xent_partial<T>(logits.ptr<T>(), stats.ptr<T>(), targets, v0, ignore_index, logits.rows(), logits.cols());
  });
}

double CpuBackend::xent_finish(Tensor logits, Tensor loss, Tensor stats_all, const int32_t* targets, int64_t v0,
                               int32_t ignore_index, bool want_grad, double grad_scale) {
  same_dtype({logits, loss, stats_all});
  const int64_t N = logits.rows();
  PL_CHECK(loss.numel() >= N && N > 0 && stats_all.numel() % (2 * N) == 0,
           "xent_finish: loss (N) and stats (parts, N, 2) for logits " + logits.shape_str() + ", got " +
               loss.shape_str() + " and " + stats_all.shape_str());
  double total = 0;
  dispatch(logits, [&](auto z) {
    using T = decltype(z);
    total = cpu::xent_finish<T>(logits.ptr<T>(), loss.ptr<T>(), stats_all.ptr<T>(), stats_all.numel() / (2 * N),
                                targets, v0, ignore_index, want_grad, grad_scale, N, logits.cols());
  });
  return total;
}

void CpuBackend::adamw(Tensor param, Tensor grad, Tensor m, Tensor v, const AdamWParams& p) {
  same_dtype({param, grad, m, v});
  same_numel(param, grad, "adamw");
  same_numel(param, m, "adamw");
  same_numel(param, v, "adamw");
  dispatch(param, [&](auto z) {
    using T = decltype(z);
    cpu::adamw<T>(param.ptr<T>(), grad.ptr<T>(), m.ptr<T>(), v.ptr<T>(), param.numel(), p);
  });
}

void CpuBackend::copy(Tensor dst, Tensor src) {
  same_dtype({dst, src});
  same_numel(dst, src, "copy");
  std::memcpy(dst.data, src.data, src.bytes());
}

void CpuBackend::zero(Tensor x) { std::memset(x.data, 0, x.bytes()); }

void CpuBackend::scale(Tensor x, double alpha) {
  dispatch(x, [&](auto z) {
    using T = decltype(z);
    T* p = x.ptr<T>();
    const T a = static_cast<T>(alpha);
    const int64_t n = x.numel();
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; ++i) p[i] *= a;
  });
}

double CpuBackend::sum_squares(Tensor x) {
  // Fixed chunks summed in order: the same bits for any thread count and on every run (resume must be exact).
  constexpr int64_t kChunk = 1 << 16;
  const int64_t n = x.numel(), nchunk = (n + kChunk - 1) / kChunk;
  double parts[256];
  double total = 0;
  for (int64_t base = 0; base < nchunk; base += 256) {
    const int64_t cnt = std::min<int64_t>(256, nchunk - base);
    dispatch(x, [&](auto z) {
      using T = decltype(z);
      const T* p = x.ptr<T>();
#pragma omp parallel for schedule(static)
      for (int64_t c = 0; c < cnt; ++c) {
        const int64_t i0 = (base + c) * kChunk, i1 = std::min(n, i0 + kChunk);
        double s = 0;
#pragma omp simd reduction(+ : s)
        for (int64_t i = i0; i < i1; ++i) s += static_cast<double>(p[i]) * static_cast<double>(p[i]);
        parts[c] = s;
      }
    });
    for (int64_t c = 0; c < cnt; ++c) total += parts[c];
  }
  return total;
}

}  // namespace polyllama
