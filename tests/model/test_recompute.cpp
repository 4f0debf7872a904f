// Activation recomputation changes where activations live, not what is computed: with it the loss and every
// parameter gradient are bit-for-bit those of the plain model (the same ops on the same inputs, in the same
// order), for plain causal rows and for packed examples, in f32 and f64; and it keeps less activation memory.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "polyllama/backend/cpu/cpu_backend.hpp"
#include "polyllama/core/random.hpp"
#include "polyllama/model/llama.hpp"

using namespace polyllama;

namespace {

struct Result {
  double loss;
  std::vector<std::vector<char>> grads;
  size_t activation_bytes;
};

Result run(DType dtype, bool recompute, bool packed, int64_t recompute_layers = -1) {
  CpuBackend be(2);
  ModelConfig cfg = ModelConfig::preset("tiny");
  cfg.num_hidden_layers = 3;
  LlamaModel m(cfg, be, dtype);
  m.init_random(11, 0.05);
  const int64_t B = 2, T = 24, N = B * T;
  m.allocate_activations(B, T, recompute, recompute_layers);
  std::vector<int32_t> in(N), tgt(N), doc(N);
  for (int64_t i = 0; i < N; ++i) {
    in[i] = static_cast<int32_t>(random_bits(5, 1, static_cast<uint64_t>(i)) % 512);
    tgt[i] = static_cast<int32_t>(random_bits(5, 2, static_cast<uint64_t>(i)) % 512);
    doc[i] = packed && i % T >= 10 ? 10 : 0;  // two examples per row when packed
  }
  tgt[3] = LlamaModel::kIgnoreIndex;
  m.zero_grads();
  Result r;
  r.loss = m.forward_backward(in.data(), tgt.data(), 1.0 / N, true, doc.data());
  r.loss += m.forward_backward(in.data(), tgt.data(), 0.5 / N, true, doc.data());  // accumulation too
  for (size_t i = 0; i < m.params().size(); ++i) {
    const Tensor g = m.grad(i);
    r.grads.emplace_back(static_cast<const char*>(g.data), static_cast<const char*>(g.data) + g.bytes());
  }
  r.activation_bytes = m.activation_bytes();
  return r;
}

}  // namespace

TEST(Recompute, SameLossAndGradientsBitForBit) {
  for (DType d : {DType::f32, DType::f64})
    for (bool packed : {false, true}) {
      const Result plain = run(d, false, packed), re = run(d, true, packed);
      EXPECT_EQ(plain.loss, re.loss) << dtype_name(d) << (packed ? " packed" : "");
      ASSERT_EQ(plain.grads.size(), re.grads.size());
      for (size_t i = 0; i < plain.grads.size(); ++i)
        EXPECT_TRUE(plain.grads[i] == re.grads[i]) << "gradient " << i << " differs, " << dtype_name(d)
                                                   << (packed ? " packed" : "");
      // 3 layers' worth of per-layer activations become one layer's.
      EXPECT_LT(re.activation_bytes, plain.activation_bytes) << dtype_name(d);
    }
}

// --recompute-layers: recomputing the first 1 or 2 of 3 layers (the rest keep their activations) gives the same
// bits too, and the activation memory falls with every recomputed layer.
TEST(Recompute, SomeLayersSameBitsAndMemoryBetween) {
  for (bool packed : {false, true}) {
    const Result plain = run(DType::f32, false, packed);
    size_t prev = plain.activation_bytes;
    for (int64_t layers : {1, 2, 3}) {
      const Result re = run(DType::f32, true, packed, layers);
      EXPECT_EQ(plain.loss, re.loss) << layers << " layers" << (packed ? " packed" : "");
      ASSERT_EQ(plain.grads.size(), re.grads.size());
      for (size_t i = 0; i < plain.grads.size(); ++i)
        EXPECT_TRUE(plain.grads[i] == re.grads[i]) << "gradient " << i << ", " << layers << " layers recomputed";
      if (layers > 1) EXPECT_LT(re.activation_bytes, prev) << layers << " layers";
      prev = re.activation_bytes;
    }
    EXPECT_EQ(prev, run(DType::f32, true, packed).activation_bytes) << "3 of 3 layers is --recompute";
  }
  CpuBackend be(1);
  ModelConfig cfg = ModelConfig::preset("tiny");
  LlamaModel m(cfg, be, DType::f32);
  EXPECT_THROW(m.allocate_activations(2, 8, true, cfg.num_hidden_layers + 1), Error);
}
