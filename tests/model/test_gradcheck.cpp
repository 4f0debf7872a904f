// Whole-model gradient check in f64: every parameter tensor's gradient from LlamaModel::forward_backward against
// central differences of the summed loss, on a tiny GQA config (untied and tied LM head), plus the contracts of
// loss_scale (linear), repeated calls (accumulate) and want_grad = false (grads untouched).
#include <gtest/gtest.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include <algorithm>
#include <cmath>
#include <ostream>
#include <set>
#include <string>
#include <vector>

#include "polyllama/backend/cpu/cpu_backend.hpp"
#include "polyllama/core/random.hpp"
#include "polyllama/model/llama.hpp"
#include "test_support.hpp"

using namespace polyllama;
using polyllama::test::max_rel_err;

namespace {

using Vec = std::vector<double>;

// Finite differences of the summed loss L (about 40 here), h = 1e-6. Truncation: h^2/6 |L'''| ~ 1e-12 * O(10).
// Roundoff: L carries ~ u * 40 * (a few) ~ 1e-14 of rounding error, divided by 2h gives ~5e-9 absolute, against
// per-tensor gradient scales of O(1) (0.5..7 measured; asserted >= 0.1 below): <= 5e-8 relative even at 0.1,
// ~5e-9 measured. A missing term, wrong scale or wrong index is O(1) relative.
constexpr double kStep = 1e-6;
constexpr double kTol = 1e-6;
constexpr int kSamplesPerTensor = 20;

// The finite-difference losses are the reference, not the code under test (the analytic gradients are computed
// with the ambient thread count), so they are evaluated on one OpenMP thread: each forward is ~30 small ops, and
// on a busy 2-core machine every two-thread fork/join can cost a scheduler tick. Results within a thread count
// are deterministic, so the +h and -h losses are computed identically.
class OneThread {
 public:
#ifdef _OPENMP
  OneThread() : saved_(omp_get_max_threads()) { omp_set_num_threads(1); }
  ~OneThread() { omp_set_num_threads(saved_); }

 private:
  int saved_;
#endif
};

struct Case {
  const char* name;
  bool tied;
};
void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

ModelConfig tiny_config(bool tied) {
  ModelConfig c;
  c.hidden_size = 16;
  c.intermediate_size = 24;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;  // head_dim 4
  c.num_key_value_heads = 2;  // grouped-query: two query heads per kv head
  c.vocab_size = 37;
  c.max_position_embeddings = 16;
  c.tie_word_embeddings = tied;
  return c;
}

constexpr int64_t kBatch = 2, kSeq = 7, kTokens = kBatch * kSeq;

class GradCheck : public ::testing::TestWithParam<Case> {
 protected:
  GradCheck() : cfg_(tiny_config(GetParam().tied)), model_(cfg_, be_, DType::f64) {
    // std 0.3 (not the usual 0.02) so that every path through the network carries an O(0.01..1) gradient.
    model_.init_random(4242, 0.3);
    model_.allocate_activations(kBatch, kSeq);
    inputs_.resize(kTokens);
    targets_.resize(kTokens);
    for (int64_t n = 0; n < kTokens; ++n)
      inputs_[static_cast<size_t>(n)] = static_cast<int32_t>(random_bits(5, 1, static_cast<uint64_t>(n)) % 37);
    inputs_[5] = inputs_[1];  // a repeated token: its embedding row gathers two gradients
    inputs_[11] = inputs_[1];
    for (int64_t n = 0; n < kTokens; ++n)  // next-token targets; the last one of each row a fresh draw
      targets_[static_cast<size_t>(n)] = (n + 1) % kSeq != 0
                                             ? inputs_[static_cast<size_t>(n + 1)]
                                             : static_cast<int32_t>(random_bits(5, 2, static_cast<uint64_t>(n)) % 37);
    for (size_t n : {2, 8, 13}) targets_[n] = LlamaModel::kIgnoreIndex;  // in both rows, one at a row's end
  }

  double loss(bool want_grad = false, double scale = 1.0) {
    return model_.forward_backward(inputs_.data(), targets_.data(), scale, want_grad);
  }

  std::vector<Vec> grads() const {
    std::vector<Vec> g;
    for (size_t i = 0; i < model_.params().size(); ++i) {
      const Tensor t = model_.grad(i);
      const double* p = t.ptr<double>();
      g.emplace_back(p, p + t.numel());
    }
    return g;
  }

  // dL/dp[j] by central differences, L from forward_backward(want_grad = false).
  double central_diff(double* p, int64_t j) {
    const double p0 = p[j], xp = p0 + kStep, xm = p0 - kStep;
    p[j] = xp;
    const double lp = loss();
    p[j] = xm;
    const double lm = loss();
    p[j] = p0;
    return (lp - lm) / (xp - xm);  // the step actually taken, after rounding
  }

  // Which elements of parameter i to perturb: all of a norm weight, else kSamplesPerTensor distinct elements
  // from a counter hash, plus (for the embedding) elements in rows that the inputs actually use.
  std::vector<int64_t> sample(size_t i) const {
    const int64_t n = model_.param(i).numel();
    std::set<int64_t> s;
    if (!model_.params()[i].decay || n <= kSamplesPerTensor) {
      for (int64_t j = 0; j < n; ++j) s.insert(j);
    } else {
      for (uint64_t k = 0; static_cast<int>(s.size()) < kSamplesPerTensor; ++k)
        s.insert(static_cast<int64_t>(random_bits(77, i, k) % static_cast<uint64_t>(n)));
      if (model_.params()[i].name == "model.embed_tokens.weight")
        for (size_t k = 0; k < 6; ++k)
          s.insert(inputs_[2 * k + 1] * cfg_.hidden_size + static_cast<int64_t>((5 * k) % 16));
    }
    return {s.begin(), s.end()};
  }

  CpuBackend be_;
  ModelConfig cfg_;
  LlamaModel model_;
  std::vector<int32_t> inputs_, targets_;
};

std::string case_name(const ::testing::TestParamInfo<Case>& i) { return i.param.name; }

}  // namespace

TEST_P(GradCheck, EveryParameterMatchesFiniteDifferences) {
  model_.zero_grads();
  const double l = loss(/*want_grad=*/true, 1.0);
  ASSERT_TRUE(std::isfinite(l));
  ASSERT_GT(l, 1.0);
  const std::vector<Vec> g = grads();
  const size_t expected = 1 + 9 * static_cast<size_t>(cfg_.num_hidden_layers) + 1 + (GetParam().tied ? 0 : 1);
  ASSERT_EQ(model_.params().size(), expected);

  const OneThread one;
  for (size_t i = 0; i < model_.params().size(); ++i) {
    const std::string& name = model_.params()[i].name;
    double* p = model_.param(i).ptr<double>();
    Vec an, fd;
    for (int64_t j : sample(i)) {
      an.push_back(g[i][static_cast<size_t>(j)]);
      fd.push_back(central_diff(p, j));
    }
    double scale = 0;
    for (double v : fd) scale = std::max(scale, std::fabs(v));
    const double err = max_rel_err(an.data(), fd.data(), static_cast<int64_t>(an.size()));
    EXPECT_GT(scale, 0.1) << name << ": gradients too small for a meaningful check";
    EXPECT_LT(err, kTol) << name << " (" << an.size() << " elements, max |grad| " << scale << ")";
  }

  if (!GetParam().tied) {  // untied: embedding rows of tokens that never occur get exactly nothing
    const std::set<int32_t> used(inputs_.begin(), inputs_.end());
    const Vec& ge = g[model_.param_index("model.embed_tokens.weight")];
    for (int32_t row = 0; row < cfg_.vocab_size; ++row) {
      if (used.count(row)) continue;
      for (int64_t c = 0; c < cfg_.hidden_size; ++c)
        ASSERT_EQ(ge[static_cast<size_t>(row * cfg_.hidden_size + c)], 0.0);
    }
  }
}

// The loss is what the logits say: a naive log-softmax over forward_logits' output, counted targets only.
TEST_P(GradCheck, LossMatchesLogits) {
  const int64_t V = cfg_.vocab_size;
  Vec logits(static_cast<size_t>(kTokens * V));
  model_.forward_logits(inputs_.data(), Tensor(logits.data(), DType::f64, {kTokens, V}));
  double ref = 0;
  for (int64_t n = 0; n < kTokens; ++n) {
    const int32_t t = targets_[static_cast<size_t>(n)];
    if (t == LlamaModel::kIgnoreIndex) continue;
    const double* x = &logits[static_cast<size_t>(n * V)];
    const double mx = *std::max_element(x, x + V);
    double z = 0;
    for (int64_t j = 0; j < V; ++j) z += std::exp(x[j] - mx);
    ref += mx + std::log(z) - x[t];
  }
  // Same logits, two summation orders of 11 O(3) terms: ~1e-15 relative; 1e-12 leaves room.
  EXPECT_NEAR(loss(), ref, 1e-12 * ref);
}

// forward_backward accumulates d(loss_scale * L) into the grads: linear in loss_scale, doubled by a second call,
// and untouched with want_grad = false.
TEST_P(GradCheck, LossScaleIsLinearAndCallsAccumulate) {
  model_.zero_grads();
  const double l1 = loss(true, 1.0);
  const std::vector<Vec> g1 = grads();

  model_.zero_grads();
  const double ls = loss(true, 0.3);
  const std::vector<Vec> gs = grads();

  model_.zero_grads();
  loss(true, 1.0);
  const double l2 = loss(true, 1.0);  // second call on top of the first
  const std::vector<Vec> g2 = grads();

  model_.zero_grads();
  const double lf = loss(false, 1.0);
  const std::vector<Vec> g0 = grads();

  // The loss does not depend on loss_scale or want_grad beyond summation-order rounding (~1e-15).
  EXPECT_NEAR(ls, l1, 1e-13 * l1);
  EXPECT_EQ(l2, l1);  // same inputs, same code path: bit for bit
  EXPECT_NEAR(lf, l1, 1e-13 * l1);

  for (size_t i = 0; i < g1.size(); ++i) {
    const std::string& name = model_.params()[i].name;
    Vec scaled(g1[i]), doubled(g1[i]);
    for (double& v : scaled) v *= 0.3;
    for (double& v : doubled) v *= 2.0;
    const auto n = static_cast<int64_t>(g1[i].size());
    // The backward pass is linear in its upstream gradient; scaling it by 0.3 changes only roundings (a few u per
    // op over ~50 ops: ~1e-14 normwise). 1e-12 leaves room and still catches any scale applied twice or not at all.
    EXPECT_LT(max_rel_err(gs[i].data(), scaled.data(), n), 1e-12) << name;
    // Accumulating the same increment twice: g + g is exact, and where two terms meet in one tensor (tied
    // head + embedding, the BLAS beta = 1 updates) the sum is re-associated: a few u. 1e-13 leaves room.
    EXPECT_LT(max_rel_err(g2[i].data(), doubled.data(), n), 1e-13) << name;
    for (double v : g0[i]) ASSERT_EQ(v, 0.0) << name << ": want_grad = false wrote gradients";
  }
}

INSTANTIATE_TEST_SUITE_P(GradCheck, GradCheck,
                         ::testing::Values(Case{"untied_head", false}, Case{"tied_embeddings", true}), case_name);

// The LM head runs in row chunks of max(16, 4 Mi / vocab) rows, so full logits never exist at once. With vocab
// 4096 a chunk is 1024 rows: a (4, 260) micro-batch (1040 rows) takes two chunks, the second partial, while the
// same rows as two (2, 260) micro-batches take one each. Both must give the same loss and gradients. seq 260 also
// runs attention through five 64-row blocks, the last partial.
TEST(GradCheckChunks, ChunkedHeadMatchesUnchunkedMicroBatches) {
  for (const bool tied : {false, true}) {
    SCOPED_TRACE(tied ? "tied" : "untied");
    ModelConfig cfg = tiny_config(tied);
    cfg.num_hidden_layers = 1;
    cfg.vocab_size = 4096;
    cfg.max_position_embeddings = 512;
    const int64_t seq = 260, rows = 4 * seq;
    std::vector<int32_t> in(static_cast<size_t>(rows)), tg(in.size());
    for (size_t n = 0; n < in.size(); ++n) {
      in[n] = static_cast<int32_t>(random_bits(9, 1, n) % 4096);
      tg[n] = n % 17 == 3 ? LlamaModel::kIgnoreIndex : static_cast<int32_t>(random_bits(9, 2, n) % 4096);
    }
    CpuBackend be;
    LlamaModel whole(cfg, be, DType::f64), halves(cfg, be, DType::f64);
    whole.init_random(31, 0.3);  // a pure function of (seed, name, index): identical weights
    halves.init_random(31, 0.3);
    whole.allocate_activations(4, seq);
    halves.allocate_activations(2, seq);
    whole.zero_grads();
    halves.zero_grads();
    const double lw = whole.forward_backward(in.data(), tg.data(), 1.0, true);
    const double lh = halves.forward_backward(in.data(), tg.data(), 1.0, true) +
                      halves.forward_backward(in.data() + rows / 2, tg.data() + rows / 2, 1.0, true);
    // Exactly equal in exact arithmetic; in floating point the per-token losses are identical and only their
    // sums (and the gradient sums over 1040 vs 2 x 520 rows) are re-associated. Summing K terms in another
    // order moves the result by at most K u sum|terms|; with random-sign terms sum|terms| / max|sum| ~ sqrt(K),
    // so ~1040 * 1.1e-16 * 32 = 4e-12 normwise in the worst case (2e-15 measured). 1e-11 is above that bound;
    // a chunk dropped, counted twice or offset is O(1).
    EXPECT_NEAR(lw, lh, 1e-12 * lw);
    for (size_t i = 0; i < whole.params().size(); ++i) {
      const Tensor a = whole.grad(i), b = halves.grad(i);
      const double err = max_rel_err(a.ptr<double>(), b.ptr<double>(), a.numel());
      EXPECT_LT(err, 1e-11) << whole.params()[i].name;
    }
  }
}
