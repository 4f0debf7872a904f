// The CUDA attention launchers against the CPU backend in fp64 on fresh random inputs (the seed is printed;
// PL_ATTN_SEED=<n> replays one). Outputs, lse and the workspace are poisoned with NaN before every call, so an
// element a kernel forgot to write fails the comparison.
// Tolerances, as max |x - ref| / max |ref| per tensor (the project's max_rel_err):
//  - f32 within 1e-5: fp32 arithmetic over at most a few thousand terms (~1e-6) against fp64;
//  - bf16 within 1e-2: inputs are rounded to bf16 before the fp64 reference, so what is left is the bf16
//    rounding of the outputs (2^-9 = 2e-3) and of the probabilities and dS fed to the tensor cores (2^-9 each,
//    random in sign, so they grow like sqrt(n) against sums that grow like sqrt(n) too).
// lse is checked against log-sum-exp computed here in fp64, absolute error over max(1, |lse|).
// Skips when cudaGetDeviceCount fails (no driver or no device: error 35 on the build machines).
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "attention.cuh"
#include "polyllama/backend/cpu/cpu_backend.hpp"
#include "polyllama/ckpt/safetensors.hpp"
#include "polyllama/core/random.hpp"
#include "test_support.hpp"

using namespace polyllama;

namespace {

void cuda_ok(cudaError_t e, const char* expr, int line) {
  if (e != cudaSuccess)
    throw std::runtime_error(std::string("CUDA call failed: ") + expr + ": " + cudaGetErrorName(e) + " (" +
                             cudaGetErrorString(e) + ") at " + __FILE__ + ":" + std::to_string(line));
}
#define CUDA_OK(expr) cuda_ok((expr), #expr, __LINE__)

uint64_t seed() {
  static const uint64_t s = [] {
    const char* env = std::getenv("PL_ATTN_SEED");
    return env ? std::strtoull(env, nullptr, 10) : static_cast<uint64_t>(std::random_device{}());
  }();
  return s;
}


struct Case {
  const char* what;
  DType dtype;
  int64_t B, Tq, Tk, kv_len, H, KV, D;
  int packs;  // 0: plain causal; n: each row packs about n examples (kv_start at their first keys)
};

std::string str(const Case& c) {
  std::ostringstream s;
  s << c.what << " [" << dtype_name(c.dtype) << " B=" << c.B << " Tq=" << c.Tq << " Tk=" << c.Tk
    << " kv_len=" << c.kv_len << " H=" << c.H << " KV=" << c.KV << " D=" << c.D << " packs=" << c.packs
    << " seed=" << seed() << "]";
  return s.str();
}

using Vec = std::vector<double>;

// Random values, rounded to what the device holds (bf16 or f32), as doubles.
Vec random_input(const Case& c, int64_t n, uint64_t stream) {
  Vec v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const float x = static_cast<float>(random_normal(seed(), stream, static_cast<uint64_t>(i)));
    v[static_cast<size_t>(i)] = c.dtype == DType::bf16 ? bf16_to_f32(f32_to_bf16(x)) : x;
  }
  return v;
}

// kv_start per (b, t): the first key of the example that holds key position kv_len - Tq + t; example
// boundaries drawn at random in each row.
std::vector<int32_t> make_kv_start(const Case& c) {
  std::vector<int32_t> ks;
  if (c.packs == 0) return ks;
  std::mt19937_64 rng(seed() ^ 0x5eedull);
  for (int64_t b = 0; b < c.B; ++b) {
    std::vector<int32_t> first(static_cast<size_t>(c.kv_len), 0);
    int32_t cur = 0;
    for (int64_t j = 1; j < c.kv_len; ++j) {
      if (std::uniform_int_distribution<int64_t>(0, c.kv_len - 1)(rng) < c.packs) cur = static_cast<int32_t>(j);
      first[static_cast<size_t>(j)] = cur;
    }
    for (int64_t t = 0; t < c.Tq; ++t) ks.push_back(first[static_cast<size_t>(c.kv_len - c.Tq + t)]);
  }
  return ks;
}

struct DeviceBuf {
  void* p = nullptr;
  size_t bytes = 0;
  explicit DeviceBuf(size_t n) : bytes(n) { CUDA_OK(cudaMalloc(&p, n == 0 ? 1 : n)); }
  ~DeviceBuf() { cudaFree(p); }
  DeviceBuf(const DeviceBuf&) = delete;
  DeviceBuf& operator=(const DeviceBuf&) = delete;
  void poison() { CUDA_OK(cudaMemset(p, 0xff, bytes)); }  // all-ones: NaN in f32 and in bf16
};

size_t esize(DType t) { return t == DType::bf16 ? 2 : 4; }

void upload(DeviceBuf& d, const Vec& x, DType t) {
  std::vector<unsigned char> host(x.size() * esize(t));
  for (size_t i = 0; i < x.size(); ++i) {
    if (t == DType::bf16) {
      const uint16_t h = f32_to_bf16(static_cast<float>(x[i]));
      std::memcpy(host.data() + 2 * i, &h, 2);
    } else {
      const float f = static_cast<float>(x[i]);
      std::memcpy(host.data() + 4 * i, &f, 4);
    }
  }
  CUDA_OK(cudaMemcpy(d.p, host.data(), host.size(), cudaMemcpyHostToDevice));
}

Vec download(const DeviceBuf& d, size_t n, DType t) {
  std::vector<unsigned char> host(n * esize(t));
  CUDA_OK(cudaMemcpy(host.data(), d.p, host.size(), cudaMemcpyDeviceToHost));
  Vec x(n);
  for (size_t i = 0; i < n; ++i) {
    if (t == DType::bf16) {
      uint16_t h;
      std::memcpy(&h, host.data() + 2 * i, 2);
      x[i] = bf16_to_f32(h);
    } else {
      float f;
      std::memcpy(&f, host.data() + 4 * i, 4);
      x[i] = f;
    }
  }
  return x;
}

// Fails with the case, the tensor, the errors and the first element out of tolerance (or NaN).
// floor: the magnitude below which an error is rounding of the terms that cancel (see grad_floor).
void expect_close(const Case& c, const char* name, const Vec& got, const Vec& ref, double tol, double floor = 0) {
  ASSERT_EQ(got.size(), ref.size());
  double scale = 0, max_abs = 0, num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) scale = std::max(scale, std::abs(ref[i]));
  scale = std::max({scale, floor, 1e-30});
  int64_t first_bad = -1, nan_count = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double e = std::abs(got[i] - ref[i]);
    if (std::isnan(got[i])) ++nan_count;
    if (!(e <= tol * scale) && first_bad < 0) first_bad = static_cast<int64_t>(i);
    if (e > max_abs || std::isnan(e)) max_abs = e;
    num += e * e;
    den += ref[i] * ref[i];
  }
  const double rel = max_abs / scale, normwise = std::sqrt(num / std::max(den, 1e-300));
  if (first_bad < 0) return;
  const size_t fb = static_cast<size_t>(first_bad);
  ADD_FAILURE() << str(c) << " " << name << ": max abs err " << max_abs << ", max rel err " << rel
                << " (tolerance " << tol << "), normwise " << normwise << ", NaN count " << nan_count
                << ", first bad flat index " << first_bad << " got " << got[fb] << " want " << ref[fb];
}

double rms_of(const Vec& x) {
  double m = 0;
  for (double v : x) m += v * v;
  return std::sqrt(m / static_cast<double>(std::max<size_t>(1, x.size())));
}

// dq = scale * sum_j p_j (dp_j - delta) k_j and dk = scale * sum_i p_i (dp_i - delta_i) q_i are differences of
// terms of typical size scale * sqrt(D) rms(dout) rms(v) * rms(k) (or rms(q)): where those cancel (one visible
// key: dp = delta exactly, so the true gradient is 0) the kernel's result is the rounding of the terms, not of
// the result. The error is measured against the larger of the result's max and that term size (scale * sqrt(D)
// = 1; with unit-variance inputs the term size is about 1, below the result's max of a few units).
double grad_floor(const Vec& dout, const Vec& v, const Vec& other) { return rms_of(dout) * rms_of(v) * rms_of(other); }

// lse in fp64 from the (rounded) inputs: log sum over the visible keys of exp(q.k / sqrt(D)).
Vec reference_lse(const Case& c, const Vec& q, const Vec& k, const std::vector<int32_t>& ks) {
  Vec lse(static_cast<size_t>(c.B * c.H * c.Tq));
  const int64_t rep = c.H / c.KV;
  for (int64_t b = 0; b < c.B; ++b)
    for (int64_t h = 0; h < c.H; ++h)
      for (int64_t t = 0; t < c.Tq; ++t) {
        const int64_t lo = ks.empty() ? 0 : ks[static_cast<size_t>(b * c.Tq + t)], hi = c.kv_len - c.Tq + t;
        Vec s;
        for (int64_t j = lo; j <= hi; ++j) {
          double dot = 0;
          for (int64_t d = 0; d < c.D; ++d)
            dot += q[static_cast<size_t>(((b * c.Tq + t) * c.H + h) * c.D + d)] *
                   k[static_cast<size_t>(((b * c.Tk + j) * c.KV + h / rep) * c.D + d)];
          s.push_back(dot / std::sqrt(static_cast<double>(c.D)));
        }
        double mx = s[0], z = 0;
        for (double x : s) mx = std::max(mx, x);
        for (double x : s) z += std::exp(x - mx);
        lse[static_cast<size_t>((b * c.H + h) * c.Tq + t)] = mx + std::log(z);
      }
  return lse;
}

void run_case(const Case& c) {
  SCOPED_TRACE(str(c));
  const double tol = c.dtype == DType::bf16 ? 1e-2 : 1e-5;
  const int64_t nq = c.B * c.Tq * c.H * c.D, nk = c.B * c.Tk * c.KV * c.D, nl = c.B * c.H * c.Tq;
  const Vec q = random_input(c, nq, 1), k = random_input(c, nk, 2), v = random_input(c, nk, 3),
            dout = random_input(c, nq, 4);
  const std::vector<int32_t> ks = make_kv_start(c);

  // Reference: the CPU backend in fp64 on the same (rounded) inputs.
  CpuBackend cpu;
  Vec rq = q, rk = k, rv = v, rdo = dout, rout(static_cast<size_t>(nq)), probs(static_cast<size_t>(nl * c.Tk));
  Vec rdq(static_cast<size_t>(nq)), rdk(static_cast<size_t>(nk)), rdv(static_cast<size_t>(nk));
  Vec scratch(static_cast<size_t>(cpu.attention_scratch_elems(c.B, c.H, c.Tk)));
  const AttnSpan span{c.kv_len, ks.empty() ? nullptr : ks.data()};
  auto T = [](Vec& x, std::initializer_list<int64_t> dims) { return Tensor(x.data(), DType::f64, dims); };
  cpu.attention_forward(T(rout, {c.B, c.Tq, c.H, c.D}), T(probs, {c.B, c.H, c.Tq, c.Tk}), T(rq, {c.B, c.Tq, c.H, c.D}),
                        T(rk, {c.B, c.Tk, c.KV, c.D}), T(rv, {c.B, c.Tk, c.KV, c.D}), span);
  cpu.attention_backward(T(rdq, {c.B, c.Tq, c.H, c.D}), T(rdk, {c.B, c.Tk, c.KV, c.D}), T(rdv, {c.B, c.Tk, c.KV, c.D}),
                         T(rdo, {c.B, c.Tq, c.H, c.D}), T(rq, {c.B, c.Tq, c.H, c.D}), T(rk, {c.B, c.Tk, c.KV, c.D}),
                         T(rv, {c.B, c.Tk, c.KV, c.D}), Tensor{}, T(probs, {c.B, c.H, c.Tq, c.Tk}),
                         T(scratch, {static_cast<int64_t>(scratch.size())}), span);
  const Vec rlse = reference_lse(c, q, k, ks);

  // Device.
  const size_t es = esize(c.dtype);
  DeviceBuf q_d(static_cast<size_t>(nq) * es), k_d(static_cast<size_t>(nk) * es), v_d(static_cast<size_t>(nk) * es),
      dout_d(static_cast<size_t>(nq) * es), out_d(static_cast<size_t>(nq) * es), lse_d(static_cast<size_t>(nl) * 4),
      gq(static_cast<size_t>(nq) * es), gk(static_cast<size_t>(nk) * es), gv(static_cast<size_t>(nk) * es),
      kvs(ks.size() * 4);
  // Rows past kv_len are unused cache slots: NaN on the device, so a kernel that lets one into a result fails.
  Vec k_nan = k, v_nan = v;
  for (int64_t b = 0; b < c.B; ++b)
    for (int64_t i = c.kv_len * c.KV * c.D; i < c.Tk * c.KV * c.D; ++i)
      k_nan[static_cast<size_t>(b * c.Tk * c.KV * c.D + i)] = v_nan[static_cast<size_t>(b * c.Tk * c.KV * c.D + i)] =
          std::nan("");
  upload(q_d, q, c.dtype);
  upload(k_d, k_nan, c.dtype);
  upload(v_d, v_nan, c.dtype);
  upload(dout_d, dout, c.dtype);
  if (!ks.empty()) CUDA_OK(cudaMemcpy(kvs.p, ks.data(), ks.size() * 4, cudaMemcpyHostToDevice));
  cuda::AttnArgs a;
  a.q = q_d.p;
  a.k = k_d.p;
  a.v = v_d.p;
  a.out = out_d.p;
  a.lse = static_cast<float*>(lse_d.p);
  a.B = c.B, a.Tq = c.Tq, a.Tk = c.Tk, a.H = c.H, a.KV = c.KV, a.D = c.D, a.kv_len = c.kv_len;
  a.kv_start = ks.empty() ? nullptr : static_cast<const int32_t*>(kvs.p);
  a.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(c.D)));
  a.dtype = c.dtype;
  DeviceBuf ws(cuda::attention_backward_workspace_bytes(a));
  out_d.poison();
  lse_d.poison();
  gq.poison();
  gk.poison();
  gv.poison();
  ws.poison();
  cuda::attention_forward(nullptr, a);
  CUDA_OK(cudaDeviceSynchronize());
  cuda::attention_backward(nullptr, a, dout_d.p, gq.p, gk.p, gv.p, ws.p);
  CUDA_OK(cudaDeviceSynchronize());

  expect_close(c, "out", download(out_d, static_cast<size_t>(nq), c.dtype), rout, tol);
  Vec lse = download(lse_d, static_cast<size_t>(nl), DType::f32);
  {
    double worst = 0;
    int64_t bad = -1;
    for (size_t i = 0; i < lse.size(); ++i) {
      const double e = std::abs(lse[i] - rlse[i]) / std::max(1.0, std::abs(rlse[i]));
      if (!(e <= tol) && bad < 0) bad = static_cast<int64_t>(i);
      if (!(e <= worst)) worst = e;
    }
    if (bad >= 0)
      ADD_FAILURE() << str(c) << " lse: max rel err " << worst << " (tolerance " << tol << "), first bad index "
                    << bad << " (b, h, t) layout, got " << lse[static_cast<size_t>(bad)] << " want "
                    << rlse[static_cast<size_t>(bad)];
  }
  expect_close(c, "dq", download(gq, static_cast<size_t>(nq), c.dtype), rdq, tol, grad_floor(dout, v, k));
  const Vec gdk = download(gk, static_cast<size_t>(nk), c.dtype), gdv = download(gv, static_cast<size_t>(nk), c.dtype);
  expect_close(c, "dk", gdk, rdk, tol, grad_floor(dout, v, q));
  expect_close(c, "dv", gdv, rdv, tol);
  // Rows past kv_len: exactly zero by contract.
  for (int64_t b = 0; b < c.B; ++b)
    for (int64_t j = c.kv_len; j < c.Tk; ++j)
      for (int64_t i = 0; i < c.KV * c.D; ++i) {
        const size_t at = static_cast<size_t>((b * c.Tk + j) * c.KV * c.D + i);
        ASSERT_TRUE(gdk[at] == 0.0 && gdv[at] == 0.0) << str(c) << " dk/dv row " << j << " >= kv_len not zero";
      }
}

const std::vector<Case>& cases() {
  static const std::vector<Case> cs = {
      // bf16, head dims 64 and 128: the tensor-core kernels.
      {"odd T", DType::bf16, 2, 130, 130, 130, 4, 4, 128, 0},
      {"odd T, GQA 8/2", DType::bf16, 1, 17, 17, 17, 8, 2, 64, 0},
      {"T = 1", DType::bf16, 2, 1, 1, 1, 2, 1, 128, 0},
      {"tile-aligned", DType::bf16, 1, 256, 256, 256, 4, 2, 128, 0},
      {"several tiles, GQA 8/2", DType::bf16, 1, 515, 515, 515, 8, 2, 64, 0},
      {"decode over a KV cache", DType::bf16, 2, 1, 300, 257, 8, 2, 128, 0},
      {"chunked prefill over a cache", DType::bf16, 2, 37, 200, 150, 4, 2, 64, 0},
      {"packed rows", DType::bf16, 2, 257, 257, 257, 8, 2, 128, 4},
      {"packed rows, cache", DType::bf16, 2, 200, 260, 230, 4, 1, 64, 3},
      {"packed decode", DType::bf16, 3, 1, 90, 90, 4, 2, 128, 2},
      // bf16 with a head dim the flash kernels do not take: the plain fallback.
      {"fallback D=40, packed", DType::bf16, 2, 130, 130, 130, 8, 2, 40, 3},
      {"fallback D=40, decode", DType::bf16, 1, 1, 64, 50, 4, 2, 40, 0},
      // f32: the reference path.
      {"f32 odd T, GQA 8/2", DType::f32, 2, 130, 130, 130, 8, 2, 128, 0},
      {"f32 decode", DType::f32, 2, 1, 300, 257, 4, 2, 64, 0},
      {"f32 D=40 packed", DType::f32, 2, 17, 17, 17, 4, 4, 40, 2},
      {"f32 T = 1", DType::f32, 1, 1, 1, 1, 2, 2, 64, 0},
      {"f32 chunked prefill, packed", DType::f32, 1, 70, 96, 90, 4, 2, 128, 3},
  };
  return cs;
}

class CudaAttention : public ::testing::TestWithParam<size_t> {};

TEST_P(CudaAttention, MatchesCpuReference) {
  SKIP_WITHOUT_GPU();
  run_case(cases()[GetParam()]);
}

INSTANTIATE_TEST_SUITE_P(Shapes, CudaAttention, ::testing::Range<size_t>(0, cases().size()),
                         [](const ::testing::TestParamInfo<size_t>& info) {
                           std::string n = std::to_string(info.param) + "_" + cases()[info.param].what;
                           for (char& ch : n)
                             if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           return n;
                         });

// At training scale the CPU reference is too slow, so the bf16 (flash) path is compared with the f32 path (plain
// kernels, checked against the CPU above) on the same bf16-rounded inputs: many blocks, many key tiles per
// block, GQA 16/4, packed rows. Tolerance as for bf16 above.
void run_against_f32(const Case& c) {
  SCOPED_TRACE(str(c));
  const int64_t nq = c.B * c.Tq * c.H * c.D, nk = c.B * c.Tk * c.KV * c.D, nl = c.B * c.H * c.Tq;
  const Vec q = random_input(c, nq, 11), k = random_input(c, nk, 12), v = random_input(c, nk, 13),
            dout = random_input(c, nq, 14);
  const std::vector<int32_t> ks = make_kv_start(c);
  DeviceBuf kvs(ks.size() * 4);
  if (!ks.empty()) CUDA_OK(cudaMemcpy(kvs.p, ks.data(), ks.size() * 4, cudaMemcpyHostToDevice));
  struct Result {
    Vec out, lse, dq, dk, dv;
  };
  auto run = [&](DType t) {
    const size_t es = esize(t);
    DeviceBuf q_d(static_cast<size_t>(nq) * es), k_d(static_cast<size_t>(nk) * es), v_d(static_cast<size_t>(nk) * es),
        dout_d(static_cast<size_t>(nq) * es), out_d(static_cast<size_t>(nq) * es), lse_d(static_cast<size_t>(nl) * 4),
        gq(static_cast<size_t>(nq) * es), gk(static_cast<size_t>(nk) * es), gv(static_cast<size_t>(nk) * es);
    upload(q_d, q, t);
    upload(k_d, k, t);
    upload(v_d, v, t);
    upload(dout_d, dout, t);
    cuda::AttnArgs a;
    a.q = q_d.p, a.k = k_d.p, a.v = v_d.p, a.out = out_d.p, a.lse = static_cast<float*>(lse_d.p);
    a.B = c.B, a.Tq = c.Tq, a.Tk = c.Tk, a.H = c.H, a.KV = c.KV, a.D = c.D, a.kv_len = c.kv_len;
    a.kv_start = ks.empty() ? nullptr : static_cast<const int32_t*>(kvs.p);
    a.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(c.D)));
    a.dtype = t;
    DeviceBuf ws(cuda::attention_backward_workspace_bytes(a));
    for (DeviceBuf* b : {&out_d, &lse_d, &gq, &gk, &gv, &ws}) b->poison();
    cuda::attention_forward(nullptr, a);
    cuda::attention_backward(nullptr, a, dout_d.p, gq.p, gk.p, gv.p, ws.p);
    CUDA_OK(cudaDeviceSynchronize());
    return Result{download(out_d, static_cast<size_t>(nq), t), download(lse_d, static_cast<size_t>(nl), DType::f32),
                  download(gq, static_cast<size_t>(nq), t), download(gk, static_cast<size_t>(nk), t),
                  download(gv, static_cast<size_t>(nk), t)};
  };
  const Result ref = run(DType::f32), got = run(DType::bf16);
  expect_close(c, "out (bf16 vs f32 path)", got.out, ref.out, 1e-2);
  expect_close(c, "lse (bf16 vs f32 path)", got.lse, ref.lse, 1e-2);
  expect_close(c, "dq (bf16 vs f32 path)", got.dq, ref.dq, 1e-2);
  expect_close(c, "dk (bf16 vs f32 path)", got.dk, ref.dk, 1e-2);
  expect_close(c, "dv (bf16 vs f32 path)", got.dv, ref.dv, 1e-2);
}

TEST(CudaAttentionAtScale, FlashMatchesF32Path) {
  SKIP_WITHOUT_GPU();
  run_against_f32({"training scale", DType::bf16, 2, 1024, 1024, 1024, 16, 4, 128, 0});
  run_against_f32({"training scale, packed", DType::bf16, 2, 1000, 1000, 1000, 16, 16, 64, 3});
}

// The launchers reject what the contract rules out, before anything runs.
TEST(CudaAttentionArgs, RejectsBadShapes) {
  cuda::AttnArgs a;
  int dummy = 0;
  a.q = a.k = a.v = a.out = &dummy;
  a.lse = reinterpret_cast<float*>(&dummy);
  a.B = 1, a.Tq = 4, a.Tk = 4, a.kv_len = 4, a.H = 3, a.KV = 2, a.D = 64, a.scale = 0.125f;
  EXPECT_THROW(cuda::attention_forward(nullptr, a), Error);  // H % KV != 0
  a.H = 4;
  a.kv_len = 5;
  EXPECT_THROW(cuda::attention_forward(nullptr, a), Error);  // kv_len > Tk
  a.kv_len = 3;
  EXPECT_THROW(cuda::attention_forward(nullptr, a), Error);  // Tq > kv_len
  a.kv_len = 4;
  a.dtype = DType::f64;
  EXPECT_THROW(cuda::attention_forward(nullptr, a), Error);
}

}  // namespace
