#include "polyllama/eval/task.hpp"

#include "polyllama/core/error.hpp"
#include "tasks/tasks.hpp"

namespace polyllama {

std::vector<std::string> task_names() { return {"ceval", "mmlu", "agieval", "gaokao"}; }

std::unique_ptr<Task> make_task(const std::string& name) {
  if (name == "ceval") return make_ceval_task();
  if (name == "mmlu") return make_mmlu_task();
  if (name == "agieval") return make_agieval_task();
  if (name == "gaokao") return make_gaokao_task();
  fail_input("--tasks " + name + ": unknown task (known: ceval, mmlu, agieval, gaokao, ppl)");
}

Score score_letters(const Question& q, const Response& r) {
  PL_CHECK(r.logprobs.size() == q.labels.size() && !q.labels.empty(),
           q.where + ": " + std::to_string(r.logprobs.size()) + " log-probabilities for " +
               std::to_string(q.labels.size()) + " options");
  size_t best = 0;
  for (size_t i = 1; i < r.logprobs.size(); ++i)
    if (r.logprobs[i] > r.logprobs[best]) best = i;  // strictly greater: a tie goes to the earlier option
  Score s;
  s.pred = q.labels[best];
  s.correct = q.gold.size() == 1 && q.gold[0] == s.pred;
  s.earned = s.correct ? q.points : 0.0;
  return s;
}

}  // namespace polyllama
