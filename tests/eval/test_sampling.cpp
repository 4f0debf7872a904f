// The sampler (eval/sampling.cpp) against distributions computed by hand from the definitions (Hugging Face's
// logits processors: repetition penalty, then temperature, top-k, top-p), and its draws against those
// distributions. Probabilities are compared to 1e-6 absolute: the hand values below are rounded to 6-7 digits.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <vector>

#include "polyllama/core/random.hpp"
#include "polyllama/eval/sampling.hpp"
#include "test_support.hpp"

using namespace polyllama;

namespace {

const std::vector<double> kLogits = {2.0, 1.0, 0.0, -1.0};

std::map<int32_t, double> dist(const SamplingConfig& c, const std::vector<double>& z,
                               const std::vector<int32_t>& seen = {}) {
  Sampler s(c);
  std::map<int32_t, double> m;
  for (const auto& [id, p] : s.distribution(z.data(), static_cast<int64_t>(z.size()), seen)) m[id] = p;
  return m;
}

void expect_dist(const std::map<int32_t, double>& got, const std::map<int32_t, double>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (const auto& [id, p] : want) {
    ASSERT_TRUE(got.count(id)) << "token " << id << " missing";
    EXPECT_NEAR(got.at(id), p, 1e-6) << "token " << id;
  }
}

SamplingConfig with(double temperature, int64_t top_k = 0, double top_p = 1.0, double penalty = 1.0) {
  SamplingConfig c;
  c.temperature = temperature;
  c.top_k = top_k;
  c.top_p = top_p;
  c.repetition_penalty = penalty;
  c.seed = 42;
  return c;
}

// softmax(2, 1, 0, -1) = (e^2, e, 1, e^-1) / 11.475217
TEST(Sampling, TemperatureOneIsTheSoftmax) {
  expect_dist(dist(with(1.0), kLogits), {{0, 0.643914}, {1, 0.236883}, {2, 0.087144}, {3, 0.032059}});
}

// logits / 0.5 = (4, 2, 0, -2): (e^4, e^2, 1, e^-2) / 63.122541
TEST(Sampling, TemperatureSharpens) {
  expect_dist(dist(with(0.5), kLogits), {{0, 0.864955}, {1, 0.117059}, {2, 0.015842}, {3, 0.002144}});
}

// top-p 0.8: token 0 (0.644 < 0.8 so far) and token 1 (0.881 >= 0.8 reached with it) stay; renormalised:
// e / (e + 1) and 1 / (e + 1). top-k 2 keeps the same two.
TEST(Sampling, TopPKeepsTheSmallestSetReachingP) {
  expect_dist(dist(with(1.0, 0, 0.8), kLogits), {{0, 0.731059}, {1, 0.268941}});
  expect_dist(dist(with(1.0, 0, 0.6), kLogits), {{0, 1.0}});  // the first token alone reaches 0.6
  expect_dist(dist(with(1.0, 0, 0.9), kLogits),
              {{0, 0.665241}, {1, 0.244728}, {2, 0.090031}});  // (e^2, e, 1) / 11.107338
}

TEST(Sampling, TopKKeepsTheKMostLikely) {
  expect_dist(dist(with(1.0, 2), kLogits), {{0, 0.731059}, {1, 0.268941}});
  // top-k then top-p on the renormalised top-k: (e^2, e, 1) / 11.107338 = 0.665241, 0.244728, 0.090031 -> 0.5
  // is reached by token 0 alone.
  expect_dist(dist(with(1.0, 3, 0.5), kLogits), {{0, 1.0}});
}

// Penalty 2 on seen tokens {0, 3} (3 twice: counted once): 2 -> 1, -1 -> -2; tokens 0 and 1 now tie at 1:
// (e, e, 1, e^-2) / 6.571899.
TEST(Sampling, RepetitionPenaltyDividesPositiveAndMultipliesNegativeLogits) {
  expect_dist(dist(with(1.0, 0, 1.0, 2.0), kLogits, {3, 0, 3}),
              {{0, 0.413622}, {1, 0.413622}, {2, 0.152163}, {3, 0.020593}});
  // Greedy under the penalty: the tie goes to the lower id.
  expect_dist(dist(with(0.0, 0, 1.0, 2.0), kLogits, {3, 0, 3}), {{0, 1.0}});
  expect_dist(dist(with(0.0, 0, 1.0, 3.0), kLogits, {0}), {{1, 1.0}});  // 2 / 3 < 1
}

TEST(Sampling, TopKOneIsGreedy) {
  const int64_t V = 1000;
  std::vector<double> z(static_cast<size_t>(V));
  Sampler greedy(with(0.0)), k1(with(1.3, 1)), k1p(with(0.7, 1, 0.3));
  for (uint64_t trial = 0; trial < 200; ++trial) {
    for (int64_t i = 0; i < V; ++i) z[static_cast<size_t>(i)] = 3.0 * random_normal(trial, 1, static_cast<uint64_t>(i));
    if (trial % 7 == 0) z[17] = z[500] = 50.0;  // a tie for the maximum: the lower id
    const int32_t g = greedy.next(z.data(), V, {}, trial, 0);
    EXPECT_EQ(k1.next(z.data(), V, {}, trial, trial), g);
    EXPECT_EQ(k1p.next(z.data(), V, {}, trial, trial + 1), g);
    if (trial % 7 == 0) EXPECT_EQ(g, 17);
  }
}

// The draw is a pure function of (seed, stream, step); over many steps its frequencies follow the distribution
// (each within 5 standard deviations of n p: a false failure has probability < 1e-5).
TEST(Sampling, FixedSeedIsReproducibleAndDrawsFollowTheDistribution) {
  const SamplingConfig c = with(1.0);
  Sampler a(c), b(c);
  const int64_t n = 40000;
  std::vector<int64_t> count(4, 0);
  for (int64_t i = 0; i < n; ++i) {
    const int32_t x = a.next(kLogits.data(), 4, {}, 9, static_cast<uint64_t>(i));
    ASSERT_EQ(x, b.next(kLogits.data(), 4, {}, 9, static_cast<uint64_t>(i)));
    count[static_cast<size_t>(x)] += 1;
  }
  const std::vector<double> p = {0.643914, 0.236883, 0.087144, 0.032059};
  for (size_t k = 0; k < 4; ++k) {
    const double mean = static_cast<double>(n) * p[k], sd = std::sqrt(mean * (1 - p[k]));
    EXPECT_NEAR(static_cast<double>(count[k]), mean, 5 * sd) << "token " << k;
  }
  // Another seed or stream gives another sequence.
  SamplingConfig c2 = c;
  c2.seed = 43;
  Sampler d(c2);
  int differ = 0, differ_stream = 0;
  for (uint64_t i = 0; i < 200; ++i) {
    differ += d.next(kLogits.data(), 4, {}, 9, i) != a.next(kLogits.data(), 4, {}, 9, i);
    differ_stream += a.next(kLogits.data(), 4, {}, 10, i) != a.next(kLogits.data(), 4, {}, 9, i);
  }
  EXPECT_GT(differ, 40);
  EXPECT_GT(differ_stream, 40);
}

TEST(Sampling, BadSettingsAreRefused) {
  auto code = [](SamplingConfig c) { return test::error_of([&] { c.validate(); }); };
  EXPECT_EQ(code(with(-1.0)).first, kExitBadInput);
  EXPECT_EQ(code(with(1.0, -2)).first, kExitBadInput);
  EXPECT_EQ(code(with(1.0, 0, 0.0)).first, kExitBadInput);
  EXPECT_EQ(code(with(1.0, 0, 1.5)).first, kExitBadInput);
  EXPECT_EQ(code(with(1.0, 0, 1.0, 0.0)).first, kExitBadInput);
  EXPECT_NE(code(with(1.0, 0, 1.5)).second.find("--top-p"), std::string::npos);
}

}  // namespace
