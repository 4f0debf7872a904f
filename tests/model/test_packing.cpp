// Packed rows (doc_start) against the independent reference of running each example alone: a row holding
// examples A and B and padding must give exactly the loss and the gradients of A in a row of its own plus B in
// a row of its own (fp64, so the only difference is the order of floating-point sums). This is what makes
// packed SFT the same training as padded SFT, only faster.
#include <gtest/gtest.h>

#include <vector>

#include "polyllama/backend/cpu/cpu_backend.hpp"
#include "polyllama/core/random.hpp"
#include "polyllama/model/llama.hpp"
#include "test_support.hpp"

using namespace polyllama;
using polyllama::test::max_rel_err;

namespace {

ModelConfig config() {
  ModelConfig c;
  c.hidden_size = 16;
  c.intermediate_size = 24;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.vocab_size = 37;
  c.max_position_embeddings = 32;
  return c;
}

int32_t tok(uint64_t stream, uint64_t i) { return static_cast<int32_t>(random_bits(9, stream, i) % 37); }

struct Result {
  double loss;
  std::vector<double> grads;  // every parameter gradient, concatenated
};

Result run(const std::vector<int32_t>& in, const std::vector<int32_t>& tgt, const std::vector<int32_t>* doc_start,
        int64_t T) {
  CpuBackend be;
  LlamaModel m(config(), be, DType::f64);
  m.init_random(77, 0.3);  // a pure function of the seed: every run has the same weights
  m.allocate_activations(1, T);
  m.zero_grads();
  Result r;
  r.loss = m.forward_backward(in.data(), tgt.data(), 1.0, true, doc_start ? doc_start->data() : nullptr);
  const Tensor g = m.all_grads();
  r.grads.assign(g.ptr<double>(), g.ptr<double>() + g.numel());
  return r;
}

}  // namespace

TEST(Packing, PackedRowEqualsExamplesAlone) {
  const int64_t na = 9, nb = 6, T = 19;  // 9 + 6 positions used, 4 of padding
  std::vector<int32_t> ain(na), atg(na), bin(nb), btg(nb);
  for (int64_t t = 0; t < na; ++t) ain[t] = tok(1, t), atg[t] = t < 3 ? LlamaModel::kIgnoreIndex : tok(2, t);
  for (int64_t t = 0; t < nb; ++t) bin[t] = tok(3, t), btg[t] = t < 2 ? LlamaModel::kIgnoreIndex : tok(4, t);

  std::vector<int32_t> in, tgt, ds;
  for (int64_t t = 0; t < na; ++t) in.push_back(ain[t]), tgt.push_back(atg[t]), ds.push_back(0);
  for (int64_t t = 0; t < nb; ++t) in.push_back(bin[t]), tgt.push_back(btg[t]), ds.push_back(na);
  while (static_cast<int64_t>(in.size()) < T)
    in.push_back(2), tgt.push_back(LlamaModel::kIgnoreIndex), ds.push_back(na + nb);

  const Result packed = run(in, tgt, &ds, T);
  const Result a = run(ain, atg, nullptr, na), b = run(bin, btg, nullptr, nb);
  std::vector<double> sum(a.grads.size());
  for (size_t i = 0; i < sum.size(); ++i) sum[i] = a.grads[i] + b.grads[i];
  // fp64: sums of O(10..100) terms in a different order differ by ~1e-15 relative; 1e-11 leaves room and is
  // far below what one cross-example attention weight or one shifted RoPE position changes (O(0.1), below).
  EXPECT_NEAR(packed.loss, a.loss + b.loss, 1e-11 * std::abs(a.loss + b.loss));
  EXPECT_LT(max_rel_err(packed.grads, sum), 1e-11);

  // Without doc_start the same row is one causal stream: B's tokens see A's and sit at positions 9.., so
  // the result must differ clearly (the test above would not notice a model that ignores doc_start otherwise).
  const Result unsegmented = run(in, tgt, nullptr, T);
  EXPECT_GT(std::abs(unsegmented.loss - packed.loss), 1e-3 * std::abs(packed.loss));
}

TEST(Packing, AllZeroDocStartIsBitwiseThePlainCausalPath) {
  const int64_t T = 12;
  std::vector<int32_t> in(T), tgt(T), zeros(T, 0);
  for (int64_t t = 0; t < T; ++t) in[t] = tok(5, t), tgt[t] = tok(6, t);
  const Result plain = run(in, tgt, nullptr, T), zero = run(in, tgt, &zeros, T);
  EXPECT_EQ(plain.loss, zero.loss);
  EXPECT_EQ(plain.grads, zero.grads);
}

TEST(Packing, BadDocStartIsRefused) {
  CpuBackend be;
  LlamaModel m(config(), be, DType::f64);
  m.init_random(1, 0.02);
  m.allocate_activations(1, 4);
  const std::vector<int32_t> in = {1, 2, 3, 4}, tgt = {2, 3, 4, 5};
  for (const std::vector<int32_t>& ds : {std::vector<int32_t>{1, 1, 1, 1}, std::vector<int32_t>{0, 0, 1, 1},
                                         std::vector<int32_t>{0, 0, 2, 0}}) {
    const auto [code, msg] = test::error_of([&] { m.forward_backward(in.data(), tgt.data(), 1.0, false, ds.data()); });
    EXPECT_EQ(code, kExitBadInput);
    EXPECT_NE(msg.find("doc_start"), std::string::npos) << msg;
  }
}
