#pragma once
// A benchmark task is data plus three small functions (STYLE.md practice 15): how to read its questions (the
// benchmark's own release files), how to render each prompt (byte for byte what its official evaluation code
// builds), and how to score a response. The model side (eval/engine.hpp) answers two kinds of request only: the
// log-probabilities of option letters as the next token after a prompt, and a greedy generation until stop
// strings. A task never sees the model; a new benchmark is one new file in src/eval/tasks/ and its test.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace polyllama {

// What `polyllama eval` passes to every task.
struct EvalOptions {
  std::string bench_dir;              // holds ceval/, mmlu/, agieval/, gaokao/ as the benchmarks release them
  std::string split = "val";          // ceval, mmlu: val (scored) or test (predictions only; ceval's submission)
  int64_t num_fewshot = -1;           // -1: the task's default (ceval, mmlu 5 from dev; agieval, gaokao 0)
  std::string method;                 // "loglik" or "generate"; "": each question's default (see Scoring)
  std::string prompt_style;           // "": the benchmark's official prompt; else a named variant of the task
  bool skip_invalid = false;          // count and report malformed rows instead of failing on the first
  std::vector<std::string> subjects;  // only these subjects (or AGIEval / GAOKAO file names); empty: all
  int64_t limit = 0;                  // the first N questions of each subject (0: all)
};

// How a question is answered.
enum class Scoring {
  letters,   // the log-probability of each option letter as the next token after the prompt (single answer)
  generate,  // greedy generation until a stop string, then the benchmark's own answer extraction
};

struct Question {
  std::string task;      // "ceval", "mmlu", "agieval", "gaokao"
  std::string subject;   // ceval/mmlu subject; AGIEval task (file stem); GAOKAO file keyword
  std::string category;  // the benchmark's grouping of the subject (C-Eval's 4, MMLU's 4, AGIEval's zh/en, ...)
  std::string split;     // "val", "test", "dev" ...
  std::string where;     // FILE:LINE (or FILE: item N) for messages
  int64_t index = 0;     // the row or item in its file (0-based, header excluded)
  std::string id;        // the benchmark's own id when it has one (C-Eval's, for the test submission)
  std::string prompt;    // exactly what the model reads after BOS
  Scoring scoring = Scoring::letters;
  std::vector<std::string> labels;  // letters: the option letters ("A", "B", ...), in option order
  std::vector<std::string> gold;    // gold answer(s): letters, or the cloze answer; empty when unknown (test)
  std::vector<std::string> stop;    // generate: stop strings (the completion ends before the first)
  int64_t max_new_tokens = 0;       // generate
  double points = 1;                // what the question is worth (GAOKAO's per-question score; 1 elsewhere)
  nlohmann::json extra = nlohmann::json::object();  // task-specific data for its scorer and its samples file
};

struct Response {
  std::vector<double> logprobs;  // letters: per label, log-softmax over the whole vocabulary
  std::string text;              // generate: the completion (stop string excluded)
};

struct Score {
  std::string pred;     // the answer taken from the response ("" when none could be extracted)
  double earned = 0;    // points earned, 0 .. points
  bool correct = false;  // earned == points (accuracy counts these); without gold, false
};

class Task {
 public:
  virtual ~Task() = default;
  virtual std::string name() const = 0;
  virtual int version() const { return 1; }  // results.json "versions": bumped when prompts or scoring change
  // Every question of the split with its prompt. Fails (exit 1) naming FILE:LINE and what was expected on a
  // missing file, a malformed row, an answer outside the options or a subject missing from a mapping; with
  // skip_invalid such rows are counted in *skipped (with the first reasons in *skip_examples) and left out.
  virtual std::vector<Question> load(const EvalOptions& o, int64_t* skipped,
                                     std::vector<std::string>* skip_examples) const = 0;
  virtual Score score(const Question& q, const Response& r) const = 0;
  // The n-shot count a question was rendered with (for results.json "n-shot").
  virtual int64_t num_fewshot(const EvalOptions& o) const = 0;
};

// The tasks `--tasks` names (ceval, mmlu, agieval, gaokao); fails (exit 1) listing them for anything else.
std::unique_ptr<Task> make_task(const std::string& name);
std::vector<std::string> task_names();

// The scorer of single-answer multiple choice by letters: the label with the highest log-probability (ties to
// the earlier option), correct when it is the one gold label.
Score score_letters(const Question& q, const Response& r);

}  // namespace polyllama
