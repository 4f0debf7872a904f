// Every op of the CUDA backend against the CPU backend, through the op table, on fresh random inputs (the seed
// is printed; PL_CUDA_OPS_SEED=<n> replays one). The CPU reference runs in f64 on exactly the values the GPU
// sees (inputs rounded to f32 or bf16 first), so the difference is the GPU's own arithmetic and output rounding.
// Every output is poisoned with NaN before the call (an element a kernel forgot to write then fails), and no
// output may hold NaN or inf.
// Tolerances, as max |gpu - ref| / max |ref| per output (test::max_rel_err):
//  - f32 within 1e-5: fp32 arithmetic (cuBLASLt in true fp32, no TF32) over at most a few thousand terms
//    accumulates ~1e-6 against f64;
//  - bf16 within 1e-2: each output is rounded once to bf16 (relative 2^-9 = 2e-3), on top of fp32 arithmetic;
//    accumulated (+=) outputs round the sum once more.
// Skips when no GPU is usable (cudaGetDeviceCount fails with 35 on machines without a driver).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "polyllama/backend/backend_factory.hpp"
#include "polyllama/backend/cpu/cpu_backend.hpp"
#include "polyllama/ckpt/safetensors.hpp"
#include "test_support.hpp"

using namespace polyllama;

namespace {

using Vec = std::vector<double>;

double round_to(DType d, double x) {
  return d == DType::bf16 ? bf16_to_f32(f32_to_bf16(static_cast<float>(x))) : static_cast<float>(x);
}

uint64_t seed() {
  static const uint64_t s = [] {
    const char* env = std::getenv("PL_CUDA_OPS_SEED");
    const uint64_t v = env ? std::strtoull(env, nullptr, 10) : static_cast<uint64_t>(std::random_device{}());
    std::printf("test_cuda_ops seed %llu (PL_CUDA_OPS_SEED replays it)\n", static_cast<unsigned long long>(v));
    return v;
  }();
  return s;
}

double tol(DType d) { return d == DType::bf16 ? 1e-2 : 1e-5; }

// Both backends and the buffers of one test: device tensors on the GPU, f64 tensors on the CPU.
class Ops : public ::testing::Test {
 protected:
  void SetUp() override {
    SKIP_WITHOUT_GPU();
    gpu = make_backend("cuda");
    rng.seed(seed() + static_cast<uint64_t>(::testing::UnitTest::GetInstance()->random_seed()));
  }
  void TearDown() override {
    if (gpu) {
      gpu->synchronize();
      for (void* p : dev) gpu->device_free(p);
    }
  }

  // Uniform in [-scale, scale], already rounded to d.
  Vec rand(int64_t n, double scale, DType d) {
    std::uniform_real_distribution<double> u(-scale, scale);
    Vec v(static_cast<size_t>(n));
    for (double& x : v) x = round_to(d, u(rng));
    return v;
  }
  Tensor dev_tensor(DType d, std::initializer_list<int64_t> dims) {
    Tensor t(nullptr, d, dims);
    t.data = gpu->device_alloc(std::max<size_t>(t.bytes(), 1));
    dev.push_back(t.data);
    return t;
  }
  void put(Tensor t, const Vec& v) {
    ASSERT_EQ(static_cast<int64_t>(v.size()), t.numel());
    if (t.dtype == DType::bf16) {
      std::vector<uint16_t> h(v.size());
      for (size_t i = 0; i < v.size(); ++i) h[i] = f32_to_bf16(static_cast<float>(v[i]));
      gpu->upload(t, h.data());
    } else {
      std::vector<float> h(v.begin(), v.end());
      gpu->upload(t, h.data());
    }
  }
  Tensor dev_from(DType d, std::initializer_list<int64_t> dims, const Vec& v) {
    Tensor t = dev_tensor(d, dims);
    put(t, v);
    return t;
  }
  void poison(Tensor t) { put(t, Vec(static_cast<size_t>(t.numel()), std::nan(""))); }
  Tensor dev_poisoned(DType d, std::initializer_list<int64_t> dims) {
    Tensor t = dev_tensor(d, dims);
    poison(t);
    return t;
  }
  Vec get(Tensor t) {
    Vec v(static_cast<size_t>(t.numel()));
    if (t.dtype == DType::bf16) {
      std::vector<uint16_t> h(v.size());
      gpu->download(h.data(), t);
      for (size_t i = 0; i < v.size(); ++i) v[i] = bf16_to_f32(h[i]);
    } else {
      std::vector<float> h(v.size());
      gpu->download(h.data(), t);
      for (size_t i = 0; i < v.size(); ++i) v[i] = h[i];
    }
    return v;
  }
  static Tensor host(Vec& v, std::initializer_list<int64_t> dims) { return Tensor(v.data(), DType::f64, dims); }

  // Fails with op, shape, dtype and the error when gpu differs from ref by more than the dtype's tolerance or
  // holds a non-finite value.
  // floor: the scale below which a difference is rounding (see Ops.Attention), else the reference's own max.
  void expect_close(const Vec& got, const Vec& ref, const std::string& what, DType d, double tolerance = 0,
                    double floor = 1e-12) {
    ASSERT_EQ(got.size(), ref.size()) << what;
    int64_t bad = 0;
    for (double x : got) bad += std::isfinite(x) ? 0 : 1;
    const double err = test::max_rel_err(got.data(), ref.data(), static_cast<int64_t>(got.size()), floor);
    const double t = tolerance > 0 ? tolerance : tol(d);
    EXPECT_EQ(bad, 0) << what << " [" << dtype_name(d) << "]: " << bad << " of " << got.size()
                      << " elements are NaN/inf (unwritten or overflowed)";
    EXPECT_LE(err, t) << what << " [" << dtype_name(d) << "]: max relative error " << err << " > " << t;
  }

  std::unique_ptr<Backend> gpu;
  CpuBackend cpu{2};
  std::mt19937_64 rng;
  std::vector<void*> dev;
};

const DType kDtypes[] = {DType::f32, DType::bf16};

TEST_F(Ops, Matmul) {
  struct Case { int64_t M, N, K; };
  for (const Case c : {Case{7, 13, 5}, Case{64, 96, 128}, Case{33, 65, 17}, Case{1, 300, 64}})
    for (DType d : kDtypes)
      for (DType cd : {d, DType::f32})
        for (int tr = 0; tr < 4; ++tr)
          for (double beta : {0.0, 1.0}) {
            const bool ta = tr & 1, tb = tr & 2;
            const std::string what = "matmul M=" + std::to_string(c.M) + " N=" + std::to_string(c.N) + " K=" +
                                     std::to_string(c.K) + (ta ? " a^T" : "") + (tb ? " b^T" : "") + " c " +
                                     dtype_name(cd) + " beta " + std::to_string(beta);
            Vec a = rand(c.M * c.K, 1.0, d), b = rand(c.K * c.N, 1.0, d), c0 = rand(c.M * c.N, 1.0, cd);
            Tensor ga = ta ? dev_from(d, {c.K, c.M}, a) : dev_from(d, {c.M, c.K}, a);
            Tensor gb = tb ? dev_from(d, {c.N, c.K}, b) : dev_from(d, {c.K, c.N}, b);
            Tensor gc = beta != 0 ? dev_from(cd, {c.M, c.N}, c0) : dev_poisoned(cd, {c.M, c.N});
            gpu->matmul(gc, ga, gb, ta, tb, 0.5, beta);
            Vec ref = c0;
            cpu.matmul(host(ref, {c.M, c.N}), ta ? host(a, {c.K, c.M}) : host(a, {c.M, c.K}),
                       tb ? host(b, {c.N, c.K}) : host(b, {c.K, c.N}), ta, tb, 0.5, beta);
            // bf16 inputs with an f32 output: only fp32 accumulation error remains.
            expect_close(get(gc), ref, what, cd == DType::f32 && d == DType::bf16 ? DType::f32 : cd);
          }
}

TEST_F(Ops, RmsNorm) {
  struct Case { int64_t N, C; };
  for (const Case c : {Case{1, 8}, Case{5, 33}, Case{64, 512}, Case{3, 4096}, Case{1100, 40}})
    for (DType d : kDtypes) {
      const std::string shape = " (" + std::to_string(c.N) + ", " + std::to_string(c.C) + ")";
      Vec x = rand(c.N * c.C, 2.0, d), w = rand(c.C, 1.0, d), dy = rand(c.N * c.C, 1.0, d);
      Vec dx0 = rand(c.N * c.C, 1.0, d), dw0 = rand(c.C, 1.0, DType::f32);
      Tensor gx = dev_from(d, {c.N, c.C}, x), gw = dev_from(d, {c.C}, w), gy = dev_poisoned(d, {c.N, c.C});
      Tensor gr = dev_poisoned(DType::f32, {c.N});
      gpu->rmsnorm_forward(gy, gr, gx, gw, 1e-5);
      Vec y(x.size()), r(static_cast<size_t>(c.N));
      cpu.rmsnorm_forward(host(y, {c.N, c.C}), host(r, {c.N}), host(x, {c.N, c.C}), host(w, {c.C}), 1e-5);
      expect_close(get(gy), y, "rmsnorm_forward y" + shape, d);
      expect_close(get(gr), r, "rmsnorm_forward rstd" + shape, DType::f32, d == DType::bf16 ? 1e-5 : 0);

      // Backward from the reference rstd (rounded to f32, as the GPU keeps it): dx and dw accumulate.
      Vec rf = r;
      for (double& v : rf) v = static_cast<float>(v);
      Tensor gdx = dev_from(d, {c.N, c.C}, dx0), gdw = dev_from(DType::f32, {c.C}, dw0);
      Tensor gdy = dev_from(d, {c.N, c.C}, dy), grf = dev_from(DType::f32, {c.N}, rf);
      gpu->rmsnorm_backward(gdx, gdw, gdy, gx, gw, grf);
      Vec dx = dx0, dw = dw0;
      cpu.rmsnorm_backward(host(dx, {c.N, c.C}), host(dw, {c.C}), host(dy, {c.N, c.C}), host(x, {c.N, c.C}),
                           host(w, {c.C}), host(rf, {c.N}));
      expect_close(get(gdx), dx, "rmsnorm_backward dx" + shape, d);
      // dw is f32 whatever the activations: the bf16 case sums exact products of bf16 inputs in fp32.
      expect_close(get(gdw), dw, "rmsnorm_backward dw" + shape, DType::f32, d == DType::bf16 ? 1e-5 : 0);
    }
}

TEST_F(Ops, Rope) {
  struct Case { int64_t B, T, H, D; };
  for (const Case c : {Case{1, 5, 3, 8}, Case{2, 17, 4, 64}, Case{3, 9, 1, 2}})
    for (DType d : kDtypes)
      for (bool with_pos : {false, true})
        for (bool inverse : {false, true}) {
          const int64_t max_pos = c.T + 7, half = c.D / 2, n = c.B * c.T * c.H * c.D;
          Vec cs(static_cast<size_t>(max_pos * half)), sn(cs.size());
          std::uniform_real_distribution<double> ang(-3.2, 3.2);
          for (size_t i = 0; i < cs.size(); ++i) {
            const double a = ang(rng);
            cs[i] = static_cast<float>(std::cos(a));
            sn[i] = static_cast<float>(std::sin(a));
          }
          std::vector<int32_t> pos(static_cast<size_t>(c.B * c.T));
          for (auto& p : pos) p = static_cast<int32_t>(rng() % static_cast<uint64_t>(max_pos));
          Vec x = rand(n, 1.0, d);
          Tensor gx = dev_from(d, {c.B, c.T, c.H, c.D}, x);
          Tensor gc = dev_from(DType::f32, {max_pos, half}, cs), gs = dev_from(DType::f32, {max_pos, half}, sn);
          gpu->rope(gx, gc, gs, with_pos ? pos.data() : nullptr, inverse);
          cpu.rope(host(x, {c.B, c.T, c.H, c.D}), host(cs, {max_pos, half}), host(sn, {max_pos, half}),
                   with_pos ? pos.data() : nullptr, inverse);
          expect_close(get(gx), x,
                       "rope (" + std::to_string(c.B) + ", " + std::to_string(c.T) + ", " + std::to_string(c.H) +
                           ", " + std::to_string(c.D) + ")" + (with_pos ? " positions" : "") +
                           (inverse ? " inverse" : ""),
                       d);
        }
}

TEST_F(Ops, SwiGlu) {
  for (int64_t n : {int64_t{1}, int64_t{37}, int64_t{64 * 1408 + 5}})
    for (DType d : kDtypes) {
      const std::string shape = " n=" + std::to_string(n);
      Vec g = rand(n, 6.0, d), u = rand(n, 2.0, d), dout = rand(n, 1.0, d);
      Tensor gg = dev_from(d, {n}, g), gu = dev_from(d, {n}, u), go = dev_poisoned(d, {n});
      gpu->swiglu_forward(go, gg, gu);
      Vec out(g.size()), dg(g.size()), du(g.size());
      cpu.swiglu_forward(host(out, {n}), host(g, {n}), host(u, {n}));
      expect_close(get(go), out, "swiglu_forward" + shape, d);
      Tensor gdo = dev_from(d, {n}, dout), gdg = dev_poisoned(d, {n}), gdu = dev_poisoned(d, {n});
      gpu->swiglu_backward(gdg, gdu, gdo, gg, gu);
      cpu.swiglu_backward(host(dg, {n}), host(du, {n}), host(dout, {n}), host(g, {n}), host(u, {n}));
      expect_close(get(gdg), dg, "swiglu_backward dgate" + shape, d);
      expect_close(get(gdu), du, "swiglu_backward dup" + shape, d);
    }
}

TEST_F(Ops, Embedding) {
  struct Case { int64_t N, V, C; };
  for (const Case c : {Case{1, 3, 5}, Case{37, 11, 64}, Case{512, 1000, 300}})
    for (DType d : kDtypes) {
      const std::string shape = " N=" + std::to_string(c.N) + " V=" + std::to_string(c.V) + " C=" + std::to_string(c.C);
      std::vector<int32_t> ids(static_cast<size_t>(c.N));
      for (auto& i : ids) i = static_cast<int32_t>(rng() % static_cast<uint64_t>(c.V));  // repeats on purpose
      Vec table = rand(c.V * c.C, 1.0, d), dout = rand(c.N * c.C, 1.0, d), dt0 = rand(c.V * c.C, 1.0, DType::f32);
      Tensor gt = dev_from(d, {c.V, c.C}, table), go = dev_poisoned(d, {c.N, c.C});
      gpu->embedding_forward(go, gt, ids.data());
      Vec out(static_cast<size_t>(c.N * c.C));
      cpu.embedding_forward(host(out, {c.N, c.C}), host(table, {c.V, c.C}), ids.data());
      expect_close(get(go), out, "embedding_forward" + shape, d);
      Tensor gdt = dev_from(DType::f32, {c.V, c.C}, dt0), gdo = dev_from(d, {c.N, c.C}, dout);
      gpu->embedding_backward(gdt, gdo, ids.data());
      Vec dt = dt0;
      cpu.embedding_backward(host(dt, {c.V, c.C}), host(dout, {c.N, c.C}), ids.data());
      expect_close(get(gdt), dt, "embedding_backward dtable (f32)" + shape, DType::f32);
    }
}

TEST_F(Ops, SoftmaxCrossEntropy) {
  struct Case { int64_t N, V; };
  for (const Case c : {Case{3, 11}, Case{17, 1000}, Case{4, 32000}})
    for (DType d : kDtypes)
      for (bool want_grad : {false, true}) {
        const std::string shape = " (" + std::to_string(c.N) + ", " + std::to_string(c.V) + ")" +
                                  (want_grad ? " with grad" : "");
        std::vector<int32_t> tgt(static_cast<size_t>(c.N));
        for (auto& t : tgt) t = static_cast<int32_t>(rng() % static_cast<uint64_t>(c.V));
        tgt[1] = -100;  // an ignored row
        Vec logits = rand(c.N * c.V, 8.0, d);
        Tensor gl = dev_from(d, {c.N, c.V}, logits), gloss = dev_poisoned(DType::f32, {c.N});
        const double total = gpu->softmax_xent(gl, gloss, tgt.data(), -100, want_grad, 0.25);
        Vec ref = logits, loss(static_cast<size_t>(c.N));
        const double ref_total =
            cpu.softmax_xent(host(ref, {c.N, c.V}), host(loss, {c.N}), tgt.data(), -100, want_grad, 0.25);
        // Loss is f32 whatever the logits' dtype (computed from the same rounded logits).
        expect_close(get(gloss), loss, "softmax_xent loss" + shape, DType::f32, 1e-5);
        EXPECT_NEAR(total, ref_total, 1e-5 * std::abs(ref_total)) << "softmax_xent total" << shape;
        expect_close(get(gl), ref, std::string("softmax_xent ") + (want_grad ? "gradient" : "logits untouched") + shape,
                     d);
      }
}

// The vocab-parallel halves, the tp ranks played by one process: each vocabulary slice's xent_partial writes its
// rows of the (parts, N, 2) stats, then xent_finish runs on each slice. Against the CPU's fused op on the whole
// rows (f64), with the fused op's tolerances.
TEST_F(Ops, VocabParallelCrossEntropyHalves) {
  struct Case { int64_t N, V, parts; };
  for (const Case c : {Case{3, 12, 2}, Case{17, 1000, 4}, Case{4, 32000, 2}})
    for (DType d : kDtypes)
      for (bool want_grad : {false, true}) {
        const int64_t Vl = c.V / c.parts;
        const std::string shape = " (" + std::to_string(c.N) + ", " + std::to_string(c.V) + ") in " +
                                  std::to_string(c.parts) + " slices" + (want_grad ? " with grad" : "");
        std::vector<int32_t> tgt(static_cast<size_t>(c.N));
        for (auto& t : tgt) t = static_cast<int32_t>(rng() % static_cast<uint64_t>(c.V));
        tgt[1] = -100;
        const Vec logits = rand(c.N * c.V, 8.0, d);
        Tensor stats = dev_poisoned(DType::f32, {c.parts, c.N, 2});
        std::vector<Tensor> slices;
        for (int64_t p = 0; p < c.parts; ++p) {
          Vec sl;
          for (int64_t n = 0; n < c.N; ++n)
            for (int64_t j = 0; j < Vl; ++j) sl.push_back(logits[static_cast<size_t>(n * c.V + p * Vl + j)]);
          slices.push_back(dev_from(d, {c.N, Vl}, sl));
          Tensor mine(static_cast<float*>(stats.data) + p * c.N * 2, DType::f32, {c.N, 2});
          gpu->xent_partial(slices.back(), mine, tgt.data(), p * Vl, -100);
        }
        Vec ref = logits, loss(static_cast<size_t>(c.N));
        const double ref_total =
            cpu.softmax_xent(host(ref, {c.N, c.V}), host(loss, {c.N}), tgt.data(), -100, want_grad, 0.25);
        Vec grad(static_cast<size_t>(c.N * c.V));
        for (int64_t p = 0; p < c.parts; ++p) {
          Tensor gloss = dev_poisoned(DType::f32, {c.N});
          const double total =
              gpu->xent_finish(slices[static_cast<size_t>(p)], gloss, stats, tgt.data(), p * Vl, -100, want_grad, 0.25);
          expect_close(get(gloss), loss, "xent_finish loss" + shape, DType::f32, 1e-5);
          EXPECT_NEAR(total, ref_total, 1e-5 * std::abs(ref_total)) << "xent_finish total" << shape;
          const Vec g = get(slices[static_cast<size_t>(p)]);
          for (int64_t n = 0; n < c.N; ++n)
            for (int64_t j = 0; j < Vl; ++j)
              grad[static_cast<size_t>(n * c.V + p * Vl + j)] = g[static_cast<size_t>(n * Vl + j)];
        }
        expect_close(grad, ref, std::string("xent halves ") + (want_grad ? "gradient" : "logits untouched") + shape, d);
      }
}

TEST_F(Ops, AdamW) {
  const int64_t n = 1001;
  Vec p = rand(n, 1.0, DType::f32), g = rand(n, 0.1, DType::f32), m = rand(n, 0.01, DType::f32);
  Vec v = rand(n, 0.01, DType::f32);
  for (double& x : v) x = std::abs(x);
  Tensor gp = dev_from(DType::f32, {n}, p), gg = dev_from(DType::f32, {n}, g), gm = dev_from(DType::f32, {n}, m),
         gv = dev_from(DType::f32, {n}, v);
  for (int64_t step = 1; step <= 3; ++step) {
    AdamWParams hp{1e-3, 0.9, 0.95, 1e-8, 0.1, 0.7, step};
    gpu->adamw(gp, gg, gm, gv, hp);
    cpu.adamw(host(p, {n}), host(g, {n}), host(m, {n}), host(v, {n}), hp);
  }
  expect_close(get(gp), p, "adamw param n=1001", DType::f32);
  expect_close(get(gm), m, "adamw exp_avg n=1001", DType::f32);
  expect_close(get(gv), v, "adamw exp_avg_sq n=1001", DType::f32);
}

TEST_F(Ops, ElementwiseAndReductions) {
  for (int64_t n : {int64_t{1}, int64_t{333}, (int64_t{1} << 20) + 3}) {
    const std::string shape = " n=" + std::to_string(n);
    for (DType d : kDtypes) {
      Vec x = rand(n, 3.0, d);
      Tensor gx = dev_from(d, {n}, x);
      for (DType dd : kDtypes) {  // copy with conversion: rounding to bf16 is the only error
        Tensor gy = dev_poisoned(dd, {n});
        gpu->copy(gy, gx);
        Vec ref = x;
        for (double& v : ref) v = round_to(dd, v);
        expect_close(get(gy), ref, std::string("copy ") + dtype_name(d) + " -> " + dtype_name(dd) + shape, DType::f32,
                     1e-12);
      }
      const double ss = gpu->sum_squares(gx);
      double ref_ss = 0;
      for (double v : x) ref_ss += v * v;
      EXPECT_NEAR(ss, ref_ss, 1e-9 * ref_ss) << "sum_squares " << dtype_name(d) << shape;
      EXPECT_EQ(ss, gpu->sum_squares(gx)) << "sum_squares is deterministic" << shape;
      gpu->scale(gx, -0.37);
      Vec ref = x;
      cpu.scale(host(ref, {n}), -0.37);
      expect_close(get(gx), ref, "scale" + shape, d);
      poison(gx);
      gpu->zero(gx);
      expect_close(get(gx), Vec(x.size(), 0.0), "zero" + shape, d);
    }
  }
}

TEST_F(Ops, SumSquaresAll) {
  // Mixed dtypes and sizes, one device round trip: equals the per-tensor sums added in order.
  Vec a = rand(7, 1.0, DType::f32), b = rand(100003, 2.0, DType::bf16), c = rand(1, 3.0, DType::f32);
  std::vector<Tensor> xs = {dev_from(DType::f32, {7}, a), dev_from(DType::bf16, {100003}, b),
                            dev_from(DType::f32, {1}, c)};
  double ref = 0;
  for (const Vec* v : {&a, &b, &c})
    for (double x : *v) ref += x * x;
  const double got = gpu->sum_squares_all(xs);
  EXPECT_NEAR(got, ref, 1e-12 * ref) << "sum_squares_all of 3 tensors (f32 7, bf16 100003, f32 1)";
  EXPECT_EQ(got, gpu->sum_squares_all(xs)) << "sum_squares_all is deterministic";
  EXPECT_EQ(gpu->sum_squares_all({}), 0.0);
}

double rms(const Vec& x) {
  double s = 0;
  for (double v : x) s += v * v;
  return std::sqrt(s / static_cast<double>(std::max<size_t>(1, x.size())));
}

TEST_F(Ops, Attention) {
  struct Case { int64_t B, T, H, KV, D; bool packed; };
  for (const Case c : {Case{1, 1, 1, 1, 8, false}, Case{2, 17, 4, 2, 16, false}, Case{2, 33, 4, 1, 64, true}})
    for (DType d : kDtypes) {
      const std::string shape = " B=" + std::to_string(c.B) + " T=" + std::to_string(c.T) + " H=" +
                                std::to_string(c.H) + " KV=" + std::to_string(c.KV) + " D=" + std::to_string(c.D) +
                                (c.packed ? " packed" : "");
      const int64_t nq = c.B * c.T * c.H * c.D, nk = c.B * c.T * c.KV * c.D;
      std::vector<int32_t> kv_start(static_cast<size_t>(c.B * c.T));
      for (int64_t b = 0; b < c.B; ++b)  // two examples per row when packed: the second starts at T/2
        for (int64_t t = 0; t < c.T; ++t) kv_start[static_cast<size_t>(b * c.T + t)] =
            c.packed && t >= c.T / 2 ? static_cast<int32_t>(c.T / 2) : 0;
      const AttnSpan span{-1, c.packed ? kv_start.data() : nullptr};
      Vec q = rand(nq, 1.0, d), k = rand(nk, 1.0, d), v = rand(nk, 1.0, d), dout = rand(nq, 1.0, d);
      Tensor gq = dev_from(d, {c.B, c.T, c.H, c.D}, q), gk = dev_from(d, {c.B, c.T, c.KV, c.D}, k),
             gv = dev_from(d, {c.B, c.T, c.KV, c.D}, v), go = dev_poisoned(d, {c.B, c.T, c.H, c.D});
      Tensor gs = dev_poisoned(DType::f32, {gpu->attention_saved_elems(c.B, c.H, c.T, c.T)});
      gpu->attention_forward(go, gs, gq, gk, gv, span);
      Vec out(static_cast<size_t>(nq)), probs(static_cast<size_t>(c.B * c.H * c.T * c.T));
      cpu.attention_forward(host(out, {c.B, c.T, c.H, c.D}), host(probs, {c.B, c.H, c.T, c.T}),
                            host(q, {c.B, c.T, c.H, c.D}), host(k, {c.B, c.T, c.KV, c.D}),
                            host(v, {c.B, c.T, c.KV, c.D}), span);
      expect_close(get(go), out, "attention_forward out" + shape, d);

      Tensor gdo = dev_from(d, {c.B, c.T, c.H, c.D}, dout), gdq = dev_poisoned(d, {c.B, c.T, c.H, c.D}),
             gdk = dev_poisoned(d, {c.B, c.T, c.KV, c.D}), gdv = dev_poisoned(d, {c.B, c.T, c.KV, c.D});
      Tensor gscr = dev_poisoned(DType::f32, {gpu->attention_scratch_elems(c.B, c.H, c.T, c.KV, c.D)});
      gpu->attention_backward(gdq, gdk, gdv, gdo, gq, gk, gv, go, gs, gscr, span);
      Vec dq(q.size()), dk(k.size()), dv(v.size());
      Vec scratch(static_cast<size_t>(cpu.attention_scratch_elems(c.B, c.H, c.T)));
      cpu.attention_backward(host(dq, {c.B, c.T, c.H, c.D}), host(dk, {c.B, c.T, c.KV, c.D}),
                             host(dv, {c.B, c.T, c.KV, c.D}), host(dout, {c.B, c.T, c.H, c.D}),
                             host(q, {c.B, c.T, c.H, c.D}), host(k, {c.B, c.T, c.KV, c.D}),
                             host(v, {c.B, c.T, c.KV, c.D}), Tensor{}, host(probs, {c.B, c.H, c.T, c.T}),
                             host(scratch, {static_cast<int64_t>(scratch.size())}), span);
      // dq and dk are differences of terms of size about rms(dout) rms(v) rms(k or q) (scale * sqrt(D) = 1):
      // with one visible key they cancel exactly (the true dq, dk are 0) and the result is their rounding, so
      // the error is measured against that size when the result is smaller.
      const double floor = rms(dout) * rms(v) * std::max(rms(q), rms(k));
      expect_close(get(gdq), dq, "attention_backward dq" + shape, d, 0, floor);
      expect_close(get(gdk), dk, "attention_backward dk" + shape, d, 0, floor);
      expect_close(get(gdv), dv, "attention_backward dv" + shape, d);
    }
}

TEST(CudaBackendAvailability, FailsCleanlyWithoutGpu) {
  std::string why;
  if (cuda_available(&why)) GTEST_SKIP() << "a GPU is present";
  const auto [code, msg] = test::error_of([] { make_backend("cuda"); });
  EXPECT_EQ(code, 1);
  EXPECT_NE(msg.find("--device cuda"), std::string::npos) << msg;
  EXPECT_FALSE(why.empty());
}

}  // namespace
