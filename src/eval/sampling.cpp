#include "polyllama/eval/sampling.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "polyllama/core/error.hpp"
#include "polyllama/core/random.hpp"

namespace polyllama {

void SamplingConfig::validate() const {
  if (!(temperature >= 0.0) || !std::isfinite(temperature))
    fail_input("--temperature " + std::to_string(temperature) + ": expected >= 0 (0 is greedy)");
  if (top_k < 0) fail_input("--top-k " + std::to_string(top_k) + ": expected >= 0 (0 is off)");
  if (!(top_p > 0.0 && top_p <= 1.0)) fail_input("--top-p " + std::to_string(top_p) + ": expected in (0, 1]");
  if (!(repetition_penalty > 0.0) || !std::isfinite(repetition_penalty))
    fail_input("--repetition-penalty " + std::to_string(repetition_penalty) + ": expected > 0 (1 is off)");
}

void Sampler::penalized(const double* logits, int64_t V, const std::vector<int32_t>& seen) {
  work_.assign(logits, logits + V);
  if (cfg_.repetition_penalty == 1.0) return;
  // Each seen id once, however often it occurs (as Hugging Face gathers and scatters by id).
  std::vector<int32_t> ids(seen);
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  for (int32_t id : ids) {
    if (id < 0 || id >= V) continue;
    double& z = work_[static_cast<size_t>(id)];
    z = z < 0 ? z * cfg_.repetition_penalty : z / cfg_.repetition_penalty;
  }
}

std::vector<std::pair<int32_t, double>> Sampler::distribution(const double* logits, int64_t V,
                                                              const std::vector<int32_t>& seen) {
  penalized(logits, V, seen);
  std::vector<std::pair<int32_t, double>> out;
  if (cfg_.greedy()) {
    const auto it = std::max_element(work_.begin(), work_.end());  // the first maximum: lowest id on ties
    out.emplace_back(static_cast<int32_t>(it - work_.begin()), 1.0);
    return out;
  }
  // Most likely first, lower id first on ties: top-k = 1 then keeps exactly greedy's token.
  const int64_t keep_k = cfg_.top_k > 0 ? std::min(cfg_.top_k, V) : V;
  order_.resize(static_cast<size_t>(V));
  std::iota(order_.begin(), order_.end(), 0);
  auto more_likely = [&](int32_t a, int32_t b) {
    const double za = work_[static_cast<size_t>(a)], zb = work_[static_cast<size_t>(b)];
    return za > zb || (za == zb && a < b);
  };
  if (keep_k < V) {
    std::partial_sort(order_.begin(), order_.begin() + keep_k, order_.end(), more_likely);
    order_.resize(static_cast<size_t>(keep_k));
  } else {
    std::sort(order_.begin(), order_.end(), more_likely);
  }
  // Softmax of logits / T over the kept tokens, max-shifted.
  const double zmax = work_[static_cast<size_t>(order_[0])];
  double total = 0;
  out.reserve(order_.size());
  for (int32_t id : order_) {
    const double e = std::exp((work_[static_cast<size_t>(id)] - zmax) / cfg_.temperature);
    out.emplace_back(id, e);
    total += e;
  }
  for (auto& [id, p] : out) p /= total;
  if (cfg_.top_p < 1.0) {
    // Keep a token while the probability of the more likely ones before it is still below top_p.
    double before = 0;
    size_t n = 0;
    while (n < out.size() && (n == 0 || before < cfg_.top_p)) before += out[n++].second;
    out.resize(n);
    double kept = 0;
    for (const auto& e : out) kept += e.second;
    for (auto& [id, p] : out) p /= kept;
  }
  while (out.size() > 1 && out.back().second == 0.0) out.pop_back();
  return out;
}

int32_t Sampler::next(const double* logits, int64_t V, const std::vector<int32_t>& seen, uint64_t stream,
                      uint64_t step) {
  const std::vector<std::pair<int32_t, double>> d = distribution(logits, V, seen);
  if (d.size() == 1) return d[0].first;
  const double u = random_uniform(cfg_.seed, stream, step);
  double cum = 0;
  for (const auto& [id, p] : d) {
    cum += p;
    if (u < cum) return id;
  }
  return d.back().first;  // u within rounding of 1
}

}  // namespace polyllama
