#include <gtest/gtest.h>

#include "polyllama/core/arena.hpp"
#include "polyllama/core/random.hpp"

using namespace polyllama;

TEST(Arena, SlotsAreAlignedAndDisjoint) {
  Arena a("t", DType::f32);
  int h1 = a.reserve({3, 5});
  int h2 = a.reserve({7});
  a.allocate();
  Tensor t1 = a.get(h1), t2 = a.get(h2);
  EXPECT_EQ(t1.numel(), 15);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(t1.data) % 64, 0u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(t2.data) % 64, 0u);
  EXPECT_GE(static_cast<char*>(t2.data) - static_cast<char*>(t1.data), 15 * 4);
}

TEST(Tensor, ViewChecksElementCount) {
  float buf[12];
  Tensor t(buf, DType::f32, {3, 4});
  EXPECT_EQ(t.view({2, 6}).cols(), 6);
  EXPECT_THROW(t.view({5, 2}), Error);
  EXPECT_THROW(t.ptr<double>(), Error);
}

TEST(Random, NormalHasUnitMoments) {
  // 200k draws: the sample mean's standard error is 1/sqrt(2e5) = 0.0022, so 0.01 is > 4 sigma.
  double s = 0, s2 = 0;
  const int n = 200000;
  for (int i = 0; i < n; ++i) {
    double x = random_normal(7, 3, static_cast<uint64_t>(i));
    s += x;
    s2 += x * x;
  }
  EXPECT_NEAR(s / n, 0.0, 0.01);
  EXPECT_NEAR(s2 / n, 1.0, 0.02);
  EXPECT_EQ(random_normal(7, 3, 11), random_normal(7, 3, 11));
}
