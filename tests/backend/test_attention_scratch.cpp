// The attention backward uses one (T, T) scratch block per thread. A scratch sized when fewer threads were
// active (a model allocated, then the thread count raised) must still work, with fewer threads, and give the
// same bits: the work is split by (batch, kv-head) and each item is computed the same way on any thread.
#include <gtest/gtest.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include <vector>

#include "polyllama/backend/cpu/cpu_backend.hpp"
#include "polyllama/core/random.hpp"

using namespace polyllama;

TEST(CpuAttention, ScratchForFewerThreadsThanActive) {
  const int64_t B = 2, T = 33, H = 4, KV = 2, D = 8;
  auto fill = [](std::vector<float>& v, uint64_t stream) {
    for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(random_normal(5, stream, i));
  };
  std::vector<float> q(B * T * H * D), k(B * T * KV * D), v(B * T * KV * D), dout(B * T * H * D);
  fill(q, 1), fill(k, 2), fill(v, 3), fill(dout, 4);
  std::vector<float> out(q.size()), probs(B * H * T * T);
  CpuBackend be(2);
  Tensor q4(q.data(), DType::f32, {B, T, H, D}), k4(k.data(), DType::f32, {B, T, KV, D}),
      v4(v.data(), DType::f32, {B, T, KV, D}), o4(out.data(), DType::f32, {B, T, H, D}),
      g4(dout.data(), DType::f32, {B, T, H, D}), p(probs.data(), DType::f32, {B, H, T, T});
  be.attention_forward(o4, p, q4, k4, v4, AttnSpan{});

  auto backward = [&](int64_t scratch_blocks) {
    std::vector<float> dq(q.size()), dk(k.size()), dv(v.size()), scratch(scratch_blocks * T * T);
    be.attention_backward(Tensor(dq.data(), DType::f32, {B, T, H, D}), Tensor(dk.data(), DType::f32, {B, T, KV, D}),
                          Tensor(dv.data(), DType::f32, {B, T, KV, D}), g4, q4, k4, v4, o4, p,
                          Tensor(scratch.data(), DType::f32, {scratch_blocks * T * T}), AttnSpan{});
    dq.insert(dq.end(), dk.begin(), dk.end());
    dq.insert(dq.end(), dv.begin(), dv.end());
    return dq;
  };
  const std::vector<float> full = backward(be.attention_scratch_elems(B, H, T) / (T * T));
  EXPECT_EQ(backward(1), full);  // one block: runs on one thread, same bits
  EXPECT_THROW(backward(0), Error);
}
