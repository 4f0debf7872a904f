#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "polyllama/backend/cpu/cpu_backend.hpp"
#include "polyllama/optim/optim_config.hpp"
#include "polyllama/optim/zero_adamw.hpp"

using namespace polyllama;

TEST(Schedule, WarmupThenCosineHandValues) {
  OptimConfig c;
  c.lr = 1.0;
  c.min_lr = 0.1;
  c.warmup_steps = 4;
  // Warmup: (step + 1) / 4.
  EXPECT_DOUBLE_EQ(lr_at(c, 0, 14), 0.25);
  EXPECT_DOUBLE_EQ(lr_at(c, 3, 14), 1.0);
  // Decay over steps 4..13 (10 steps): progress (s - 4) / 9; midpoint s = 8.5 is cos(pi/2) = 0.
  EXPECT_DOUBLE_EQ(lr_at(c, 4, 14), 1.0);
  EXPECT_NEAR(lr_at(c, 13, 14), 0.1, 1e-15);
  EXPECT_NEAR(lr_at(c, 7, 14), 0.1 + 0.45 * (1 + std::cos(M_PI * 3.0 / 9.0)), 1e-15);
  EXPECT_NEAR(lr_at(c, 50, 14), 0.1, 1e-15);  // past the end: stays at the floor
}

TEST(Schedule, RejectsBadConfig) {
  OptimConfig c;
  c.min_lr = 2 * c.lr;
  EXPECT_THROW(c.validate(), Error);
  c = OptimConfig{};
  c.beta2 = 1.0;
  EXPECT_THROW(c.validate(), Error);
}

// The optimizer on one process (dp = 1): plain AdamW.
std::vector<ZeroSlot> whole(const std::vector<ParamSlot>& slots) {
  std::vector<ZeroSlot> z;
  for (const ParamSlot& s : slots) z.push_back({s, ShardSpec::full({s.param.numel()})});
  return z;
}

TEST(AdamW, ClipsToGlobalNormAcrossTensors) {
  CpuBackend be(2);
  std::vector<float> p1(3, 0.f), g1{3.f, 0.f, 0.f}, p2(2, 0.f), g2{0.f, 4.f};
  std::vector<ParamSlot> slots = {{"a", Tensor(p1.data(), DType::f32, {3}), Tensor(g1.data(), DType::f32, {3}), true},
                                  {"b", Tensor(p2.data(), DType::f32, {2}), Tensor(g2.data(), DType::f32, {2}), false}};
  OptimConfig c;
  c.grad_clip = 1.0;
  c.weight_decay = 0;
  const auto one = ParallelContext::single();
  ZeroAdamW opt(c, be, whole(slots), *one);
  // The global norm is sqrt(3^2 + 4^2) = 5 over both tensors, so the step sees each gradient times 1/5.
  EXPECT_NEAR(opt.clip_grad_norm(), 5.0, 1e-12);
  EXPECT_EQ(g1[0], 3.f);  // the buffers are not rewritten: the optimizer scales as it reads
  opt.step(0.1);
  // After one step m = (1 - b1) g_clipped, v = (1 - b2) g_clipped^2; exp_avg shows the clipped gradient.
  const float* m1 = opt.exp_avg(0).ptr<float>();
  const float* m2 = opt.exp_avg(1).ptr<float>();
  EXPECT_NEAR(m1[0], (1 - c.beta1) * 0.6, 1e-7);
  EXPECT_NEAR(m2[1], (1 - c.beta1) * 0.8, 1e-7);
  // Under the limit the factor is 1 again.
  std::fill(g1.begin(), g1.end(), 0.f);
  std::fill(g2.begin(), g2.end(), 0.f);
  g1[0] = 0.5f;
  EXPECT_NEAR(opt.clip_grad_norm(), 0.5, 1e-7);
  opt.step(0.1);
  EXPECT_NEAR(m1[0], c.beta1 * (1 - c.beta1) * 0.6 + (1 - c.beta1) * 0.5, 1e-7);
}

TEST(AdamW, NoDecayOnNormWeightsAndFirstStepIsSignTimesLr) {
  CpuBackend be(2);
  std::vector<float> p1{1.f, 1.f}, g1{0.5f, -2.f}, p2{1.f}, g2{0.25f};
  std::vector<ParamSlot> slots = {{"w", Tensor(p1.data(), DType::f32, {2}), Tensor(g1.data(), DType::f32, {2}), true},
                                  {"norm", Tensor(p2.data(), DType::f32, {1}), Tensor(g2.data(), DType::f32, {1}), false}};
  OptimConfig c;
  c.weight_decay = 0.1;
  c.eps = 1e-12;
  const auto one = ParallelContext::single();
  ZeroAdamW opt(c, be, whole(slots), *one);
  opt.step(0.01);
  // Step 1 of Adam moves each weight by lr * g / |g| (bias-corrected m / sqrt(v) = sign(g)); decay multiplies
  // decayed weights by (1 - lr * wd) first.
  EXPECT_NEAR(p1[0], 1.0 * (1 - 0.01 * 0.1) - 0.01, 1e-6);
  EXPECT_NEAR(p1[1], 1.0 * (1 - 0.01 * 0.1) + 0.01, 1e-6);
  EXPECT_NEAR(p2[0], 1.0 - 0.01, 1e-6);  // no decay on the norm weight
  EXPECT_EQ(opt.steps_done(), 1);
}
