// MMLU (hendrycks/test; data: its data.tar): 57 subjects of four-option questions in English,
// DIR/mmlu/{dev,val,test}/{subject}_{split}.csv without a header row: question,A,B,C,D,answer (every split has
// answers). The subjects are the files of the split's directory (evaluate.py main lists data/test/*_test.csv,
// sorted); each must be one of the 57 that categories.py assigns a category.
//
// The prompt is evaluate.py's (gen_prompt, format_example, format_subject; evaluate_flan.py writes the same):
//   "The following are multiple choice questions (with answers) about {format_subject(subject)}.\n\n"
//   where format_subject puts a space before every "_"-separated word: "abstract_algebra" -> " abstract algebra",
//   so "about  abstract algebra." has two spaces;
//   then per example (the first k dev rows: pd.read_csv(dev)[:ntrain]):
//   "{question}\nA. {A}\nB. {B}\nC. {C}\nD. {D}\nAnswer: {answer}\n\n"
//   then the question: "{question}\nA. {A}\nB. {B}\nC. {C}\nD. {D}\nAnswer:"
// Cells print as pandas parsed them (multiple_choice.hpp, pandas_cells). evaluate.py drops examples while the
// prompt exceeds 2048 GPT-3 tokens (crop); polyllama keeps all k and leaves context length to the engine.
//
// Scoring. loglik (the default): evaluate.py reads the log-probability of " A" .. " D" as the next token and
// predicts the argmax (evaluate_flan.py: the first id of "A" .. "D"); for LLaMA's tokenizer the first id of "A"
// is the piece "▁A", so both are score_letters. generate: MMLU's code has no generation path (it asks the API for
// max_tokens=1 and reads log-probabilities), so the rule is polyllama's own, stated here: greedy decoding, the
// completion ends at "\n\n" (the end of every answered example in the prompt) or after 32 tokens (room for
// "The answer is (B)"-style answers; the answer is the first token in the official format), and the answer is
// the first of A, B, C, D that stands alone as a word (no ASCII letter, digit or "_" right before or after it),
// so " B", "(B)", "B." and "Answer: B" all give B while the "A" of "Answer" does not count.
#include <algorithm>
#include <map>

#include "multiple_choice.hpp"
#include "polyllama/core/error.hpp"
#include "tasks.hpp"

namespace polyllama {

namespace {

// hendrycks/test categories.py: subcategories (subject -> its one subcategory) ...
const std::map<std::string, std::string>& subcategories() {
  static const std::map<std::string, std::string> kSub = {
      {"abstract_algebra", "math"},
      {"anatomy", "health"},
      {"astronomy", "physics"},
      {"business_ethics", "business"},
      {"clinical_knowledge", "health"},
      {"college_biology", "biology"},
      {"college_chemistry", "chemistry"},
      {"college_computer_science", "computer science"},
      {"college_mathematics", "math"},
      {"college_medicine", "health"},
      {"college_physics", "physics"},
      {"computer_security", "computer science"},
      {"conceptual_physics", "physics"},
      {"econometrics", "economics"},
      {"electrical_engineering", "engineering"},
      {"elementary_mathematics", "math"},
      {"formal_logic", "philosophy"},
      {"global_facts", "other"},
      {"high_school_biology", "biology"},
      {"high_school_chemistry", "chemistry"},
      {"high_school_computer_science", "computer science"},
      {"high_school_european_history", "history"},
      {"high_school_geography", "geography"},
      {"high_school_government_and_politics", "politics"},
      {"high_school_macroeconomics", "economics"},
      {"high_school_mathematics", "math"},
      {"high_school_microeconomics", "economics"},
      {"high_school_physics", "physics"},
      {"high_school_psychology", "psychology"},
      {"high_school_statistics", "math"},
      {"high_school_us_history", "history"},
      {"high_school_world_history", "history"},
      {"human_aging", "health"},
      {"human_sexuality", "culture"},
      {"international_law", "law"},
      {"jurisprudence", "law"},
      {"logical_fallacies", "philosophy"},
      {"machine_learning", "computer science"},
      {"management", "business"},
      {"marketing", "business"},
      {"medical_genetics", "health"},
      {"miscellaneous", "other"},
      {"moral_disputes", "philosophy"},
      {"moral_scenarios", "philosophy"},
      {"nutrition", "health"},
      {"philosophy", "philosophy"},
      {"prehistory", "history"},
      {"professional_accounting", "other"},
      {"professional_law", "law"},
      {"professional_medicine", "health"},
      {"professional_psychology", "psychology"},
      {"public_relations", "politics"},
      {"security_studies", "politics"},
      {"sociology", "culture"},
      {"us_foreign_policy", "politics"},
      {"virology", "health"},
      {"world_religions", "philosophy"},
  };
  return kSub;
}

// ... and categories (category -> its subcategories). categories.py names the fourth "other (business, health,
// misc.)"; polyllama calls it "other", as lm-evaluation-harness's mmlu_other group does.
const std::string& category_of_subcategory(const std::string& sub) {
  static const std::map<std::string, std::string> kCat = {
      {"physics", "STEM"},          {"chemistry", "STEM"},         {"biology", "STEM"},
      {"computer science", "STEM"}, {"math", "STEM"},              {"engineering", "STEM"},
      {"history", "humanities"},    {"philosophy", "humanities"},  {"law", "humanities"},
      {"politics", "social sciences"}, {"culture", "social sciences"}, {"economics", "social sciences"},
      {"geography", "social sciences"}, {"psychology", "social sciences"},
      {"other", "other"},           {"business", "other"},         {"health", "other"},
  };
  return kCat.at(sub);
}

// evaluate.py format_subject: " " before each of subject.split("_").
std::string format_subject(const std::string& subject) {
  std::string out;
  size_t start = 0;
  for (;;) {
    const size_t end = subject.find('_', start);
    out.push_back(' ');
    out.append(subject, start, end == std::string::npos ? std::string::npos : end - start);
    if (end == std::string::npos) return out;
    start = end + 1;
  }
}

bool is_word_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

// The first of A-D standing alone as a word in a completion ("" when none).
std::string first_letter(const std::string& text) {
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] < 'A' || text[i] > 'D') continue;
    const bool alone_before = i == 0 || !is_word_char(text[i - 1]);
    const bool alone_after = i + 1 == text.size() || !is_word_char(text[i + 1]);
    if (alone_before && alone_after) return std::string(1, text[i]);
  }
  return "";
}

class MmluTask : public mc::MultipleChoiceTask {
 public:
  std::string name() const override { return "mmlu"; }

  std::vector<Question> load(const EvalOptions& o, int64_t* skipped,
                             std::vector<std::string>* examples) const override {
    mc::check_split("mmlu", o);
    if (!o.prompt_style.empty())
      fail_input("mmlu: --prompt-style " + o.prompt_style + ": MMLU has one prompt, evaluate.py's (leave it empty)");
    const std::string root = o.bench_dir + "/mmlu";
    const std::string dir = root + "/" + o.split;
    std::vector<std::string> known;
    for (const auto& kv : subcategories()) known.push_back(kv.first);
    std::vector<std::string> names = o.subjects;
    if (!names.empty()) {
      const std::string unknown = mc::unknown_names(names, known);
      if (!unknown.empty())
        fail_input("mmlu: --subjects " + unknown + ": not one of MMLU's 57 subjects (e.g. abstract_algebra)");
      std::sort(names.begin(), names.end());
      names.erase(std::unique(names.begin(), names.end()), names.end());
    } else {
      names = mc::subjects_on_disk(dir, o.split);
      if (names.empty()) fail_input(dir + ": no {subject}_" + o.split + ".csv files (MMLU's data/" + o.split + ")");
      for (const std::string& n : names)
        if (!subcategories().count(n))
          fail_input(dir + "/" + n + "_" + o.split + ".csv: subject \"" + n +
                     "\" is not one of MMLU's 57 (hendrycks/test categories.py); --subjects leaves the file out");
    }
    std::vector<mc::Subject> subjects;
    for (const std::string& n : names)
      subjects.push_back({n, category_of_subcategory(subcategories().at(n)),
                          "The following are multiple choice questions (with answers) about " + format_subject(n) +
                              ".\n\n",
                          dir + "/" + n + "_" + o.split + ".csv", root + "/dev/" + n + "_dev.csv"});
    const mc::Format f{"mmlu", false, "\nAnswer:", " ", {"\n\n"}, 32};
    std::vector<Question> qs = mc::load_questions(f, subjects, o, true, skipped, examples);
    for (Question& q : qs) q.extra["subcategory"] = subcategories().at(q.subject);
    return qs;
  }

 protected:
  std::string extract(const Question&, const std::string& completion) const override {
    return first_letter(completion);
  }
};

}  // namespace

std::unique_ptr<Task> make_mmlu_task() { return std::make_unique<MmluTask>(); }

}  // namespace polyllama
