#pragma once
// What the C-Eval and MMLU tasks share: both release four-option questions as CSV files per subject and split,
// both build a k-shot prompt from the first k rows of the subject's dev file, and both read their CSV with
// pandas.read_csv and print cells through Python string formatting. Private to the eval area's tasks.
#include <cstdint>
#include <string>
#include <vector>

#include "csv.hpp"
#include "polyllama/eval/task.hpp"

namespace polyllama::mc {

// The option letters of both benchmarks, in option order (ceval eval_llama.py and hendrycks evaluate.py:
// choices = ["A", "B", "C", "D"]).
const std::vector<std::string>& letters();

// Every cell of a table as the official code prints it. Both read their files with pandas.read_csv and default
// settings, whose type inference runs per column over the whole file; an f-string or str.format then prints the
// parsed value, not the text in the file:
//   - a cell equal to one of pandas' default NA strings ("", "NA", "N/A", "None", "null", "nan", ...; the set of
//     pandas >= 2.0, which added "None") is NaN and prints "nan";
//   - a column whose every cell is an integer literal (ASCII spaces around it allowed, int64 range) is int64 and
//     prints the number ("007" -> "7", "+4" -> "4");
//   - a column of numbers and NAs, with a decimal point or exponent in some cell or an NA in any, is float64 and
//     prints Python's repr of the double ("3" -> "3.0", "1.50" -> "1.5", "1e-5" -> "1e-05", "Infinity" -> "inf";
//     integers with NAs only are cast from int64, so "-0" prints "0.0" there and "-0.0" beside a "2.5");
//   - a column whose cells are all true/false in any letter case (or NA) prints "True"/"False";
//   - any other column prints its text as it is (csv's quoting undone), NA cells "nan".
// Numbers are read correctly rounded (strtod), as pandas 3 does; pandas 2 keeps only the first 17 digits, so a
// cell with more digits than that may print differently there. An integer beyond int64 makes its column text here
// (pandas tries uint64 first). Checked against pandas 2.0.3 and 3.1.1 on random files (tests/reference/
// ceval_mmlu_prompts.py --pandas reads through pandas itself).
// rows[i] is one row's fields; every row has ncols fields.
std::vector<std::vector<std::string>> pandas_cells(const std::vector<const std::vector<std::string>*>& rows,
                                                   int64_t ncols);
// Python's repr(float) (and numpy's str of a float64): the shortest digits that read back to v, positional for
// decimal exponents -4..15 with at least one digit after the point, else d.ddde+XX.
std::string python_float_repr(double v);

// A malformed row: fails at once (exit 1), or with skip_invalid is counted and its reason kept (the first 20).
class Invalid {
 public:
  Invalid(const EvalOptions& o, int64_t* skipped, std::vector<std::string>* examples)
      : skip_(o.skip_invalid), skipped_(skipped), examples_(examples) {}
  void operator()(const std::string& why) const;

 private:
  bool skip_;
  int64_t* skipped_;
  std::vector<std::string>* examples_;
};

// How a benchmark lays out its files and writes its questions.
struct Format {
  std::string task;           // "ceval", "mmlu"
  bool header_row = false;    // C-Eval's files start with id,question,A,B,C,D,answer[,explanation]; MMLU's do not
  std::string answer_cue;     // after the options: C-Eval "\n答案：", MMLU "\nAnswer:"
  std::string answer_lead;    // between the cue and an example's answer letter: C-Eval "", MMLU " "
  std::vector<std::string> stop;  // --method generate: stop strings and token budget
  int64_t max_new_tokens = 0;
};

// One subject: its names, the opening of its prompts, and its files.
struct Subject {
  std::string name;      // the file stem: "computer_network"
  std::string category;  // the benchmark's grouping of it
  std::string header;    // the prompt's opening line(s), which name the subject
  std::string split_path, dev_path;  // dev_path is read only when num_fewshot > 0
};

// num_fewshot as the tasks take it: -1 is 5 (both benchmarks' default ntrain); below -1 fails.
int64_t fewshot_count(const EvalOptions& o);
// The split to score: "val" or "test" (fails naming the task for anything else).
void check_split(const std::string& task, const EvalOptions& o);
// The scoring of every question: letters for "" and "loglik", generation for "generate"; fails otherwise.
Scoring scoring_of(const std::string& task, const EvalOptions& o);

// Every question of the subjects, in subject order then file order: the subject's header, the first k valid dev
// rows as answered examples, then the row's question. with_gold: the split's rows carry an answer (A-D). Each
// question's extra holds "options" (the four option texts as printed), for generation scorers.
std::vector<Question> load_questions(const Format& f, const std::vector<Subject>& subjects, const EvalOptions& o,
                                     bool with_gold, int64_t* skipped, std::vector<std::string>* examples);

// The task both benchmarks are: single-answer questions scored by letters (score_letters) or, with --method
// generate, by the letter the benchmark's rule extracts from the completion ("" when none; correct when it is the
// one gold letter).
class MultipleChoiceTask : public Task {
 public:
  Score score(const Question& q, const Response& r) const override;
  int64_t num_fewshot(const EvalOptions& o) const override { return fewshot_count(o); }

 protected:
  virtual std::string extract(const Question& q, const std::string& completion) const = 0;
};

// The subjects a filter names that `known` lacks, comma-separated ("" when none).
std::string unknown_names(const std::vector<std::string>& filter, const std::vector<std::string>& known);
// The stems of DIR's files named STEM_SPLIT.csv, sorted; fails naming DIR when it is not a directory.
std::vector<std::string> subjects_on_disk(const std::string& dir, const std::string& split);

}  // namespace polyllama::mc
