// Attention with an AttnSpan: packed examples (kv_start), a KV cache longer than the keys in use (kv_len), and
// queries that are only the last Tq of the keys (decoding). Forward against a naive double-precision loop over
// exactly the keys each query may see; backward against central finite differences in f64; and the packed
// result against each example run alone.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "polyllama/backend/cpu/cpu_backend.hpp"
#include "polyllama/core/random.hpp"
#include "test_support.hpp"

using namespace polyllama;
using polyllama::test::max_rel_err;

namespace {

using Vec = std::vector<double>;

struct Case {
  int64_t B, Tq, Tk, kv_len, H, KV, D;
  std::vector<int32_t> kv_start;  // (B, Tq); empty: plain causal
};

Vec randn(int64_t n, uint64_t stream) {
  Vec v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = random_normal(77, stream, static_cast<uint64_t>(i));
  return v;
}

template <typename T> std::vector<T> as(const Vec& v) { return std::vector<T>(v.begin(), v.end()); }
template <typename T> Vec to_vec(const std::vector<T>& v) { return Vec(v.begin(), v.end()); }
template <typename T> Vec rounded(const Vec& v) { return to_vec(as<T>(v)); }

// Query t of row b sees keys [lo, kv_len - Tq + t].
int64_t lo_of(const Case& c, int64_t b, int64_t t) {
  return c.kv_start.empty() ? 0 : c.kv_start[static_cast<size_t>(b * c.Tq + t)];
}

// Naive: p_j = exp(s_j) / sum over visible keys, out = sum p_j v_j. probs (B, H, Tq, Tk), zero where masked.
std::pair<Vec, Vec> reference(const Case& c, const Vec& q, const Vec& k, const Vec& v) {
  Vec out(static_cast<size_t>(c.B * c.Tq * c.H * c.D), 0.0), probs(static_cast<size_t>(c.B * c.H * c.Tq * c.Tk), 0.0);
  const int64_t rep = c.H / c.KV;
  for (int64_t b = 0; b < c.B; ++b)
    for (int64_t h = 0; h < c.H; ++h)
      for (int64_t t = 0; t < c.Tq; ++t) {
        const int64_t lo = lo_of(c, b, t), hi = c.kv_len - c.Tq + t, g = h / rep;
        std::vector<double> s;
        for (int64_t j = lo; j <= hi; ++j) {
          double dot = 0;
          for (int64_t d = 0; d < c.D; ++d)
            dot += q[static_cast<size_t>(((b * c.Tq + t) * c.H + h) * c.D + d)] *
                   k[static_cast<size_t>(((b * c.Tk + j) * c.KV + g) * c.D + d)];
          s.push_back(dot / std::sqrt(static_cast<double>(c.D)));
        }
        const double mx = *std::max_element(s.begin(), s.end());
        double z = 0;
        for (double& e : s) z += (e = std::exp(e - mx));
        for (int64_t j = lo; j <= hi; ++j) {
          const double p = s[static_cast<size_t>(j - lo)] / z;
          probs[static_cast<size_t>(((b * c.H + h) * c.Tq + t) * c.Tk + j)] = p;
          for (int64_t d = 0; d < c.D; ++d)
            out[static_cast<size_t>(((b * c.Tq + t) * c.H + h) * c.D + d)] +=
                p * v[static_cast<size_t>(((b * c.Tk + j) * c.KV + g) * c.D + d)];
        }
      }
  return {out, probs};
}

AttnSpan span_of(const Case& c) { return {c.kv_len, c.kv_start.empty() ? nullptr : c.kv_start.data()}; }

template <typename T> std::pair<Vec, Vec> forward(CpuBackend& be, const Case& c, const Vec& q, const Vec& k, const Vec& v) {
  auto Q = as<T>(q), K = as<T>(k), V = as<T>(v);
  std::vector<T> O(Q.size(), T(1e30)), P(static_cast<size_t>(c.B * c.H * c.Tq * c.Tk), T(1e30));
  be.attention_forward(Tensor(O.data(), dtype_of<T>(), {c.B, c.Tq, c.H, c.D}),
                       Tensor(P.data(), dtype_of<T>(), {c.B, c.H, c.Tq, c.Tk}),
                       Tensor(Q.data(), dtype_of<T>(), {c.B, c.Tq, c.H, c.D}),
                       Tensor(K.data(), dtype_of<T>(), {c.B, c.Tk, c.KV, c.D}),
                       Tensor(V.data(), dtype_of<T>(), {c.B, c.Tk, c.KV, c.D}), span_of(c));
  return {to_vec(O), to_vec(P)};
}

// Two packed examples per row ([0, 5) and [5, 13) in row 0; [0, 9) and [9, 13) in row 1) plus the left-padded
// prompt layout (two pad tokens that only see themselves) and a decode step over a longer cache.
std::vector<Case> cases() {
  std::vector<Case> cs;
  {
    Case c{2, 13, 13, 13, 4, 2, 8, {}};
    for (int64_t t = 0; t < 13; ++t) c.kv_start.push_back(t < 5 ? 0 : 5);
    for (int64_t t = 0; t < 13; ++t) c.kv_start.push_back(t < 9 ? 0 : 9);
    cs.push_back(c);
  }
  {
    Case c{1, 7, 7, 7, 2, 1, 6, {0, 1, 2, 2, 2, 2, 2}};  // rows 0, 1 are padding, the prompt starts at 2
    cs.push_back(c);
  }
  {
    Case c{2, 1, 12, 9, 4, 4, 8, {3, 0}};  // one new token at position 8 of a 12-slot cache
    cs.push_back(c);
  }
  {
    Case c{1, 66, 72, 70, 2, 1, 2, {}};  // two 64-row blocks, queries the last 66 of 70 keys
    for (int64_t t = 0; t < 66; ++t) c.kv_start.push_back(t < 40 ? 0 : 44);
    cs.push_back(c);
  }
  return cs;
}

Vec inputs_q(const Case& c) { return randn(c.B * c.Tq * c.H * c.D, 1); }
Vec inputs_kv(const Case& c, uint64_t s) { return randn(c.B * c.Tk * c.KV * c.D, s); }

}  // namespace

// f32 within 1e-5 and f64 within 1e-12 normwise: the same budget as the unmasked attention (test_cpu_ops.cpp).
TEST(AttentionSpan, ForwardMatchesNaiveReference) {
  CpuBackend be;
  for (const Case& c : cases()) {
    const Vec q = rounded<float>(inputs_q(c)), k = rounded<float>(inputs_kv(c, 2)), v = rounded<float>(inputs_kv(c, 3));
    auto [ro, rp] = reference(c, q, k, v);
    auto [o32, p32] = forward<float>(be, c, q, k, v);
    auto [o64, p64] = forward<double>(be, c, q, k, v);
    EXPECT_LT(max_rel_err(o32, ro), 1e-5);
    EXPECT_LT(max_rel_err(p32, rp), 1e-5);
    EXPECT_LT(max_rel_err(o64, ro), 1e-12);
    // Masked probabilities are exactly 0, including columns past kv_len that no GEMM touched.
    for (size_t i = 0; i < rp.size(); ++i)
      if (rp[i] == 0.0) ASSERT_EQ(p64[i], 0.0) << i;
  }
}

// L = sum(out * R); dL/dx by central differences (h = 1e-6, f64) for every input element. Budget as in
// test_cpu_ops.cpp: truncation ~1e-13, roundoff ~4e-9, gradients O(1); 1e-6 relative.
TEST(AttentionSpan, BackwardMatchesFiniteDifferences) {
  CpuBackend be;
  for (const Case& c : cases()) {
    Vec q = inputs_q(c), k = inputs_kv(c, 2), v = inputs_kv(c, 3);
    const Vec R = randn(static_cast<int64_t>(q.size()), 4);
    auto loss = [&] {
      const Vec o = forward<double>(be, c, q, k, v).first;
      double s = 0;
      for (size_t i = 0; i < o.size(); ++i) s += o[i] * R[i];
      return s;
    };
    const Vec probs = forward<double>(be, c, q, k, v).second;
    Vec dq(q.size(), 1e30), dk(k.size(), 1e30), dv(v.size(), 1e30), Rc = R, P = probs;
    Vec scratch(static_cast<size_t>(be.threads() * c.Tq * c.Tk));  // one (Tq, Tk) block per thread
    be.attention_backward(Tensor(dq.data(), DType::f64, {c.B, c.Tq, c.H, c.D}),
                          Tensor(dk.data(), DType::f64, {c.B, c.Tk, c.KV, c.D}),
                          Tensor(dv.data(), DType::f64, {c.B, c.Tk, c.KV, c.D}),
                          Tensor(Rc.data(), DType::f64, {c.B, c.Tq, c.H, c.D}),
                          Tensor(q.data(), DType::f64, {c.B, c.Tq, c.H, c.D}),
                          Tensor(k.data(), DType::f64, {c.B, c.Tk, c.KV, c.D}),
                          Tensor(v.data(), DType::f64, {c.B, c.Tk, c.KV, c.D}), Tensor{},
                          Tensor(P.data(), DType::f64, {c.B, c.H, c.Tq, c.Tk}),
                          Tensor(scratch.data(), DType::f64, {static_cast<int64_t>(scratch.size())}), span_of(c));
    auto fd = [&](Vec& x) {
      Vec g(x.size());
      for (size_t i = 0; i < x.size(); ++i) {
        const double x0 = x[i];
        x[i] = x0 + 1e-6;
        const double lp = loss();
        x[i] = x0 - 1e-6;
        const double lm = loss();
        x[i] = x0;
        g[i] = (lp - lm) / 2e-6;
      }
      return g;
    };
    EXPECT_LT(max_rel_err(dq, fd(q)), 1e-6);
    EXPECT_LT(max_rel_err(dk, fd(k)), 1e-6);  // rows past kv_len: exactly 0 both ways
    EXPECT_LT(max_rel_err(dv, fd(v)), 1e-6);
  }
}

// A row packing examples [0, 5) and [5, 13) gives, for the second example, what that example gives alone in
// its own row once its keys are those of the example (positions do not enter attention itself).
TEST(AttentionSpan, PackedExampleEqualsExampleAlone) {
  CpuBackend be;
  const Case packed = cases()[0];
  const Vec q = inputs_q(packed), k = inputs_kv(packed, 2), v = inputs_kv(packed, 3);
  const Vec out = forward<double>(be, packed, q, k, v).first;
  const int64_t s0 = 5, n = 8, H = packed.H, KV = packed.KV, D = packed.D;
  Case alone{1, n, n, n, H, KV, D, {}};
  auto rows = [&](const Vec& x, int64_t width) {
    return Vec(x.begin() + s0 * width, x.begin() + (s0 + n) * width);  // row 0 of the batch
  };
  const Vec o1 = forward<double>(be, alone, rows(q, H * D), rows(k, KV * D), rows(v, KV * D)).first;
  EXPECT_LT(max_rel_err(rows(out, H * D), o1), 1e-13);
}

// Decoding (span.for_backward false): the workspace is one score block per thread, not (B, H, Tq, Tk), and the
// heads of a kv group share the GEMMs. Against the same naive reference, on the cases above and on ones that
// take several blocks: grouped heads (4 and 8 per kv head), a long cache before the queries (large blocks), a
// prompt's first chunk (offset 0: small blocks), left padding; with the workspace the backend asks for and with
// room for one block only (one thread does all the work).
TEST(AttentionSpan, DecodingWorkspaceMatchesNaiveReference) {
  CpuBackend be;
  std::vector<Case> cs = cases();
  {
    Case c{2, 150, 420, 400, 8, 2, 16, {}};
    for (int64_t b = 0; b < 2; ++b)
      for (int64_t t = 0; t < 150; ++t) c.kv_start.push_back(b == 0 ? 0 : (t < 60 ? 17 : 310));
    cs.push_back(c);
  }
  cs.push_back(Case{1, 300, 300, 300, 4, 4, 8, {}});
  {
    Case c{3, 5, 600, 590, 16, 2, 8, {}};
    for (int64_t b = 0; b < 3; ++b)
      for (int64_t t = 0; t < 5; ++t) c.kv_start.push_back(static_cast<int32_t>(b * 40));
    cs.push_back(c);
  }
  for (const Case& c : cs) {
    const Vec q = rounded<float>(inputs_q(c)), k = rounded<float>(inputs_kv(c, 2)), v = rounded<float>(inputs_kv(c, 3));
    const Vec ro = reference(c, q, k, v).first;
    AttnSpan span = span_of(c);
    span.for_backward = false;
    auto run = [&](auto zero, int64_t work_elems) {
      using T = decltype(zero);
      auto Q = as<T>(q), K = as<T>(k), V = as<T>(v);
      std::vector<T> O(Q.size(), T(1e30)), W(static_cast<size_t>(work_elems), T(1e30));
      be.attention_forward(Tensor(O.data(), dtype_of<T>(), {c.B, c.Tq, c.H, c.D}),
                           Tensor(W.data(), dtype_of<T>(), {work_elems}),
                           Tensor(Q.data(), dtype_of<T>(), {c.B, c.Tq, c.H, c.D}),
                           Tensor(K.data(), dtype_of<T>(), {c.B, c.Tk, c.KV, c.D}),
                           Tensor(V.data(), dtype_of<T>(), {c.B, c.Tk, c.KV, c.D}), span);
      return to_vec(O);
    };
    const int64_t asked = be.attention_decode_elems(c.B, c.H, c.Tq, c.Tk, c.D);
    const int64_t one = be.attention_decode_elems(1, 1, 1, c.Tk, c.D);  // a single block
    EXPECT_LT(asked, c.B * c.H * c.Tq * c.Tk + be.threads() * 256 * (c.Tk + 2 * c.D) + 1);
    EXPECT_LT(max_rel_err(run(float{}, asked), ro), 1e-5) << c.B << "x" << c.Tq << " H " << c.H << "/" << c.KV;
    EXPECT_LT(max_rel_err(run(double{}, asked), ro), 1e-12) << c.B << "x" << c.Tq << " H " << c.H << "/" << c.KV;
    EXPECT_LT(max_rel_err(run(double{}, one), ro), 1e-12) << c.B << "x" << c.Tq << " H " << c.H << "/" << c.KV;
  }
  // Less than one block is a clear error, not a write past the end.
  const Case c = cs[0];
  std::vector<double> Q(static_cast<size_t>(c.B * c.Tq * c.H * c.D)), O(Q.size()), W(8),
      K(static_cast<size_t>(c.B * c.Tk * c.KV * c.D)), V(K.size());
  AttnSpan span = span_of(c);
  span.for_backward = false;
  EXPECT_THROW(be.attention_forward(Tensor(O.data(), DType::f64, {c.B, c.Tq, c.H, c.D}), Tensor(W.data(), DType::f64, {8}),
                                    Tensor(Q.data(), DType::f64, {c.B, c.Tq, c.H, c.D}),
                                    Tensor(K.data(), DType::f64, {c.B, c.Tk, c.KV, c.D}),
                                    Tensor(V.data(), DType::f64, {c.B, c.Tk, c.KV, c.D}), span),
               std::exception);
}
