// Every op of the CPU backend, four ways:
//   CpuOpsForward  the f32 and f64 paths against naive double-precision references written here from the maths
//                  (plain loops; nothing from the library but the op under test),
//   CpuOpsGrad     the backward ops against central finite differences of L = sum(out * R) in f64,
//   CpuOpsF32VsF64 the f32 path against the f64 path on identical (f32-representable) inputs,
//   CpuOpsThreads  bitwise independence of the thread count where the backend promises it.
#include <gtest/gtest.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <ostream>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

#include "polyllama/backend/cpu/cpu_backend.hpp"
#include "polyllama/core/random.hpp"
#include "test_support.hpp"

using namespace polyllama;
using polyllama::test::max_rel_err;

namespace {

using Vec = std::vector<double>;

// ---- tolerances ----------------------------------------------------------------------------------------------

// Forward against the naive reference, normwise: max|op - ref| / max|ref|. The reference runs on exactly the
// values the op sees (inputs rounded to T first), so only the op's own arithmetic is measured. Every output is
// a chain of at most ~130 roundings (dot products of length K <= 130, row reductions of <= 130 terms, one
// exp/log). Random-sign rounding errors grow like sqrt(K) u: ~7e-7 in f32 (u = 6e-8) and ~1e-15 in f64
// (u = 1.1e-16). 1e-5 (~170 u) and 1e-12 (~9000 u) cover the worst-case linear growth K u (8e-6, 1.4e-14)
// and libm's exp under -ffast-math (a few ulp); an indexing, masking or missing-term bug is O(1).
template <typename T>
constexpr double kFwdTol = std::is_same_v<T, float> ? 1e-5 : 1e-12;

// Backward against central differences in f64 with h = 1e-6. The truncation error of (L(x+h) - L(x-h)) / 2h
// is h^2/6 |L'''| ~ 2e-13 for the O(1) third derivatives of these O(1) inputs. Roundoff: the outputs are
// differenced element by element before the weighted sum, so untouched outputs cancel exactly and the error
// is ~ u sqrt(n_touched) |out| / h <= 1e-16 * 35 / 1e-6 ~ 4e-9 (n_touched <= 1120, attention's k at T=70).
// The gradients' scales are >= 0.1 (asserted; 1..170 measured), so 1e-6 is >25x above both (~3e-9 measured),
// while a wrong factor or missing term is O(1).
constexpr double kFdTol = 1e-6;
constexpr double kFdStep = 1e-6;

// ---- data ----------------------------------------------------------------------------------------------------

// Deterministic N(0, sd) draws; `stream` picks an independent sequence.
Vec randn(int64_t n, uint64_t stream, double sd = 1.0) {
  Vec v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    v[static_cast<size_t>(i)] = sd * random_normal(20240611, stream, static_cast<uint64_t>(i));
  return v;
}

template <typename T>
std::vector<T> as(const Vec& v) {
  return std::vector<T>(v.begin(), v.end());
}
template <typename T>
Vec to_vec(const std::vector<T>& v) {
  return Vec(v.begin(), v.end());
}
// The values an op in T actually sees.
template <typename T>
Vec rounded(const Vec& v) {
  return to_vec(as<T>(v));
}

template <typename T>
Tensor tensor(std::vector<T>& v, std::initializer_list<int64_t> dims) {
  return Tensor(v.data(), dtype_of<T>(), dims);
}

double rel(const Vec& a, const Vec& ref) { return max_rel_err(a, ref); }

// Written by ops whose outputs are documented as overwritten (`=`): any read-before-write shows up.
constexpr double kGarbage = 1234.5;

// ---- op runners: double inputs in, T arithmetic inside, double outputs out -----------------------------------

template <typename T>
Vec run_matmul(Backend& be, const Vec& a, const Vec& b, const Vec& c0, int64_t M, int64_t N, int64_t K, bool ta,
               bool tb, double alpha, double beta) {
  auto A = as<T>(a), B = as<T>(b), C = as<T>(c0);
  be.matmul(tensor(C, {M, N}), ta ? tensor(A, {K, M}) : tensor(A, {M, K}), tb ? tensor(B, {N, K}) : tensor(B, {K, N}),
            ta, tb, alpha, beta);
  return to_vec(C);
}

template <typename T>
std::pair<Vec, Vec> run_rmsnorm_fwd(Backend& be, const Vec& x, const Vec& w, int64_t N, int64_t C, double eps) {
  auto X = as<T>(x), W = as<T>(w);
  std::vector<T> Y(X.size(), T(kGarbage)), R(static_cast<size_t>(N), T(kGarbage));
  be.rmsnorm_forward(tensor(Y, {N, C}), tensor(R, {N}), tensor(X, {N, C}), tensor(W, {C}), eps);
  return {to_vec(Y), to_vec(R)};
}

// dx0/dw0 are the accumulators' starting values (the op adds to them).
template <typename T>
std::pair<Vec, Vec> run_rmsnorm_bwd(Backend& be, const Vec& dx0, const Vec& dw0, const Vec& dy, const Vec& x,
                                    const Vec& w, const Vec& rstd, int64_t N, int64_t C) {
  auto DX = as<T>(dx0), DW = as<T>(dw0), DY = as<T>(dy), X = as<T>(x), W = as<T>(w), R = as<T>(rstd);
  be.rmsnorm_backward(tensor(DX, {N, C}), tensor(DW, {C}), tensor(DY, {N, C}), tensor(X, {N, C}), tensor(W, {C}),
                      tensor(R, {N}));
  return {to_vec(DX), to_vec(DW)};
}

struct RopeShape {
  int64_t B, T, H, D, pos0, max_pos;
  double theta;
};

// cos/sin tables (max_pos, D/2) as the model builds them: angle = p * theta^(-2i/D), in double, then rounded.
std::pair<Vec, Vec> rope_tables(const RopeShape& s) {
  const int64_t half = s.D / 2;
  Vec c(static_cast<size_t>(s.max_pos * half)), sn(c.size());
  for (int64_t p = 0; p < s.max_pos; ++p)
    for (int64_t i = 0; i < half; ++i) {
      const double ang =
          static_cast<double>(p) * std::pow(s.theta, -2.0 * static_cast<double>(i) / static_cast<double>(s.D));
      c[static_cast<size_t>(p * half + i)] = std::cos(ang);
      sn[static_cast<size_t>(p * half + i)] = std::sin(ang);
    }
  return {c, sn};
}

template <typename T>
Vec run_rope(Backend& be, const Vec& x, const RopeShape& s, bool inverse) {
  auto [c, sn] = rope_tables(s);
  auto X = as<T>(x), Cs = as<T>(c), Sn = as<T>(sn);
  std::vector<int32_t> pos(static_cast<size_t>(s.B * s.T));
  for (size_t i = 0; i < pos.size(); ++i) pos[i] = static_cast<int32_t>(s.pos0 + static_cast<int64_t>(i) % s.T);
  be.rope(tensor(X, {s.B, s.T, s.H, s.D}), tensor(Cs, {s.max_pos, s.D / 2}), tensor(Sn, {s.max_pos, s.D / 2}),
          pos.data(), inverse);
  return to_vec(X);
}

template <typename T>
Vec run_swiglu_fwd(Backend& be, const Vec& gate, const Vec& up) {
  auto G = as<T>(gate), U = as<T>(up);
  std::vector<T> O(G.size(), T(kGarbage));
  const auto n = static_cast<int64_t>(G.size());
  be.swiglu_forward(tensor(O, {n}), tensor(G, {n}), tensor(U, {n}));
  return to_vec(O);
}

template <typename T>
std::pair<Vec, Vec> run_swiglu_bwd(Backend& be, const Vec& dout, const Vec& gate, const Vec& up) {
  auto D = as<T>(dout), G = as<T>(gate), U = as<T>(up);
  std::vector<T> DG(G.size(), T(kGarbage)), DU(G.size(), T(kGarbage));
  const auto n = static_cast<int64_t>(G.size());
  be.swiglu_backward(tensor(DG, {n}), tensor(DU, {n}), tensor(D, {n}), tensor(G, {n}), tensor(U, {n}));
  return {to_vec(DG), to_vec(DU)};
}

struct AttnShape {
  int64_t B, T, H, KV, D;
  const char* name;
  int64_t q_elems() const { return B * T * H * D; }
  int64_t kv_elems() const { return B * T * KV * D; }
};
void PrintTo(const AttnShape& s, std::ostream* os) { *os << s.name; }

template <typename T>
std::pair<Vec, Vec> run_attn_fwd(Backend& be, const Vec& q, const Vec& k, const Vec& v, const AttnShape& s) {
  auto Q = as<T>(q), K = as<T>(k), V = as<T>(v);
  std::vector<T> O(Q.size(), T(kGarbage)), P(static_cast<size_t>(s.B * s.H * s.T * s.T), T(kGarbage));
  be.attention_forward(tensor(O, {s.B, s.T, s.H, s.D}), tensor(P, {s.B, s.H, s.T, s.T}),
                       tensor(Q, {s.B, s.T, s.H, s.D}), tensor(K, {s.B, s.T, s.KV, s.D}),
                       tensor(V, {s.B, s.T, s.KV, s.D}), AttnSpan{});
  return {to_vec(O), to_vec(P)};
}

template <typename T>
std::tuple<Vec, Vec, Vec> run_attn_bwd(Backend& be, const Vec& dout, const Vec& q, const Vec& k, const Vec& v,
                                       const Vec& probs, const AttnShape& s) {
  auto G = as<T>(dout), Q = as<T>(q), K = as<T>(k), V = as<T>(v), P = as<T>(probs);
  std::vector<T> DQ(Q.size(), T(kGarbage)), DK(K.size(), T(kGarbage)), DV(V.size(), T(kGarbage));
  std::vector<T> S(static_cast<size_t>(be.attention_scratch_elems(s.B, s.H, s.T)), T(kGarbage));
  const auto ns = static_cast<int64_t>(S.size());
  be.attention_backward(tensor(DQ, {s.B, s.T, s.H, s.D}), tensor(DK, {s.B, s.T, s.KV, s.D}),
                        tensor(DV, {s.B, s.T, s.KV, s.D}), tensor(G, {s.B, s.T, s.H, s.D}),
                        tensor(Q, {s.B, s.T, s.H, s.D}), tensor(K, {s.B, s.T, s.KV, s.D}),
                        tensor(V, {s.B, s.T, s.KV, s.D}), Tensor{}, tensor(P, {s.B, s.H, s.T, s.T}), tensor(S, {ns}),
                        AttnSpan{});
  return {to_vec(DQ), to_vec(DK), to_vec(DV)};
}

template <typename T>
Vec run_embed_fwd(Backend& be, const Vec& table, const std::vector<int32_t>& ids, int64_t C) {
  auto W = as<T>(table);
  const auto N = static_cast<int64_t>(ids.size()), V = static_cast<int64_t>(W.size()) / C;
  std::vector<T> O(static_cast<size_t>(N * C), T(kGarbage));
  be.embedding_forward(tensor(O, {N, C}), tensor(W, {V, C}), ids.data());
  return to_vec(O);
}

template <typename T>
Vec run_embed_bwd(Backend& be, const Vec& dtable0, const Vec& dout, const std::vector<int32_t>& ids, int64_t C) {
  auto DW = as<T>(dtable0), G = as<T>(dout);
  const auto N = static_cast<int64_t>(ids.size()), V = static_cast<int64_t>(DW.size()) / C;
  be.embedding_backward(tensor(DW, {V, C}), tensor(G, {N, C}), ids.data());
  return to_vec(DW);
}

struct XentOut {
  Vec logits;  // the gradient with want_grad, else the (untouched) logits
  Vec loss;    // per row
  double total;
};

template <typename T>
XentOut run_xent(Backend& be, const Vec& logits, const std::vector<int32_t>& targets, int32_t ignore, bool want_grad,
                 double grad_scale, int64_t V) {
  auto L = as<T>(logits);
  const auto N = static_cast<int64_t>(targets.size());
  std::vector<T> loss(static_cast<size_t>(N), T(kGarbage));
  double total = be.softmax_xent(tensor(L, {N, V}), tensor(loss, {N}), targets.data(), ignore, want_grad, grad_scale);
  return {to_vec(L), to_vec(loss), total};
}

// One AdamW step on (p, m, v) in place.
template <typename T>
void run_adamw(Backend& be, Vec& p, const Vec& g, Vec& m, Vec& v, const AdamWParams& hp) {
  auto P = as<T>(p), G = as<T>(g), M = as<T>(m), V = as<T>(v);
  const auto n = static_cast<int64_t>(P.size());
  be.adamw(tensor(P, {n}), tensor(G, {n}), tensor(M, {n}), tensor(V, {n}), hp);
  p = to_vec(P), m = to_vec(M), v = to_vec(V);
}

template <typename T>
double run_sum_squares(Backend& be, const Vec& x) {
  auto X = as<T>(x);
  return be.sum_squares(tensor(X, {static_cast<int64_t>(X.size())}));
}

// ---- naive references, straight from the definitions, in double ---------------------------------------------

// C = alpha op(A) op(B) + beta C0; A stored (M, K), or (K, M) with ta; B stored (K, N), or (N, K) with tb.
Vec ref_matmul(const Vec& a, const Vec& b, const Vec& c0, int64_t M, int64_t N, int64_t K, bool ta, bool tb,
               double alpha, double beta) {
  Vec c(c0);
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      double s = 0;
      for (int64_t k = 0; k < K; ++k) {
        const double aik = ta ? a[static_cast<size_t>(k * M + i)] : a[static_cast<size_t>(i * K + k)];
        const double bkj = tb ? b[static_cast<size_t>(j * K + k)] : b[static_cast<size_t>(k * N + j)];
        s += aik * bkj;
      }
      c[static_cast<size_t>(i * N + j)] = alpha * s + beta * c0[static_cast<size_t>(i * N + j)];
    }
  return c;
}

// y = x / sqrt(mean(x^2) + eps) * w per row; rstd = 1 / sqrt(mean(x^2) + eps).
std::pair<Vec, Vec> ref_rmsnorm(const Vec& x, const Vec& w, int64_t N, int64_t C, double eps) {
  Vec y(x.size()), rstd(static_cast<size_t>(N));
  for (int64_t n = 0; n < N; ++n) {
    double ms = 0;
    for (int64_t c = 0; c < C; ++c) ms += x[static_cast<size_t>(n * C + c)] * x[static_cast<size_t>(n * C + c)];
    ms /= static_cast<double>(C);
    const double r = 1.0 / std::sqrt(ms + eps);
    rstd[static_cast<size_t>(n)] = r;
    for (int64_t c = 0; c < C; ++c)
      y[static_cast<size_t>(n * C + c)] = x[static_cast<size_t>(n * C + c)] * r * w[static_cast<size_t>(c)];
  }
  return {y, rstd};
}

// Hugging Face rotate-half: out = x * cos + rotate_half(x) * sin with rotate_half(x) = (-x2, x1) and the angles
// (pos0 + t) * theta^(-2i/D) repeated over both halves. Computed from the angle, not from the op's tables.
Vec ref_rope(const Vec& x, const RopeShape& s) {
  Vec y(x.size());
  const int64_t half = s.D / 2;
  for (int64_t b = 0; b < s.B; ++b)
    for (int64_t t = 0; t < s.T; ++t)
      for (int64_t h = 0; h < s.H; ++h) {
        const int64_t base = ((b * s.T + t) * s.H + h) * s.D;
        for (int64_t d = 0; d < s.D; ++d) {
          const int64_t i = d % half;
          const double ang = static_cast<double>(s.pos0 + t) *
                             std::pow(s.theta, -2.0 * static_cast<double>(i) / static_cast<double>(s.D));
          const double rot =
              d < half ? -x[static_cast<size_t>(base + d + half)] : x[static_cast<size_t>(base + d - half)];
          y[static_cast<size_t>(base + d)] = x[static_cast<size_t>(base + d)] * std::cos(ang) + rot * std::sin(ang);
        }
      }
  return y;
}

double ref_silu(double g) { return g / (1.0 + std::exp(-g)); }

// Causal GQA: query head h reads kv head h / (H / KV); p = softmax_{j <= t}(q_t . k_j / sqrt(D)); out = sum p_j v_j.
std::pair<Vec, Vec> ref_attention(const Vec& q, const Vec& k, const Vec& v, const AttnShape& s) {
  Vec out(q.size(), 0.0), probs(static_cast<size_t>(s.B * s.H * s.T * s.T), 0.0);
  const int64_t rep = s.H / s.KV;
  auto Q = [&](int64_t b, int64_t t, int64_t h, int64_t d) {
    return q[static_cast<size_t>(((b * s.T + t) * s.H + h) * s.D + d)];
  };
  auto KV = [&](const Vec& m, int64_t b, int64_t t, int64_t g, int64_t d) {
    return m[static_cast<size_t>(((b * s.T + t) * s.KV + g) * s.D + d)];
  };
  for (int64_t b = 0; b < s.B; ++b)
    for (int64_t h = 0; h < s.H; ++h) {
      const int64_t g = h / rep;
      for (int64_t t = 0; t < s.T; ++t) {
        Vec sc(static_cast<size_t>(t + 1));
        double mx = -std::numeric_limits<double>::infinity();
        for (int64_t j = 0; j <= t; ++j) {
          double dot = 0;
          for (int64_t d = 0; d < s.D; ++d) dot += Q(b, t, h, d) * KV(k, b, j, g, d);
          sc[static_cast<size_t>(j)] = dot / std::sqrt(static_cast<double>(s.D));
          mx = std::max(mx, sc[static_cast<size_t>(j)]);
        }
        double z = 0;
        for (double& e : sc) z += (e = std::exp(e - mx));
        double* prow = &probs[static_cast<size_t>(((b * s.H + h) * s.T + t) * s.T)];
        for (int64_t j = 0; j <= t; ++j) prow[j] = sc[static_cast<size_t>(j)] / z;
        for (int64_t d = 0; d < s.D; ++d) {
          double acc = 0;
          for (int64_t j = 0; j <= t; ++j) acc += prow[j] * KV(v, b, j, g, d);
          out[static_cast<size_t>(((b * s.T + t) * s.H + h) * s.D + d)] = acc;
        }
      }
    }
  return {out, probs};
}

// loss = logsumexp(x) - x[target] (0 when ignored); grad = scale (softmax(x) - onehot) (0 rows when ignored).
XentOut ref_xent(const Vec& logits, const std::vector<int32_t>& targets, int32_t ignore, double scale, int64_t V) {
  const auto N = static_cast<int64_t>(targets.size());
  XentOut r{Vec(logits.size(), 0.0), Vec(static_cast<size_t>(N), 0.0), 0.0};
  for (int64_t n = 0; n < N; ++n) {
    const int32_t tg = targets[static_cast<size_t>(n)];
    if (tg == ignore) continue;
    const double* x = &logits[static_cast<size_t>(n * V)];
    double mx = x[0];
    for (int64_t j = 1; j < V; ++j) mx = std::max(mx, x[j]);
    double z = 0;
    for (int64_t j = 0; j < V; ++j) z += std::exp(x[j] - mx);
    const double lse = mx + std::log(z);
    r.loss[static_cast<size_t>(n)] = lse - x[tg];
    r.total += lse - x[tg];
    for (int64_t j = 0; j < V; ++j)
      r.logits[static_cast<size_t>(n * V + j)] = scale * (std::exp(x[j] - lse) - (j == tg ? 1.0 : 0.0));
  }
  return r;
}

// PyTorch's torch.optim.AdamW (amsgrad=False, maximize=False), one step t, written out:
//   p *= 1 - lr wd;  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
//   p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps).
void ref_adamw(Vec& p, const Vec& g, Vec& m, Vec& v, const AdamWParams& hp) {
  const double t = static_cast<double>(hp.step);
  const double bc1 = 1.0 - std::pow(hp.beta1, t), bc2 = 1.0 - std::pow(hp.beta2, t);
  for (size_t i = 0; i < p.size(); ++i) {
    p[i] *= 1.0 - hp.lr * hp.weight_decay;
    m[i] = hp.beta1 * m[i] + (1.0 - hp.beta1) * g[i];
    v[i] = hp.beta2 * v[i] + (1.0 - hp.beta2) * g[i] * g[i];
    p[i] -= hp.lr / bc1 * m[i] / (std::sqrt(v[i]) / std::sqrt(bc2) + hp.eps);
  }
}

// ---- finite differences --------------------------------------------------------------------------------------

// The finite-difference evaluations are the reference, not the code under test (the analytic backward runs
// with the ambient thread count, and the forward is tested with it above), so they run on one OpenMP thread:
// on a busy 2-core machine each two-thread fork/join can cost a scheduler tick, and there are thousands.
class OneThread {
 public:
#ifdef _OPENMP
  OneThread() : saved_(omp_get_max_threads()) { omp_set_num_threads(1); }
  ~OneThread() { omp_set_num_threads(saved_); }

 private:
  int saved_;
#endif
};

// d/dx[i] of L = sum_j f()_j R_j by central differences; f reads x (captured by reference). The outputs are
// differenced before the weighted sum, so outputs the perturbation does not touch cancel exactly.
template <typename F>
double central_diff(Vec& x, size_t i, const Vec& R, F&& f, double h = kFdStep) {
  const double x0 = x[i];
  const double xp = x0 + h, xm = x0 - h;
  x[i] = xp;
  const Vec yp = f();
  x[i] = xm;
  const Vec ym = f();
  x[i] = x0;
  double s = 0;
  for (size_t j = 0; j < yp.size(); ++j) s += (yp[j] - ym[j]) * R[j];
  return s / (xp - xm);  // the step actually taken, after rounding
}

// Compares `analytic` (dL/dx for every element of x) with finite differences at every stride-th element.
template <typename F>
void expect_grad_matches_fd(const char* what, const Vec& analytic, Vec& x, const Vec& R, F&& f, size_t stride = 1) {
  ASSERT_EQ(analytic.size(), x.size()) << what;
  Vec an, fd;
  const OneThread one;
  for (size_t i = 0; i < x.size(); i += stride) {
    an.push_back(analytic[i]);
    fd.push_back(central_diff(x, i, R, f));
  }
  double scale = 0;
  for (double g : fd) scale = std::max(scale, std::fabs(g));
  EXPECT_GT(scale, 0.1) << what << ": gradient too small for a meaningful check";
  const double err = rel(an, fd);
  EXPECT_LT(err, kFdTol) << what << " (" << an.size() << " elements checked, max |grad| " << scale << ")";
}

// ---- shapes --------------------------------------------------------------------------------------------------

// T = 5 and 70 are not multiples of the kernel's 64-row block (70 spans two blocks, the second partial);
// 130 spans three. H = 4, KV = 2 is grouped-query; KV = 1 is multi-query; KV = H is plain multi-head.
const AttnShape kAttnShapes[] = {
    {2, 5, 4, 2, 8, "B2_T5_H4_KV2"},
    {1, 70, 4, 2, 8, "B1_T70_H4_KV2"},
    {1, 130, 2, 1, 4, "B1_T130_H2_KV1"},
    {2, 64, 2, 2, 6, "B2_T64_H2_KV2"},
};

const RopeShape kRope{2, 5, 3, 8, /*pos0=*/4, /*max_pos=*/12, 10000.0};

struct DtypeName {
  template <typename T>
  static std::string GetName(int) {
    return std::is_same_v<T, float> ? "f32" : "f64";
  }
};

}  // namespace

// =============================================================================================================
// a. Forward against the naive reference, in f32 and f64.
// =============================================================================================================

template <typename T>
class CpuOpsForward : public ::testing::Test {
 protected:
  CpuBackend be;
  const double tol = kFwdTol<T>;
};
using Dtypes = ::testing::Types<float, double>;
TYPED_TEST_SUITE(CpuOpsForward, Dtypes, DtypeName);

TYPED_TEST(CpuOpsForward, MatmulAllTransposesWithBeta) {
  using T = TypeParam;
  struct Dims {
    int64_t M, N, K;
  };
  for (Dims d : {Dims{13, 7, 19}, Dims{67, 45, 130}, Dims{1, 5, 3}}) {
    const Vec a = rounded<T>(randn(d.M * d.K, 1)), b = rounded<T>(randn(d.K * d.N, 2)),
              c0 = rounded<T>(randn(d.M * d.N, 3));
    for (int ta = 0; ta < 2; ++ta)
      for (int tb = 0; tb < 2; ++tb) {
        SCOPED_TRACE("M=" + std::to_string(d.M) + " N=" + std::to_string(d.N) + " K=" + std::to_string(d.K) +
                     " ta=" + std::to_string(ta) + " tb=" + std::to_string(tb));
        // alpha and beta are exact in f32 so the reference sees the same coefficients.
        const double alpha = 0.75, beta = -1.25;
        const Vec got = run_matmul<T>(this->be, a, b, c0, d.M, d.N, d.K, ta, tb, alpha, beta);
        EXPECT_LT(rel(got, ref_matmul(a, b, c0, d.M, d.N, d.K, ta, tb, alpha, beta)), this->tol);
      }
  }
}

TYPED_TEST(CpuOpsForward, RmsNorm) {
  using T = TypeParam;
  const int64_t N = 9, C = 48;
  const double eps = 1e-5;
  Vec x = randn(N * C, 10);
  for (int64_t c = 0; c < C; ++c) x[static_cast<size_t>(c)] *= 1e-3;  // row 0: mean(x^2) ~ 1e-6 < eps, so eps matters
  x = rounded<T>(x);
  Vec w = randn(C, 11, 0.3);
  for (double& e : w) e += 1.0;
  w = rounded<T>(w);
  auto [y, rstd] = run_rmsnorm_fwd<T>(this->be, x, w, N, C, eps);
  auto [ry, rr] = ref_rmsnorm(x, w, N, C, eps);
  EXPECT_LT(rel(y, ry), this->tol);
  EXPECT_LT(rel(rstd, rr), this->tol);
}

TYPED_TEST(CpuOpsForward, RopeAtPositionOffsetAndItsInverse) {
  using T = TypeParam;
  const RopeShape s = kRope;
  const Vec x = rounded<T>(randn(s.B * s.T * s.H * s.D, 20));
  const Vec y = run_rope<T>(this->be, x, s, false);
  // The tables are rounded to T (relative error u), which adds at most ~2u to each output: within the budget.
  EXPECT_LT(rel(y, ref_rope(x, s)), this->tol);
  // The inverse rotation undoes the forward one (cos^2 + sin^2 = 1 up to the tables' rounding).
  EXPECT_LT(rel(run_rope<T>(this->be, rounded<T>(y), s, true), x), this->tol);
  // pos0 really shifts the angle: with pos0 = 0 the result differs by O(1).
  RopeShape s0 = s;
  s0.pos0 = 0;
  EXPECT_GT(rel(run_rope<T>(this->be, x, s0, false), ref_rope(x, s)), 0.1);
}

TYPED_TEST(CpuOpsForward, SwiGlu) {
  using T = TypeParam;
  Vec gate = randn(1000, 30, 3.0), up = randn(1000, 31);
  // Saturated gates, both signs (exp(100) overflows f32 to inf: silu must still be ~0, not NaN).
  const double extremes[] = {-100.0, -60.0, -20.0, 0.0, 20.0, 60.0};
  for (size_t i = 0; i < std::size(extremes); ++i) gate[i] = extremes[i];
  gate = rounded<T>(gate), up = rounded<T>(up);
  const Vec out = run_swiglu_fwd<T>(this->be, gate, up);
  Vec ref(gate.size());
  for (size_t i = 0; i < gate.size(); ++i) ref[i] = ref_silu(gate[i]) * up[i];
  EXPECT_LT(rel(out, ref), this->tol);
  for (double o : out) ASSERT_TRUE(std::isfinite(o));
}

class CpuOpsAttention : public ::testing::TestWithParam<AttnShape> {};

template <typename T>
void check_attention_forward(const AttnShape& s) {
  CpuBackend be;
  const Vec q = rounded<T>(randn(s.q_elems(), 40, 1.5)), k = rounded<T>(randn(s.kv_elems(), 41, 1.5)),
            v = rounded<T>(randn(s.kv_elems(), 42));
  auto [out, probs] = run_attn_fwd<T>(be, q, k, v, s);
  auto [rout, rprobs] = ref_attention(q, k, v, s);
  EXPECT_LT(rel(out, rout), kFwdTol<T>);
  EXPECT_LT(rel(probs, rprobs), kFwdTol<T>);
  // The causal mask: every entry above the diagonal is exactly 0 (the buffer started as garbage).
  int64_t nonzero_above = 0;
  for (int64_t bh = 0; bh < s.B * s.H; ++bh)
    for (int64_t i = 0; i < s.T; ++i)
      for (int64_t j = i + 1; j < s.T; ++j)
        nonzero_above += probs[static_cast<size_t>((bh * s.T + i) * s.T + j)] != 0.0;
  EXPECT_EQ(nonzero_above, 0);
}

TEST_P(CpuOpsAttention, ForwardF32) { check_attention_forward<float>(GetParam()); }
TEST_P(CpuOpsAttention, ForwardF64) { check_attention_forward<double>(GetParam()); }

TYPED_TEST(CpuOpsForward, EmbeddingIsAnExactGather) {
  using T = TypeParam;
  const int64_t V = 11, C = 20;
  const Vec table = rounded<T>(randn(V * C, 50));
  const std::vector<int32_t> ids = {3, 0, 10, 3, 7, 3, 0, 1, 10};
  const Vec out = run_embed_fwd<T>(this->be, table, ids, C);
  for (size_t n = 0; n < ids.size(); ++n)
    for (int64_t c = 0; c < C; ++c)  // a copy: exact
      ASSERT_EQ(out[n * C + static_cast<size_t>(c)], table[static_cast<size_t>(ids[n] * C + c)]) << n << "," << c;
}

TYPED_TEST(CpuOpsForward, EmbeddingBackwardAccumulatesRepeatedIds) {
  using T = TypeParam;
  const int64_t V = 7, C = 37;  // C spans three of the kernel's 16-column blocks, the last partial
  const std::vector<int32_t> ids = {3, 1, 3, 3, 0, 6, 1, 3, 2, 0};
  const Vec d0 = rounded<T>(randn(V * C, 51)), g = rounded<T>(randn(static_cast<int64_t>(ids.size()) * C, 52));
  const Vec got = run_embed_bwd<T>(this->be, d0, g, ids, C);
  Vec ref = d0;
  for (size_t n = 0; n < ids.size(); ++n)
    for (int64_t c = 0; c < C; ++c) ref[static_cast<size_t>(ids[n] * C + c)] += g[n * C + static_cast<size_t>(c)];
  // At most 5 additions per entry (id 3 appears four times): error <= 5u relative to the summands.
  EXPECT_LT(rel(got, ref), this->tol);
  for (int32_t unused : {4, 5})  // rows no token hit keep their prior contents bit for bit
    for (int64_t c = 0; c < C; ++c)
      EXPECT_EQ(got[static_cast<size_t>(unused * C + c)], d0[static_cast<size_t>(unused * C + c)]);
}

TYPED_TEST(CpuOpsForward, SoftmaxXentWithIgnoredRowsAndGradScale) {
  using T = TypeParam;
  const int64_t V = 53;
  const int32_t ignore = -100;
  const std::vector<int32_t> targets = {5, ignore, 0, 52, ignore, 17, 30};
  const auto N = static_cast<int64_t>(targets.size());
  Vec logits = randn(N * V, 60, 2.0);
  for (int64_t j = 0; j < V; ++j)
    logits[static_cast<size_t>(3 * V + j)] += 200.0;  // exp(200) overflows f32: needs the max shift
  logits = rounded<T>(logits);
  const double scale = 0.37;
  const XentOut ref = ref_xent(logits, targets, ignore, scale, V);

  const XentOut g = run_xent<T>(this->be, logits, targets, ignore, true, scale, V);
  EXPECT_LT(rel(g.loss, ref.loss), this->tol);
  EXPECT_NEAR(g.total, ref.total, this->tol * std::fabs(ref.total));
  EXPECT_LT(rel(g.logits, ref.logits), this->tol);
  for (int64_t n = 0; n < N; ++n) {
    if (targets[static_cast<size_t>(n)] != ignore) continue;
    EXPECT_EQ(g.loss[static_cast<size_t>(n)], 0.0) << "row " << n;
    for (int64_t j = 0; j < V; ++j) ASSERT_EQ(g.logits[static_cast<size_t>(n * V + j)], 0.0) << "row " << n;
  }

  // Without want_grad: the same losses, and the logits are left alone.
  const XentOut f = run_xent<T>(this->be, logits, targets, ignore, false, scale, V);
  EXPECT_EQ(f.logits, logits);
  EXPECT_LT(rel(f.loss, ref.loss), this->tol);
  EXPECT_NEAR(f.total, ref.total, this->tol * std::fabs(ref.total));
}

// The vocab-parallel halves as tp ranks would run them, played by one process: the vocabulary cut into `parts`
// slices, each slice's xent_partial, the stats of all slices side by side (what the all-gather builds), then
// xent_finish on each slice. Against the same naive reference as the fused op, same tolerance: the only new
// arithmetic is combining a few log-sum-exps.
TYPED_TEST(CpuOpsForward, VocabParallelXentHalvesEqualTheWholeRow) {
  using T = TypeParam;
  const int64_t V = 54;
  const int32_t ignore = -100;
  const std::vector<int32_t> targets = {5, ignore, 0, 53, 26, 27, 17};
  const auto N = static_cast<int64_t>(targets.size());
  Vec logits = randn(N * V, 61, 2.0);
  for (int64_t j = 0; j < V; ++j) logits[static_cast<size_t>(3 * V + j)] += 200.0;  // needs the max shift
  logits = rounded<T>(logits);
  const double scale = 0.37;
  const XentOut ref = ref_xent(logits, targets, ignore, scale, V);
  for (int64_t parts : {1, 2, 3, 6}) {
    const int64_t Vl = V / parts;
    std::vector<std::vector<T>> slice(static_cast<size_t>(parts));
    std::vector<T> stats(static_cast<size_t>(parts * N * 2), T(kGarbage));
    for (int64_t p = 0; p < parts; ++p) {
      auto& sl = slice[static_cast<size_t>(p)];
      for (int64_t n = 0; n < N; ++n)
        for (int64_t j = 0; j < Vl; ++j) sl.push_back(static_cast<T>(logits[static_cast<size_t>(n * V + p * Vl + j)]));
      this->be.xent_partial(Tensor(sl.data(), dtype_of<T>(), {N, Vl}),
                            Tensor(stats.data() + p * N * 2, dtype_of<T>(), {N, 2}), targets.data(), p * Vl, ignore);
    }
    for (bool want_grad : {false, true}) {
      Vec grad(static_cast<size_t>(N * V));
      for (int64_t p = 0; p < parts; ++p) {
        std::vector<T> sl = slice[static_cast<size_t>(p)], loss(static_cast<size_t>(N), T(kGarbage));
        const double total = this->be.xent_finish(Tensor(sl.data(), dtype_of<T>(), {N, Vl}),
                                                  Tensor(loss.data(), dtype_of<T>(), {N}),
                                                  Tensor(stats.data(), dtype_of<T>(), {parts, N, 2}), targets.data(),
                                                  p * Vl, ignore, want_grad, scale);
        EXPECT_LT(rel(to_vec(loss), ref.loss), this->tol) << parts << " parts, slice " << p;
        EXPECT_NEAR(total, ref.total, this->tol * std::fabs(ref.total)) << parts << " parts, slice " << p;
        for (int64_t n = 0; n < N; ++n)
          for (int64_t j = 0; j < Vl; ++j)
            grad[static_cast<size_t>(n * V + p * Vl + j)] = static_cast<double>(sl[static_cast<size_t>(n * Vl + j)]);
      }
      if (want_grad)
        EXPECT_LT(rel(grad, ref.logits), this->tol) << parts << " parts: the slices' gradients, side by side";
      else
        for (int64_t p = 0; p < parts; ++p) EXPECT_EQ(grad[static_cast<size_t>(p * Vl)], logits[static_cast<size_t>(p * Vl)]);
    }
  }
}

TYPED_TEST(CpuOpsForward, AdamWMatchesPyTorchFormula) {
  using T = TypeParam;
  const int64_t n = 257;
  Vec p = rounded<T>(randn(n, 70)), m = rounded<T>(randn(n, 71, 0.01)), v = randn(n, 72, 1e-2);
  for (double& e : v) e = e * e;  // second moments are non-negative
  v = rounded<T>(v);
  m[0] = v[0] = 0.0;  // a fresh state with a zero gradient: the update is 0 / (0 + eps) = 0
  Vec rp = p, rm = m, rv = v;
  AdamWParams hp;
  hp.lr = 1e-2, hp.beta1 = 0.9, hp.beta2 = 0.95, hp.eps = 1e-8, hp.weight_decay = 0.1;
  for (int64_t step = 1; step <= 3; ++step) {
    hp.step = step;
    Vec g = rounded<T>(randn(n, 73 + static_cast<uint64_t>(step)));
    g[0] = 0.0;
    run_adamw<T>(this->be, p, g, m, v, hp);
    ref_adamw(rp, g, rm, rv, hp);
  }
  // Three steps of ~10 roundings each, carried in T by the op and in double by the reference.
  EXPECT_LT(rel(p, rp), this->tol);
  EXPECT_LT(rel(m, rm), this->tol);
  EXPECT_LT(rel(v, rv), this->tol);
  EXPECT_EQ(m[0], 0.0);
  EXPECT_EQ(v[0], 0.0);
}

TYPED_TEST(CpuOpsForward, SumSquaresAndElementwiseHelpers) {
  using T = TypeParam;
  const int64_t n = 3 * 65536 + 77;  // several of the kernel's 65536-element chunks, the last partial
  const Vec x = rounded<T>(randn(n, 80));
  long double ref = 0;  // 64-bit mantissa on x86: essentially exact next to double
  for (double e : x) ref += static_cast<long double>(e) * e;
  // Accumulated in double in both dtypes (the squares of f32 values are exact in double). For positive terms any
  // summation order has relative error <= (n - 1) u_double, the rigorous bound used here (2.2e-11).
  const double bound = static_cast<double>(n - 1) * std::numeric_limits<double>::epsilon() / 2;
  EXPECT_NEAR(run_sum_squares<T>(this->be, x), static_cast<double>(ref), bound * static_cast<double>(ref));
  EXPECT_EQ(run_sum_squares<T>(this->be, Vec{}), 0.0);

  // scale: one rounding of x * alpha (alpha = 0.3 is itself rounded in f32: <= 2u in all).
  auto X = as<T>(Vec(x.begin(), x.begin() + 1000));
  this->be.scale(tensor(X, {1000}), 0.3);
  Vec sref(x.begin(), x.begin() + 1000);
  for (double& e : sref) e *= 0.3;
  EXPECT_LT(rel(to_vec(X), sref), this->tol);
  // copy and zero: exact.
  std::vector<T> Y(1000, T(kGarbage));
  this->be.copy(tensor(Y, {10, 100}), tensor(X, {1000}));
  EXPECT_EQ(Y, X);
  this->be.zero(tensor(Y, {1000}));
  EXPECT_EQ(Y, std::vector<T>(1000, T(0)));
}

// =============================================================================================================
// b. Backward against central finite differences (f64).
// =============================================================================================================

TEST(CpuOpsGrad, RmsNormDxDwAccumulate) {
  CpuBackend be;
  const int64_t N = 6, C = 24;
  const double eps = 1e-5;
  Vec x = randn(N * C, 100);
  for (int64_t c = 0; c < C; ++c) x[static_cast<size_t>(C + c)] *= 0.01;  // row 1: eps is a sizeable part of rms^2
  Vec w = randn(C, 101, 0.3);
  for (double& e : w) e += 1.0;
  const Vec R = randn(N * C, 102);
  const Vec dx0 = randn(N * C, 103), dw0 = randn(C, 104);  // the accumulators start non-zero
  const Vec rstd = run_rmsnorm_fwd<double>(be, x, w, N, C, eps).second;
  auto [dx, dw] = run_rmsnorm_bwd<double>(be, dx0, dw0, R, x, w, rstd, N, C);
  // From zero accumulators, for the increments.
  auto [gx, gw] = run_rmsnorm_bwd<double>(be, Vec(dx0.size(), 0.0), Vec(dw0.size(), 0.0), R, x, w, rstd, N, C);
  for (size_t i = 0; i < dx.size(); ++i)
    EXPECT_NEAR(dx[i], dx0[i] + gx[i], 1e-15 * (1 + std::fabs(dx[i]))) << "+= on dx";
  for (size_t i = 0; i < dw.size(); ++i)
    EXPECT_NEAR(dw[i], dw0[i] + gw[i], 1e-15 * (1 + std::fabs(dw[i]))) << "+= on dw";
  auto f = [&] { return run_rmsnorm_fwd<double>(be, x, w, N, C, eps).first; };
  expect_grad_matches_fd("rmsnorm dx", gx, x, R, f);
  expect_grad_matches_fd("rmsnorm dw", gw, w, R, f);
}

TEST(CpuOpsGrad, RopeBackwardIsInverseRotation) {
  CpuBackend be;
  const RopeShape s = kRope;  // pos0 = 4
  Vec x = randn(s.B * s.T * s.H * s.D, 110);
  const Vec R = randn(static_cast<int64_t>(x.size()), 111);
  const Vec grad = run_rope<double>(be, R, s, /*inverse=*/true);
  expect_grad_matches_fd("rope dx", grad, x, R, [&] { return run_rope<double>(be, x, s, false); });
}

TEST(CpuOpsGrad, SwiGlu) {
  CpuBackend be;
  Vec gate = randn(300, 120, 2.0), up = randn(300, 121);
  const Vec R = randn(300, 122);
  auto [dg, du] = run_swiglu_bwd<double>(be, R, gate, up);  // dgate/dup start as garbage: overwritten (=)
  auto f = [&] { return run_swiglu_fwd<double>(be, gate, up); };
  expect_grad_matches_fd("swiglu dgate", dg, gate, R, f);
  expect_grad_matches_fd("swiglu dup", du, up, R, f);
}

void check_attention_grad(const AttnShape& s) {
  CpuBackend be;
  Vec q = randn(s.q_elems(), 130, 1.5), k = randn(s.kv_elems(), 131, 1.5), v = randn(s.kv_elems(), 132);
  const Vec R = randn(s.q_elems(), 133);
  const Vec probs = run_attn_fwd<double>(be, q, k, v, s).second;
  auto [dq, dk, dv] = run_attn_bwd<double>(be, R, q, k, v, probs, s);  // outputs start as garbage: overwritten (=)
  auto f = [&] { return run_attn_fwd<double>(be, q, k, v, s).first; };
  // Every element for T = 5; for the long sequences every 5th, a deterministic sample: 5 is coprime with every
  // token stride (H D or KV D = 4, 8, 12, 16, 32 here), so it visits every head and channel, and tokens
  // throughout all 64-row blocks.
  const size_t stride = s.T > 16 ? 5 : 1;
  expect_grad_matches_fd("attention dq", dq, q, R, f, stride);
  expect_grad_matches_fd("attention dk", dk, k, R, f, stride);
  expect_grad_matches_fd("attention dv", dv, v, R, f, stride);
}

TEST_P(CpuOpsAttention, BackwardMatchesFiniteDifferences) { check_attention_grad(GetParam()); }

INSTANTIATE_TEST_SUITE_P(CpuOps, CpuOpsAttention, ::testing::ValuesIn(kAttnShapes),
                         [](const ::testing::TestParamInfo<AttnShape>& i) { return std::string(i.param.name); });

TEST(CpuOpsGrad, EmbeddingWithRepeatedIds) {
  CpuBackend be;
  const int64_t V = 7, C = 5;
  const std::vector<int32_t> ids = {3, 1, 3, 3, 0, 6, 1, 3, 2, 0};  // 4 and 5 unused
  Vec table = randn(V * C, 140);
  const Vec R = randn(static_cast<int64_t>(ids.size()) * C, 141), d0 = randn(V * C, 142);
  const Vec acc = run_embed_bwd<double>(be, d0, R, ids, C);
  Vec grad(acc.size());
  for (size_t i = 0; i < acc.size(); ++i) grad[i] = acc[i] - d0[i];
  expect_grad_matches_fd("embedding dtable", grad, table, R, [&] { return run_embed_fwd<double>(be, table, ids, C); });
}

TEST(CpuOpsGrad, SoftmaxXentGradIsScaledLossGradient) {
  CpuBackend be;
  const int64_t V = 11;
  const int32_t ignore = -100;
  const std::vector<int32_t> targets = {4, ignore, 0, 10, 7, ignore};
  const auto N = static_cast<int64_t>(targets.size());
  Vec logits = randn(N * V, 150, 2.0);
  const double scale = 0.37;
  const Vec grad = run_xent<double>(be, logits, targets, ignore, true, scale, V).logits;
  // L = sum of the per-row losses = the returned total (R = ones); the op writes scale * dL/dlogits.
  const Vec ones(static_cast<size_t>(N), 1.0);
  Vec grad_unscaled(grad);
  for (double& g : grad_unscaled) g /= scale;
  expect_grad_matches_fd("softmax_xent dlogits", grad_unscaled, logits, ones,
                         [&] { return run_xent<double>(be, logits, targets, ignore, false, 1.0, V).loss; });
  const XentOut r = run_xent<double>(be, logits, targets, ignore, false, 1.0, V);
  double sum = 0;
  for (double l : r.loss) sum += l;
  EXPECT_DOUBLE_EQ(r.total, sum);
}

// =============================================================================================================
// c. The f32 path against the f64 path on the same f32-representable inputs. The f64 result is exact to ~1e-15,
// so this measures the f32 path's own rounding, with the forward budget kFwdTol<float> = 1e-5 (see above)
// unless stated otherwise.
// =============================================================================================================

constexpr double kF32Tol = kFwdTol<float>;

TEST(CpuOpsF32VsF64, Matmul) {
  CpuBackend be;
  const int64_t M = 37, N = 29, K = 150;
  const Vec a = rounded<float>(randn(M * K, 200)), b = rounded<float>(randn(N * K, 201)),
            c = rounded<float>(randn(M * N, 202));
  EXPECT_LT(rel(run_matmul<float>(be, a, b, c, M, N, K, false, true, 1.0, 0.5),
                run_matmul<double>(be, a, b, c, M, N, K, false, true, 1.0, 0.5)),
            kF32Tol);
}

TEST(CpuOpsF32VsF64, RmsNormForwardBackward) {
  CpuBackend be;
  const int64_t N = 33, C = 64;
  const Vec x = rounded<float>(randn(N * C, 210)), dy = rounded<float>(randn(N * C, 211));
  Vec w = randn(C, 212, 0.3);
  for (double& e : w) e += 1.0;
  w = rounded<float>(w);
  auto [y32, r32] = run_rmsnorm_fwd<float>(be, x, w, N, C, 1e-5);
  auto [y64, r64] = run_rmsnorm_fwd<double>(be, x, w, N, C, 1e-5);
  EXPECT_LT(rel(y32, y64), kF32Tol);
  EXPECT_LT(rel(r32, r64), kF32Tol);
  const Vec z(static_cast<size_t>(N * C), 0.0), zw(static_cast<size_t>(C), 0.0);
  // Each backward runs on its own path's rstd, as in training.
  auto [dx32, dw32] = run_rmsnorm_bwd<float>(be, z, zw, dy, x, w, r32, N, C);
  auto [dx64, dw64] = run_rmsnorm_bwd<double>(be, z, zw, dy, x, w, r64, N, C);
  EXPECT_LT(rel(dx32, dx64), kF32Tol);
  EXPECT_LT(rel(dw32, dw64), kF32Tol);  // a column sum over N = 33 rows
}

TEST(CpuOpsF32VsF64, Rope) {
  CpuBackend be;
  const Vec x = rounded<float>(randn(kRope.B * kRope.T * kRope.H * kRope.D, 220));
  for (bool inv : {false, true})
    EXPECT_LT(rel(run_rope<float>(be, x, kRope, inv), run_rope<double>(be, x, kRope, inv)), kF32Tol) << inv;
}

TEST(CpuOpsF32VsF64, SwiGluForwardBackward) {
  CpuBackend be;
  const Vec g = rounded<float>(randn(500, 230, 3.0)), u = rounded<float>(randn(500, 231)),
            d = rounded<float>(randn(500, 232));
  EXPECT_LT(rel(run_swiglu_fwd<float>(be, g, u), run_swiglu_fwd<double>(be, g, u)), kF32Tol);
  auto [dg32, du32] = run_swiglu_bwd<float>(be, d, g, u);
  auto [dg64, du64] = run_swiglu_bwd<double>(be, d, g, u);
  EXPECT_LT(rel(dg32, dg64), kF32Tol);
  EXPECT_LT(rel(du32, du64), kF32Tol);
}

TEST(CpuOpsF32VsF64, AttentionForwardBackward) {
  CpuBackend be;
  const AttnShape s = kAttnShapes[1];  // T = 70, GQA
  const Vec q = rounded<float>(randn(s.q_elems(), 240, 1.5)), k = rounded<float>(randn(s.kv_elems(), 241, 1.5)),
            v = rounded<float>(randn(s.kv_elems(), 242)), g = rounded<float>(randn(s.q_elems(), 243));
  auto [o32, p32] = run_attn_fwd<float>(be, q, k, v, s);
  auto [o64, p64] = run_attn_fwd<double>(be, q, k, v, s);
  EXPECT_LT(rel(o32, o64), kF32Tol);
  EXPECT_LT(rel(p32, p64), kF32Tol);
  auto [dq32, dk32, dv32] = run_attn_bwd<float>(be, g, q, k, v, p32, s);
  auto [dq64, dk64, dv64] = run_attn_bwd<double>(be, g, q, k, v, p64, s);
  // The backward adds a subtraction (dP - rowsum(P dP)) and sums of up to rep * T = 140 terms for dk/dv on
  // top of the forward's errors: still O(sqrt(140) u) = 1e-6 typical, inside the same 1e-5 budget.
  EXPECT_LT(rel(dq32, dq64), kF32Tol);
  EXPECT_LT(rel(dk32, dk64), kF32Tol);
  EXPECT_LT(rel(dv32, dv64), kF32Tol);
}

TEST(CpuOpsF32VsF64, EmbeddingForwardBackward) {
  CpuBackend be;
  const int64_t V = 9, C = 40;
  const std::vector<int32_t> ids = {2, 8, 2, 0, 2, 5};
  const Vec t = rounded<float>(randn(V * C, 250)), g = rounded<float>(randn(static_cast<int64_t>(ids.size()) * C, 251));
  EXPECT_EQ(run_embed_fwd<float>(be, t, ids, C), run_embed_fwd<double>(be, t, ids, C));  // a gather: exact
  EXPECT_LT(rel(run_embed_bwd<float>(be, t, g, ids, C), run_embed_bwd<double>(be, t, g, ids, C)), kF32Tol);
}

TEST(CpuOpsF32VsF64, SoftmaxXent) {
  CpuBackend be;
  const int64_t V = 301;
  const std::vector<int32_t> targets = {0, 300, -100, 150, 7};
  const Vec l = rounded<float>(randn(static_cast<int64_t>(targets.size()) * V, 260, 3.0));
  const XentOut a = run_xent<float>(be, l, targets, -100, true, 0.5, V);
  const XentOut b = run_xent<double>(be, l, targets, -100, true, 0.5, V);
  EXPECT_LT(rel(a.logits, b.logits), kF32Tol);
  EXPECT_LT(rel(a.loss, b.loss), kF32Tol);
  EXPECT_NEAR(a.total, b.total, kF32Tol * std::fabs(b.total));
}

TEST(CpuOpsF32VsF64, AdamW) {
  CpuBackend be;
  const int64_t n = 300;
  Vec p32 = rounded<float>(randn(n, 270)), m32(static_cast<size_t>(n), 0.0), v32(static_cast<size_t>(n), 0.0);
  Vec p64 = p32, m64 = m32, v64 = v32;
  AdamWParams hp;
  hp.lr = 3e-3, hp.weight_decay = 0.1;
  for (int64_t step = 1; step <= 5; ++step) {
    hp.step = step;
    const Vec g = rounded<float>(randn(n, 270 + static_cast<uint64_t>(step)));
    run_adamw<float>(be, p32, g, m32, v32, hp);
    run_adamw<double>(be, p64, g, m64, v64, hp);
  }
  EXPECT_LT(rel(p32, p64), kF32Tol);
  EXPECT_LT(rel(m32, m64), kF32Tol);
  EXPECT_LT(rel(v32, v64), kF32Tol);
}

TEST(CpuOpsF32VsF64, SumSquares) {
  CpuBackend be;
  const Vec x = rounded<float>(randn(100000, 280));
  // Both accumulate the (exact in double) squares of the same values in double, but the two instantiations may
  // vectorise the reduction differently: for positive terms each is within (n - 1) u_double of the exact sum.
  const double s64 = run_sum_squares<double>(be, x);
  EXPECT_NEAR(run_sum_squares<float>(be, x), s64, 2.0 * 1e5 * std::numeric_limits<double>::epsilon() / 2 * s64);
}

// =============================================================================================================
// d. Thread-count independence, bit for bit, where the backend promises it (the resume-exactness contract).
// =============================================================================================================

#ifdef _OPENMP
class CpuOpsThreads : public ::testing::Test {
 protected:
  void TearDown() override { omp_set_num_threads(saved_); }
  // Runs f with 1 and then 2 OpenMP threads and returns both results.
  template <typename F>
  auto one_and_two(F&& f) {
    omp_set_num_threads(1);
    auto r1 = f();
    omp_set_num_threads(2);
    EXPECT_EQ(omp_get_max_threads(), 2);
    auto r2 = f();
    return std::make_pair(r1, r2);
  }
  CpuBackend be;
  const int saved_ = omp_get_max_threads();
};

template <typename T>
bool bitwise_equal(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

TEST_F(CpuOpsThreads, SumSquares) {
  const Vec x = randn(5 * 65536 + 123, 300);  // six chunks, split across threads with 2
  auto [a32, b32] = one_and_two([&] { return run_sum_squares<float>(be, x); });
  EXPECT_EQ(std::memcmp(&a32, &b32, sizeof(double)), 0) << a32 << " vs " << b32;
  auto [a64, b64] = one_and_two([&] { return run_sum_squares<double>(be, x); });
  EXPECT_EQ(std::memcmp(&a64, &b64, sizeof(double)), 0) << a64 << " vs " << b64;
}

TEST_F(CpuOpsThreads, EmbeddingBackward) {
  const int64_t V = 50, C = 100;  // seven 16-column blocks
  std::vector<int32_t> ids(300);
  for (size_t n = 0; n < ids.size(); ++n) ids[n] = static_cast<int32_t>((n * 7 + n / 13) % 17);  // heavy repeats
  const Vec d0 = randn(V * C, 301), g = randn(static_cast<int64_t>(ids.size()) * C, 302);
  auto [a, b] = one_and_two([&] { return as<float>(run_embed_bwd<float>(be, d0, g, ids, C)); });
  EXPECT_TRUE(bitwise_equal(a, b));
  auto [c, d] = one_and_two([&] { return run_embed_bwd<double>(be, d0, g, ids, C); });
  EXPECT_TRUE(bitwise_equal(c, d));
}

TEST_F(CpuOpsThreads, RmsNormBackward) {
  const int64_t N = 257, C = 96;
  const Vec x = randn(N * C, 310), dy = randn(N * C, 311), w = randn(C, 312), dx0 = randn(N * C, 313),
            dw0 = randn(C, 314);
  const Vec rstd = run_rmsnorm_fwd<double>(be, x, w, N, C, 1e-5).second;
  auto [a, b] = one_and_two([&] { return run_rmsnorm_bwd<float>(be, dx0, dw0, dy, x, w, rstd, N, C); });
  EXPECT_TRUE(bitwise_equal(as<float>(a.first), as<float>(b.first))) << "dx";
  EXPECT_TRUE(bitwise_equal(as<float>(a.second), as<float>(b.second))) << "dw";
  auto [c, d] = one_and_two([&] { return run_rmsnorm_bwd<double>(be, dx0, dw0, dy, x, w, rstd, N, C); });
  EXPECT_TRUE(bitwise_equal(c.first, d.first)) << "dx";
  EXPECT_TRUE(bitwise_equal(c.second, d.second)) << "dw";
}
#endif
