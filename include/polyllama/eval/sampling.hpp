#pragma once
// Choosing the next token from one row of logits, the way Hugging Face's `generate` does: repetition penalty
// (CTRL: a seen token's logit is divided by the penalty when positive, multiplied when negative), then
// temperature, top-k and top-p (nucleus: the smallest set of most likely tokens whose probability reaches p),
// then a draw. Temperature 0 is greedy (argmax, the lowest id on ties).
//
// The draw is a pure function of (seed, stream, step): a prompt's stream is its index in the input, so a sample
// does not depend on how prompts are batched or split across ranks.
#include <cstdint>
#include <string>
#include <vector>

namespace polyllama {

struct SamplingConfig {
  double temperature = 0.0;         // 0: greedy
  int64_t top_k = 0;                // 0: off
  double top_p = 1.0;               // 1: off
  double repetition_penalty = 1.0;  // 1: off
  uint64_t seed = 0;
  bool greedy() const { return temperature <= 0.0; }
  // Fails with the offending value (exit 1).
  void validate() const;
};

class Sampler {
 public:
  explicit Sampler(const SamplingConfig& cfg) : cfg_(cfg) { cfg_.validate(); }

  // Next token for logits (V) after `seen` (prompt and completion so far, for the repetition penalty); `stream`
  // and `step` select the random draw. The logits are not modified.
  int32_t next(const double* logits, int64_t V, const std::vector<int32_t>& seen, uint64_t stream, uint64_t step);

  // The distribution next() draws from, as (token, probability) sorted by probability (ties: lower id first),
  // zero-probability tokens left out. For tests and for callers that want the probabilities.
  std::vector<std::pair<int32_t, double>> distribution(const double* logits, int64_t V,
                                                       const std::vector<int32_t>& seen);

 private:
  // logits after the repetition penalty, in work_ (V)
  void penalized(const double* logits, int64_t V, const std::vector<int32_t>& seen);
  SamplingConfig cfg_;
  std::vector<double> work_;
  std::vector<int32_t> order_;
};

}  // namespace polyllama
