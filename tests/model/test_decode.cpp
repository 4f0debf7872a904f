// The KV-cache forward (model/llama_decode.cpp) against the training forward (LlamaModel::forward_logits):
// at every step of prefill and decode, for one row, chunked prefill, and left-padded rows of different lengths
// decoded together, the cached path's logits equal those of a full recomputation.
//
// The full recomputation is one causal forward over each whole sequence: its row t is what a forward over the
// first t + 1 tokens gives (causality; that the training forward is causal and exact is proved against PyTorch
// in test_torch_reference.cpp). Tolerances (max |cached - full| / max |full|): the two paths do the same
// arithmetic in different shapes (one query row against a cache instead of a full causal block, GEMMs of other
// sizes, so other summation orders), so only rounding differs: fp64 1e-12 (measured ~1e-15); fp32 2e-5 for
// logits of O(1) through 2 layers of 32-wide products and softmaxes (unit roundoff 6e-8; measured ~1e-6).
// A wrong position, a missing key or a key from the padding changes logits by 1e-2 or more.
#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

#include "polyllama/backend/cpu/cpu_backend.hpp"
#include "polyllama/core/random.hpp"
#include "polyllama/model/llama.hpp"
#include "polyllama/model/llama_decode.hpp"
#include "test_support.hpp"

using namespace polyllama;

namespace {

ModelConfig decode_config(bool tied) {
  ModelConfig c;
  c.hidden_size = 32;
  c.intermediate_size = 64;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.vocab_size = 61;
  c.max_position_embeddings = 40;
  c.rope_theta = 10000.0;
  c.tie_word_embeddings = tied;
  return c;
}

std::vector<int32_t> tokens(uint64_t seed, int64_t n, int64_t V) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    t[static_cast<size_t>(i)] = static_cast<int32_t>(random_bits(seed, 7, static_cast<uint64_t>(i)) % V);
  return t;
}

// Logits (T, V) of one full causal forward over seq, with a fresh model holding the same weights.
std::vector<double> full_logits(const LlamaModel& src, const std::vector<int32_t>& seq) {
  CpuBackend be;
  LlamaModel m(src.config(), be, src.dtype());
  for (size_t i = 0; i < m.params().size(); ++i) be.copy(m.param(i), src.param(i));
  const int64_t T = static_cast<int64_t>(seq.size()), V = src.config().vocab_size;
  m.allocate_activations(1, T);
  std::vector<double> out(static_cast<size_t>(T * V));
  if (m.dtype() == DType::f64) {
    m.forward_logits(seq.data(), Tensor(out.data(), DType::f64, {T, V}));
  } else {
    std::vector<float> f(out.size());
    m.forward_logits(seq.data(), Tensor(f.data(), DType::f32, {T, V}));
    std::copy(f.begin(), f.end(), out.begin());
  }
  return out;
}

double rel_err(const double* a, const double* ref, int64_t n) { return test::max_rel_err(a, ref, n); }

struct Case {
  DType dtype;
  bool tied;
  double tol;
};

class Decode : public ::testing::TestWithParam<Case> {};

// One row: a 7-token prompt prefilled in chunks of 3 (every prompt position's logits checked), then 12 tokens
// decoded one at a time.
TEST_P(Decode, CachedLogitsEqualFullRecomputationAtEveryStep) {
  const Case c = GetParam();
  CpuBackend be;
  LlamaModel model(decode_config(c.tied), be, c.dtype);
  model.init_random(11, 0.3);
  const int64_t V = model.config().vocab_size, P = 7, steps = 12;
  const std::vector<int32_t> seq = tokens(3, P + steps, V);
  const std::vector<double> ref = full_logits(model, seq);

  LlamaDecoder dec(model, {1, 3, P + steps, true});
  dec.begin(1, P + steps, {});
  std::vector<double> logits;
  dec.append(seq.data(), P, &logits, true);
  double worst = rel_err(logits.data(), ref.data(), P * V);
  for (int64_t t = P; t < P + steps; ++t) {
    dec.append(seq.data() + t, 1, &logits);
    const double e = rel_err(logits.data(), ref.data() + t * V, V);
    EXPECT_LT(e, c.tol) << "decode step at position " << t;
    worst = std::max(worst, e);
  }
  EXPECT_EQ(dec.length(), P + steps);
  std::printf("[ decode ] %s%s: worst relative error of cached vs full logits over %lld positions: %.2e (tol %.0e)\n",
              dtype_name(c.dtype), c.tied ? " tied" : "", static_cast<long long>(P + steps), worst, c.tol);
  EXPECT_LT(worst, c.tol);
}

// Three rows of different prompt lengths, left-padded into one batch, prefilled together in chunks of 4, then
// decoded together; a row that finishes early is retired (its later positions are padding) while the others go on.
TEST_P(Decode, LeftPaddedRowsEachEqualTheirOwnFullRecomputation) {
  const Case c = GetParam();
  CpuBackend be;
  LlamaModel model(decode_config(c.tied), be, c.dtype);
  model.init_random(5, 0.3);
  const int64_t V = model.config().vocab_size, B = 3, steps = 9;
  const std::vector<int64_t> len = {6, 11, 2};
  const int64_t L = *std::max_element(len.begin(), len.end());
  std::vector<std::vector<int32_t>> seqs;
  std::vector<std::vector<double>> refs;
  for (int64_t b = 0; b < B; ++b) {
    seqs.push_back(tokens(100 + static_cast<uint64_t>(b), len[static_cast<size_t>(b)] + steps, V));
    refs.push_back(full_logits(model, seqs.back()));
  }
  std::vector<int32_t> pad(static_cast<size_t>(B)), feed(static_cast<size_t>(B * L), 0);
  for (int64_t b = 0; b < B; ++b) {
    const int64_t n = len[static_cast<size_t>(b)];
    pad[static_cast<size_t>(b)] = static_cast<int32_t>(L - n);
    std::copy(seqs[static_cast<size_t>(b)].begin(), seqs[static_cast<size_t>(b)].begin() + n,
              feed.begin() + b * L + (L - n));
    feed[static_cast<size_t>(b * L)] = b == 2 ? 60 : feed[static_cast<size_t>(b * L)];  // padding ids vary
  }
  LlamaDecoder dec(model, {B, 4, L + steps + 1, false});
  dec.begin(B, L + steps, pad);
  std::vector<double> logits;
  dec.append(feed.data(), L, &logits);
  double worst = 0;
  const int64_t retire_row = 2, retire_after = 4;  // row 2 stops after 4 decode steps
  for (int64_t s = 0;; ++s) {
    for (int64_t b = 0; b < B; ++b) {
      if (b == retire_row && s > retire_after) continue;
      const int64_t t = len[static_cast<size_t>(b)] - 1 + s;  // position whose logits these are
      const double e = rel_err(logits.data() + b * V, refs[static_cast<size_t>(b)].data() + t * V, V);
      EXPECT_LT(e, c.tol) << "row " << b << " position " << t;
      worst = std::max(worst, e);
    }
    if (s == steps) break;
    if (s == retire_after) dec.retire(retire_row);
    std::vector<int32_t> next(static_cast<size_t>(B));
    for (int64_t b = 0; b < B; ++b)
      next[static_cast<size_t>(b)] =
          b == retire_row && s >= retire_after
              ? 0
              : seqs[static_cast<size_t>(b)][static_cast<size_t>(len[static_cast<size_t>(b)] + s)];
    dec.append(next.data(), 1, &logits);
  }
  std::printf("[ decode ] %s%s: left-padded batch of 3, worst relative error vs each row alone: %.2e\n",
              dtype_name(c.dtype), c.tied ? " tied" : "", worst);
}

INSTANTIATE_TEST_SUITE_P(Dtypes, Decode,
                         ::testing::Values(Case{DType::f64, false, 1e-12}, Case{DType::f64, true, 1e-12},
                                           Case{DType::f32, false, 2e-5}),
                         [](const auto& info) {
                           return std::string(dtype_name(info.param.dtype)) + (info.param.tied ? "_tied" : "");
                         });

TEST(Decode, PositionsPastTheModelLimitAreRefused) {
  CpuBackend be;
  LlamaModel model(decode_config(false), be, DType::f32);
  model.init_random(1, 0.3);
  const int64_t max_pos = model.config().max_position_embeddings;
  LlamaDecoder dec(model, {1, 64, max_pos + 4, false});
  dec.begin(1, max_pos + 4, {});
  const std::vector<int32_t> seq = tokens(9, max_pos + 1, model.config().vocab_size);
  std::vector<double> logits;
  const auto [code, msg] = test::error_of([&] { dec.append(seq.data(), max_pos + 1, &logits); });
  EXPECT_EQ(code, kExitBadInput);
  EXPECT_NE(msg.find("max_position_embeddings 40"), std::string::npos) << msg;
}

}  // namespace
