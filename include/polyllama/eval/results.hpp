#pragma once
// What `polyllama eval` writes: OUT/results.json in lm-evaluation-harness's layout (`results`, `groups`,
// `group_subtasks`, `configs`, `versions`, `n-shot`, `config`; `acc,none` and `acc_stderr,none` per subject,
// category and task, with the question-weighted mean as `acc,none` and the mean over subjects as
// `acc_subject_mean,none`; `score,none` = points earned / points possible where questions carry points, as
// GAOKAO-Bench scores), OUT/samples_<task>.jsonl (one line per question: its exact prompt, the options'
// log-probabilities or the completion, prediction, gold, correct), OUT/results.md (a table per task), and for a
// C-Eval test split OUT/ceval_submission.json ({subject: {id: "A"}}, the layout C-Eval's site takes). The
// responses task (eval/responses.hpp) adds its entries to the same results.json and results.md, and writes
// OUT/responses.jsonl.
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "polyllama/eval/perplexity.hpp"
#include "polyllama/eval/task.hpp"

namespace polyllama {

struct ResponsesRun;  // eval/responses.hpp

struct TaskRun {
  std::string task;
  int version = 1;
  int64_t num_fewshot = 0;
  std::string split;
  std::vector<Question> questions;
  std::vector<Response> responses;  // in question order
  std::vector<Score> scores;        // in question order
  int64_t skipped = 0;              // invalid rows left out (--skip-invalid)
  std::vector<std::string> skip_examples;
};

// Mean and standard error of the mean (sample standard deviation / sqrt(n), as lm-evaluation-harness's
// mean_stderr) of 0/1 or fractional values.
struct MeanStderr {
  double mean = 0, sem = 0;  // sem: the standard error of the mean
  int64_t n = 0;
};
MeanStderr mean_stderr(const std::vector<double>& x);

// The `results.json` object (also what --json prints a summary of). config: how the run was made; responses: the
// responses task when it ran.
nlohmann::json results_json(const std::vector<TaskRun>& runs, const std::vector<PplResult>& ppl,
                            const nlohmann::json& config, const ResponsesRun* responses = nullptr);
// Writes every file named above into out_dir (created), each atomically.
void write_results(const std::string& out_dir, const std::vector<TaskRun>& runs, const std::vector<PplResult>& ppl,
                   const nlohmann::json& config, const ResponsesRun* responses = nullptr);
// `eval --judge-only`: writes OUT/responses.jsonl, and replaces the responses task's entries of OUT/results.json
// and its section of OUT/results.md, keeping what other tasks of the earlier run wrote there (config goes to
// results.json's "config" as "judge_only"); with no results.json in out_dir, writes a fresh pair as write_results.
void update_responses_results(const std::string& out_dir, const ResponsesRun& responses, const nlohmann::json& config);

}  // namespace polyllama
