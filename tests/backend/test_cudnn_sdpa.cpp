// cuDNN fused attention (CudaBackend::set_attention(cudnn)) against the CPU backend in fp64 on the same
// bf16-rounded inputs, through the backend's op table, so the dispatch is what is tested. The seed is printed;
// PL_ATTN_SEED=<n> replays one. Every output, the saved state and the gradients are poisoned with NaN before
// each call, so an element cuDNN leaves unwritten fails the comparison.
// Tolerances are test_cuda_attention.cpp's, for the same reasons: max |x - ref| / max |ref| per tensor
//  - bf16 within 1e-2: the inputs are rounded to bf16 before the reference, so what is left is the bf16 rounding
//    of the outputs (2^-9) and of the probabilities and dS fed to the tensor cores (2^-9 each, random in sign);
//  - f32 within 1e-5 (the fallback test's f32 call, plain fp32 kernels against fp64);
//  - the saved log-sum-exp within 1e-2 of the fp64 one, absolute over max(1, |lse|): a base-2 or unscaled
//    convention would be off by tens of percent;
//  - dq and dk relative to the larger of their max and the size of the terms that cancel in them (grad_floor).
// Each cuDNN case also checks that cuDNN ran it (the backend's counts), so a shape cuDNN refuses on the GPU fails
// here with cuDNN's reason instead of passing on the own kernels.
// Skips without a GPU (cudaGetDeviceCount fails on the build machines) or on a build without cuDNN.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <random>
#include <sstream>
#include <sys/wait.h>
#include <string>
#include <vector>

#ifdef POLYLLAMA_HAVE_CUDNN
#include "cudnn_sdpa.hpp"
#endif
#include "polyllama/backend/cpu/cpu_backend.hpp"
#include "polyllama/backend/cuda/cuda_backend.hpp"
#include "polyllama/ckpt/safetensors.hpp"
#include "polyllama/core/random.hpp"
#include "test_support.hpp"

using namespace polyllama;

namespace {

uint64_t seed() {
  static const uint64_t s = [] {
    const char* env = std::getenv("PL_ATTN_SEED");
    return env ? std::strtoull(env, nullptr, 10) : static_cast<uint64_t>(std::random_device{}());
  }();
  return s;
}

#define SKIP_WITHOUT_CUDNN()                                                                     \
  do {                                                                                           \
    SKIP_WITHOUT_GPU();                                                                          \
    if (!CudaBackend::cudnn_built()) GTEST_SKIP() << "this build has no cuDNN (CMake found none)"; \
  } while (0)

struct Shape {
  const char* what;
  int64_t B, T, H, KV, D;
  int64_t pack = 0;  // > 0: rows pack examples of this many tokens (a span: kv_start at each example's start)
  bool must_run = true;  // false: cuDNN may refuse the shape (then the own kernels must still match)
};

std::string str(const Shape& s, DType d) {
  std::ostringstream o;
  o << s.what << " [" << dtype_name(d) << " B=" << s.B << " T=" << s.T << " H=" << s.H << " KV=" << s.KV
    << " D=" << s.D << " pack=" << s.pack << " seed=" << seed() << "]";
  return o.str();
}

using Vec = std::vector<double>;

Vec random_input(DType d, int64_t n, uint64_t stream) {
  Vec v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const auto x = static_cast<float>(random_normal(seed(), stream, static_cast<uint64_t>(i)));
    v[static_cast<size_t>(i)] = d == DType::bf16 ? bf16_to_f32(f32_to_bf16(x)) : x;
  }
  return v;
}

std::vector<int32_t> kv_start_of(const Shape& s) {
  std::vector<int32_t> ks;
  if (s.pack <= 0) return ks;
  for (int64_t b = 0; b < s.B; ++b)
    for (int64_t t = 0; t < s.T; ++t) {
      const int64_t shift = (b * 13) % s.pack;  // rows cut at different places
      ks.push_back(static_cast<int32_t>(t < shift ? 0 : (t - shift) / s.pack * s.pack + shift));
    }
  return ks;
}

// A device tensor through the backend's own allocation and copies.
struct Dev {
  CudaBackend& be;
  Tensor t;
  Dev(CudaBackend& b, DType d, std::initializer_list<int64_t> dims) : be(b), t(nullptr, d, dims) {
    t.data = be.device_alloc(t.bytes());
  }
  ~Dev() { be.device_free(t.data); }
  Dev(const Dev&) = delete;
  Dev& operator=(const Dev&) = delete;
  void put(const Vec& x) {
    std::vector<unsigned char> h(t.bytes());
    for (size_t i = 0; i < x.size(); ++i) {
      if (t.dtype == DType::bf16) {
        const uint16_t v = f32_to_bf16(static_cast<float>(x[i]));
        std::memcpy(h.data() + 2 * i, &v, 2);
      } else {
        const auto v = static_cast<float>(x[i]);
        std::memcpy(h.data() + 4 * i, &v, 4);
      }
    }
    be.upload(t, h.data());
  }
  Vec get() {
    std::vector<unsigned char> h(t.bytes());
    be.download(h.data(), t);
    Vec x(static_cast<size_t>(t.numel()));
    for (size_t i = 0; i < x.size(); ++i) {
      if (t.dtype == DType::bf16) {
        uint16_t v;
        std::memcpy(&v, h.data() + 2 * i, 2);
        x[i] = bf16_to_f32(v);
      } else {
        float v;
        std::memcpy(&v, h.data() + 4 * i, 4);
        x[i] = v;
      }
    }
    return x;
  }
  void poison() {  // all-ones bytes: NaN in f32 and in bf16
    const std::vector<unsigned char> h(t.bytes(), 0xff);
    be.upload(t, h.data());
  }
};

void expect_close(const std::string& what, const char* name, const Vec& got, const Vec& ref, double tol,
                  double floor = 0) {
  ASSERT_EQ(got.size(), ref.size()) << what << " " << name;
  double scale = 0, max_abs = 0;
  for (double r : ref) scale = std::max(scale, std::abs(r));
  scale = std::max({scale, floor, 1e-30});
  int64_t first_bad = -1, nans = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double e = std::abs(got[i] - ref[i]);
    if (std::isnan(got[i])) ++nans;
    if (!(e <= tol * scale) && first_bad < 0) first_bad = static_cast<int64_t>(i);
    if (!(e <= max_abs)) max_abs = e;
  }
  if (first_bad < 0) return;
  const auto fb = static_cast<size_t>(first_bad);
  ADD_FAILURE() << what << " " << name << ": max abs err " << max_abs << ", max rel err " << max_abs / scale
                << " (tolerance " << tol << "), NaN count " << nans << ", first bad flat index " << first_bad
                << " got " << got[fb] << " want " << ref[fb];
}

void expect_lse_close(const std::string& what, const Vec& got, const Vec& ref, double tol) {
  ASSERT_EQ(got.size(), ref.size());
  for (size_t i = 0; i < ref.size(); ++i) {
    const double e = std::abs(got[i] - ref[i]) / std::max(1.0, std::abs(ref[i]));
    if (!(e <= tol)) {
      ADD_FAILURE() << what << " saved lse: first bad (b, h, t) index " << i << " got " << got[i] << " want "
                    << ref[i] << " (rel err " << e << ", tolerance " << tol << ")";
      return;
    }
  }
}

double rms_of(const Vec& x) {
  double m = 0;
  for (double v : x) m += v * v;
  return std::sqrt(m / static_cast<double>(std::max<size_t>(1, x.size())));
}

struct Result {
  Vec out, lse, dq, dk, dv;
};

struct Inputs {
  Vec q, k, v, dout;
  std::vector<int32_t> ks;
};

Inputs make_inputs(const Shape& s, DType d) {
  const int64_t nq = s.B * s.T * s.H * s.D, nk = s.B * s.T * s.KV * s.D;
  return {random_input(d, nq, 1), random_input(d, nk, 2), random_input(d, nk, 3), random_input(d, nq, 4),
          kv_start_of(s)};
}

// The CPU backend in fp64, with the log-sum-exp computed here from the same inputs.
Result reference(const Shape& s, const Inputs& in) {
  const int64_t B = s.B, T = s.T, H = s.H, KV = s.KV, D = s.D;
  CpuBackend cpu;
  Vec q = in.q, k = in.k, v = in.v, dout = in.dout;
  Result r{Vec(q.size()), Vec(static_cast<size_t>(B * H * T)), Vec(q.size()), Vec(k.size()), Vec(k.size())};
  Vec probs(static_cast<size_t>(B * H * T * T)), scratch(static_cast<size_t>(cpu.attention_scratch_elems(B, H, T)));
  const AttnSpan span{T, in.ks.empty() ? nullptr : in.ks.data()};
  auto F = [](Vec& x, std::initializer_list<int64_t> dims) { return Tensor(x.data(), DType::f64, dims); };
  cpu.attention_forward(F(r.out, {B, T, H, D}), F(probs, {B, H, T, T}), F(q, {B, T, H, D}), F(k, {B, T, KV, D}),
                        F(v, {B, T, KV, D}), span);
  cpu.attention_backward(F(r.dq, {B, T, H, D}), F(r.dk, {B, T, KV, D}), F(r.dv, {B, T, KV, D}), F(dout, {B, T, H, D}),
                         F(q, {B, T, H, D}), F(k, {B, T, KV, D}), F(v, {B, T, KV, D}), Tensor{},
                         F(probs, {B, H, T, T}), F(scratch, {static_cast<int64_t>(scratch.size())}), span);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t t = 0; t < T; ++t) {
        const int64_t lo = in.ks.empty() ? 0 : in.ks[static_cast<size_t>(b * T + t)];
        Vec sc;
        for (int64_t j = lo; j <= t; ++j) {
          double dot = 0;
          for (int64_t d = 0; d < D; ++d)
            dot += in.q[static_cast<size_t>(((b * T + t) * H + h) * D + d)] *
                   in.k[static_cast<size_t>(((b * T + j) * KV + h / (H / KV)) * D + d)];
          sc.push_back(dot / std::sqrt(static_cast<double>(D)));
        }
        const double mx = *std::max_element(sc.begin(), sc.end());
        double z = 0;
        for (double x : sc) z += std::exp(x - mx);
        r.lse[static_cast<size_t>((b * H + h) * T + t)] = mx + std::log(z);
      }
  return r;
}

// Forward with `fwd`, backward with `bwd`, on the GPU, every output poisoned first.
Result run_gpu(CudaBackend& be, const Shape& s, DType d, const Inputs& in, AttentionImpl fwd, AttentionImpl bwd) {
  const int64_t B = s.B, T = s.T, H = s.H, KV = s.KV, D = s.D;
  Dev q(be, d, {B, T, H, D}), k(be, d, {B, T, KV, D}), v(be, d, {B, T, KV, D}), dout(be, d, {B, T, H, D}),
      out(be, d, {B, T, H, D}), dq(be, d, {B, T, H, D}), dk(be, d, {B, T, KV, D}), dv(be, d, {B, T, KV, D}),
      saved(be, DType::f32, {be.attention_saved_elems(B, H, T, T)}),
      scratch(be, DType::f32, {be.attention_scratch_elems(B, H, T, KV, D)});
  q.put(in.q);
  k.put(in.k);
  v.put(in.v);
  dout.put(in.dout);
  for (Dev* x : {&out, &dq, &dk, &dv, &saved, &scratch}) x->poison();
  const AttnSpan span{T, in.ks.empty() ? nullptr : in.ks.data()};
  be.set_attention(fwd);
  be.attention_forward(out.t, saved.t, q.t, k.t, v.t, span);
  be.set_attention(bwd);
  be.attention_backward(dq.t, dk.t, dv.t, dout.t, q.t, k.t, v.t, out.t, saved.t, scratch.t, span);
  be.synchronize();
  return {out.get(), saved.get(), dq.get(), dk.get(), dv.get()};
}

void expect_matches(const std::string& what, const Result& got, const Result& ref, const Inputs& in, double tol) {
  expect_close(what, "out", got.out, ref.out, tol);
  expect_lse_close(what, got.lse, ref.lse, std::max(tol, 1e-5));
  expect_close(what, "dq", got.dq, ref.dq, tol, rms_of(in.dout) * rms_of(in.v) * rms_of(in.k));
  expect_close(what, "dk", got.dk, ref.dk, tol, rms_of(in.dout) * rms_of(in.v) * rms_of(in.q));
  expect_close(what, "dv", got.dv, ref.dv, tol);
}

const std::vector<Shape>& shapes() {
  static const std::vector<Shape> s = {
      {"GQA 8/2, D=128, T not a multiple of 64", 2, 130, 8, 2, 128},
      {"MHA 8/8, D=64, odd T", 1, 77, 8, 8, 64},
      {"GQA 8/2, D=64, several tiles", 2, 200, 8, 2, 64},
      {"MHA 8/8, D=128, one past a tile", 1, 65, 8, 8, 128},
      {"GQA 8/2, D=128, T = 1 (cuDNN may refuse)", 2, 1, 8, 2, 128, 0, false},
  };
  return s;
}

class CudnnSdpa : public ::testing::TestWithParam<size_t> {};

TEST_P(CudnnSdpa, ForwardAndBackwardMatchCpu) {
  SKIP_WITHOUT_CUDNN();
  const Shape& s = shapes()[GetParam()];
  const std::string what = str(s, DType::bf16);
  const Inputs in = make_inputs(s, DType::bf16);
  CudaBackend be(0);
  be.set_attention(AttentionImpl::cudnn);
  const Result got = run_gpu(be, s, DType::bf16, in, AttentionImpl::cudnn, AttentionImpl::cudnn);
  if (s.must_run) {
    EXPECT_EQ(be.cudnn_attention_calls(false), 1) << what << ": " << be.attention_summary();
    EXPECT_EQ(be.cudnn_attention_calls(true), 1) << what << ": " << be.attention_summary();
  }
  expect_matches(what + " cuDNN", got, reference(s, in), in, 1e-2);
}

INSTANTIATE_TEST_SUITE_P(Shapes, CudnnSdpa, ::testing::Range<size_t>(0, shapes().size()),
                         [](const ::testing::TestParamInfo<size_t>& info) {
                           std::string n = std::to_string(info.param) + "_" + shapes()[info.param].what;
                           for (char& ch : n)
                             if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           return n;
                         });

// The saved state is one contract: cuDNN's forward feeds the own backward and the own forward feeds cuDNN's
// backward, and both give the reference gradients (and the cuDNN-only ones, within the same bf16 tolerance).
TEST(CudnnSdpaInterchange, SavedStateCrossesImplementations) {
  SKIP_WITHOUT_CUDNN();
  for (const Shape& s : {Shape{"GQA 8/2, D=128", 2, 130, 8, 2, 128}, Shape{"MHA 8/8, D=64", 1, 77, 8, 8, 64}}) {
    const std::string what = str(s, DType::bf16);
    const Inputs in = make_inputs(s, DType::bf16);
    const Result ref = reference(s, in);
    CudaBackend be(0);
    be.set_attention(AttentionImpl::cudnn);
    const Result both = run_gpu(be, s, DType::bf16, in, AttentionImpl::cudnn, AttentionImpl::cudnn);
    const Result cudnn_own = run_gpu(be, s, DType::bf16, in, AttentionImpl::cudnn, AttentionImpl::own);
    const Result own_cudnn = run_gpu(be, s, DType::bf16, in, AttentionImpl::own, AttentionImpl::cudnn);
    EXPECT_EQ(be.cudnn_attention_calls(false), 2) << what << ": " << be.attention_summary();
    EXPECT_EQ(be.cudnn_attention_calls(true), 2) << what << ": " << be.attention_summary();
    expect_matches(what + " cuDNN forward, own backward", cudnn_own, ref, in, 1e-2);
    expect_matches(what + " own forward, cuDNN backward", own_cudnn, ref, in, 1e-2);
    expect_matches(what + " cuDNN forward+backward vs cuDNN forward, own backward", cudnn_own, both, in, 1e-2);
    expect_matches(what + " cuDNN forward+backward vs own forward, cuDNN backward", own_cudnn, both, in, 1e-2);
  }
}

// With cuDNN selected, what it does not take (f32, spans) runs the own kernels and still matches.
TEST(CudnnSdpaFallback, CallsItCannotTakeRunOwnKernels) {
  SKIP_WITHOUT_CUDNN();
  CudaBackend be(0);
  be.set_attention(AttentionImpl::cudnn);
  {
    const Shape s{"f32", 2, 70, 8, 2, 64};
    const Inputs in = make_inputs(s, DType::f32);
    const Result got = run_gpu(be, s, DType::f32, in, AttentionImpl::cudnn, AttentionImpl::cudnn);
    expect_matches(str(s, DType::f32) + " fallback", got, reference(s, in), in, 1e-5);
  }
  {
    const Shape s{"packed rows (span)", 2, 130, 8, 2, 128, 37};
    const Inputs in = make_inputs(s, DType::bf16);
    const Result got = run_gpu(be, s, DType::bf16, in, AttentionImpl::cudnn, AttentionImpl::cudnn);
    expect_matches(str(s, DType::bf16) + " fallback", got, reference(s, in), in, 1e-2);
  }
  EXPECT_EQ(be.cudnn_attention_calls(false), 0) << be.attention_summary();
  EXPECT_EQ(be.cudnn_attention_calls(true), 0) << be.attention_summary();
  EXPECT_NE(be.attention_summary().find("own kernels ran forward 2, backward 2"), std::string::npos)
      << be.attention_summary();
}

// Without a GPU: cuDNN itself checks every tensor and operation descriptor of both graphs (shapes, strides,
// broadcasts, reductions, reshapes) and finalizes the operation graph; only the engine choice needs a device.
TEST(CudnnSdpaGraph, DescriptorsFinalizeWithoutAGpu) {
#ifdef POLYLLAMA_HAVE_CUDNN
  for (const Shape& s : shapes())
    for (bool bwd : {false, true})
      EXPECT_EQ(cuda::CudnnSdpa::check_graph(s.B, s.H, s.KV, s.T, s.D, bwd), "") << str(s, DType::bf16);
  EXPECT_EQ(cuda::CudnnSdpa::check_graph(4, 16, 4, 2048, 128, true), "");  // the benchmark's shape
  // The check has teeth: 8 query heads over 3 kv heads is no broadcast, and cuDNN says which operation.
  const std::string bad = cuda::CudnnSdpa::check_graph(2, 8, 3, 130, 128, false);
  EXPECT_NE(bad.find("matmul 'Q K^T'"), std::string::npos) << bad;
#else
  GTEST_SKIP() << "this build has no cuDNN (CMake found none)";
#endif
}

TEST(CudnnSdpaSelect, OwnByDefaultAndNamesParse) {
  EXPECT_EQ(parse_attention_impl("own"), AttentionImpl::own);
  EXPECT_EQ(parse_attention_impl("cudnn"), AttentionImpl::cudnn);
  EXPECT_EQ(test::error_of([] { parse_attention_impl("flash"); }).first, 1);
  SKIP_WITHOUT_GPU();
  CudaBackend be(0);
  EXPECT_EQ(be.attention(), AttentionImpl::own);
  if (!CudaBackend::cudnn_built())
    EXPECT_EQ(test::error_of([&] { be.set_attention(AttentionImpl::cudnn); }).first, 1);
}

// The CLI: --attention is on pretrain, sft and bench; cudnn without --device cuda is a usage error (exit 1)
// naming the fix, and an unknown name is refused by the parser.
TEST(CudnnSdpaCli, AttentionOption) {
  const std::string bin = "'" + test::polyllama_binary() + "'", dir = test::temp_dir("cudnn_cli");
  for (const char* verb : {"pretrain", "sft", "bench"}) {
    ASSERT_EQ(std::system((bin + " " + verb + " --help > '" + dir + "/help' 2>&1").c_str()), 0) << verb;
    EXPECT_NE(test::slurp(dir + "/help").find("--attention"), std::string::npos) << verb << " --help";
  }
  const int st = std::system((bin + " bench --attention cudnn --steps 1 > '" + dir + "/out' 2>&1").c_str());
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 1) << test::slurp(dir + "/out");
  EXPECT_NE(test::slurp(dir + "/out").find("needs --device cuda"), std::string::npos) << test::slurp(dir + "/out");
  const int bad = std::system((bin + " bench --attention flash --steps 1 > '" + dir + "/out' 2>&1").c_str());
  EXPECT_NE(bad, 0) << test::slurp(dir + "/out");
}

}  // namespace
