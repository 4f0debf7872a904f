#pragma once
// Shared by the benchmark targets (fuzz_ceval_mmlu, fuzz_agieval, fuzz_gaokao): load a task from a scratch copy of
// its release layout and score every question it yields against a response made of fuzz bytes, so the answer
// extraction (the benchmarks' own regular expressions and parsers, re-implemented) is fuzzed with the loader.
#include <string_view>
#include <vector>

#include "fuzz_support.hpp"
#include "polyllama/eval/task.hpp"

namespace polyllama::fuzz {

inline void load_and_score(const Task& task, const EvalOptions& o, std::string_view response) {
  task.num_fewshot(o);
  int64_t skipped = 0;
  std::vector<std::string> examples;
  const std::vector<Question> qs = task.load(o, &skipped, &examples);
  require(o.skip_invalid || skipped == 0, "nothing skipped without skip_invalid");
  for (const Question& q : qs) {
    Response r;
    r.text = std::string(response);
    r.logprobs.assign(q.labels.size(), -2.0);
    if (!q.labels.empty()) r.logprobs[response.size() % q.labels.size()] = -0.5;
    const Score s = task.score(q, r);
    require(s.earned >= 0 && s.earned <= q.points * (1 + 1e-9), "earned points within [0, points]");
  }
}

}  // namespace polyllama::fuzz
