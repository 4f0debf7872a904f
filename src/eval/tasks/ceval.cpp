// C-Eval (hkust-nlp/ceval; data: the ceval-exam release): 52 subjects of four-option questions in Chinese,
// DIR/ceval/{dev,val,test}/{subject}_{split}.csv with the header id,question,A,B,C,D,answer[,explanation] (test
// rows have no answer), and DIR/ceval/subject_mapping.json: subject -> [English name, Chinese name, category].
//
// The prompt is the answer-only k-shot prompt of C-Eval's evaluator for LLaMA-style (completion) models,
// code/evaluator_series/evaluators/llama.py (LLaMA_Evaluator.generate_few_shot_prompt and format_example with
// cot=False; the base class evaluator.py and chatglm.py/moss.py write the same strings):
//   "以下是中国关于{subject}考试的单项选择题，请选出其中的正确答案。\n\n"
//   then per example (the first k dev rows, dev_df.iloc[i] for i < k):
//   "{question}\nA. {A}\nB. {B}\nC. {C}\nD. {D}\n答案：{answer}\n\n"
//   then the question: "{question}\nA. {A}\nB. {B}\nC. {C}\nD. {D}\n答案："
// Nothing is stripped; cells print as pandas parsed them (multiple_choice.hpp, pandas_cells). {subject} is the
// subject's Chinese name from subject_mapping.json, as C-Eval's README and resources/tutorial.md show the prompt
// ("以下是中国关于{科目}考试..."; the tutorial: replace {subject} with the subject's name). eval_llama.py itself
// passes the file's subject key (eval_subject(subject_name=subject)), so the header reads e.g.
// "以下是中国关于computer_network考试..."; prompt_style "subject-key" reproduces that script exactly.
//
// Scoring. loglik (the default): LLaMA_Evaluator.eval_subject with cot=False takes the logits of the next token
// after the prompt at the first id of the tokenizer's encoding of "A", "B", "C", "D" and predicts the argmax:
// score_letters. generate: C-Eval's answer-only generation with answer extraction is ChatGLM_Evaluator's
// ("For ChatGLM, we use answer extraction in answer-only mode too"): greedy decoding (do_sample=False), the
// response stripped, then extract_cot_answer's rules (extract_answer below). Its chat call has no stop string;
// after a completion prompt a base model goes on writing the next example, so the completion stops at "\n\n",
// which ends every answered example in the prompt, and at 256 new tokens (eval_llama.py's generate_args
// max_gen_length; its eval_subject reads the key "max_gen_len", so its chain-of-thought runs fall back to 512).
#include <algorithm>
#include <fstream>
#include <map>

#include "multiple_choice.hpp"
#include "polyllama/core/error.hpp"
#include "tasks.hpp"

namespace polyllama {

namespace {

using json = nlohmann::json;

struct SubjectNames {
  std::string english, chinese, category;
};

// subject_mapping.json: {"computer_network": ["Computer Network", "计算机网络", "STEM"], ...}.
std::map<std::string, SubjectNames> read_mapping(const std::string& path) {
  std::ifstream in(path);
  if (!in)
    fail_input(path + ": no such file (C-Eval's subject_mapping.json: {subject: [English, Chinese, category]})");
  json j;
  try {
    j = json::parse(in);
  } catch (const json::exception& e) {  // parse_error, or out_of_range for a number beyond double (1e400)
    fail_input(path + ": not valid JSON (" + e.what() + ")");
  }
  if (!j.is_object()) fail_input(path + ": expected an object {subject: [English name, Chinese name, category]}");
  std::map<std::string, SubjectNames> out;
  for (const auto& [subject, v] : j.items()) {
    if (!v.is_array() || v.size() < 3 || !v[0].is_string() || !v[1].is_string() || !v[2].is_string())
      fail_input(path + ": subject \"" + subject + "\": expected [English name, Chinese name, category], found " +
                 v.dump());
    out[subject] = {v[0].get<std::string>(), v[1].get<std::string>(), v[2].get<std::string>()};
  }
  return out;
}

// ---- ChatGLM_Evaluator.extract_cot_answer (code/evaluator_series/evaluators/chatglm.py), on UTF-8 text ----

// The byte after the UTF-8 character that starts at i.
size_t next_char(const std::string& s, size_t i) {
  ++i;
  while (i < s.size() && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) ++i;
  return i;
}

// The code point of the UTF-8 character [a, b) (0xFFFD when it is not well formed).
char32_t code_point(const std::string& s, size_t a, size_t b) {
  const unsigned char c = static_cast<unsigned char>(s[a]);
  const size_t n = b - a;
  if (n == 1) return c < 0x80 ? c : 0xFFFD;
  char32_t cp = c & (n == 2 ? 0x1F : n == 3 ? 0x0F : 0x07);
  for (size_t i = a + 1; i < b; ++i) cp = (cp << 6) | (static_cast<unsigned char>(s[i]) & 0x3F);
  return cp;
}

// Python's str.isspace.
bool python_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

// Python's str.strip() (eval_subject: response = response.strip()).
std::string python_strip(const std::string& s) {
  size_t a = 0;
  while (a < s.size() && python_space(code_point(s, a, next_char(s, a)))) a = next_char(s, a);
  size_t b = s.size();
  while (b > a) {
    size_t start = b - 1;
    while (start > a && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) --start;
    if (!python_space(code_point(s, start, b))) break;
    b = start;
  }
  return s.substr(a, b - a);
}

bool is_letter(char c) { return c >= 'A' && c <= 'D'; }

// re.findall(r'所以答案是(.+?)。', text): the group of the last match ("" when none). '.' is any character but
// "\n"; a failed start moves on by one character, a match resumes after its "。".
std::string last_so_the_answer_is(const std::string& text) {
  static const std::string kLead = "所以答案是", kEnd = "。";
  std::string last;
  size_t from = 0, p;
  while ((p = text.find(kLead, from)) != std::string::npos) {
    const size_t start = p + kLead.size();
    const size_t end = start < text.size() && text[start] != '\n' ? text.find(kEnd, next_char(text, start))
                                                                  : std::string::npos;
    const size_t newline = text.find('\n', start);
    if (end == std::string::npos || (newline != std::string::npos && newline < end)) {
      from = next_char(text, p);
      continue;
    }
    last = text.substr(start, end - start);
    from = end + kEnd.size();
  }
  return last;
}

// re.search(before + "([ABCD])" + after, text): the letter of the leftmost match ("" when none).
std::string search_letter(const std::string& text, const std::string& before, const std::string& after) {
  for (size_t i = 0; i + before.size() < text.size(); ++i) {
    const size_t j = i + before.size();
    if (text.compare(i, before.size(), before) == 0 && is_letter(text[j]) &&
        text.compare(j + 1, after.size(), after) == 0)
      return std::string(1, text[j]);
  }
  return "";
}

// The answer letter of a generated response, or "" (extract_cot_answer's '-').
std::string extract_answer(const std::string& response, const json& options) {
  const std::string text = python_strip(response);
  // 1. the last "所以答案是X。", when X is exactly one option letter
  const std::string last = last_so_the_answer_is(text);
  if (last.size() == 1 && is_letter(last[0])) return last;
  // 2. the first of these patterns that matches, in this order
  static const std::pair<const char*, const char*> kPatterns[] = {
      {"", "是正确的"}, {"选项", "正确"}, {"答案为", ""}, {"答案是", ""},
      {"答案", ""},     {"选择", ""},     {"答案：", ""}, {"选择答案", ""}};
  for (const auto& [before, after] : kPatterns) {
    const std::string l = search_letter(text, before, after);
    if (!l.empty()) return l;
  }
  // 3. exactly one of the characters A, B, C, D in the whole response
  if (std::count_if(text.begin(), text.end(), is_letter) == 1)
    return std::string(1, *std::find_if(text.begin(), text.end(), is_letter));
  // 4. exactly one option's text (str(line[c]), as printed in the prompt) inside the response
  std::string found;
  int64_t matches = 0;
  for (size_t c = 0; c < options.size() && c < mc::letters().size(); ++c)
    if (text.find(options[c].get<std::string>()) != std::string::npos) {
      found = mc::letters()[c];
      ++matches;
    }
  return matches == 1 ? found : "";
}

class CEvalTask : public mc::MultipleChoiceTask {
 public:
  std::string name() const override { return "ceval"; }

  std::vector<Question> load(const EvalOptions& o, int64_t* skipped,
                             std::vector<std::string>* examples) const override {
    mc::check_split("ceval", o);
    if (!o.prompt_style.empty() && o.prompt_style != "subject-key")
      fail_input("ceval: --prompt-style " + o.prompt_style +
                 ": expected \"\" (the official prompt, the subject's Chinese name in its header) or subject-key "
                 "(the subject's file key there, as eval_llama.py passes it)");
    const std::string root = o.bench_dir + "/ceval";
    const std::string mapping_path = root + "/subject_mapping.json";
    const std::map<std::string, SubjectNames> mapping = read_mapping(mapping_path);
    std::vector<std::string> known;
    for (const auto& kv : mapping) known.push_back(kv.first);
    std::vector<std::string> names = o.subjects;
    if (!names.empty()) {
      const std::string unknown = mc::unknown_names(names, known);
      if (!unknown.empty())
        fail_input("ceval: --subjects " + unknown + ": not in " + mapping_path +
                   " (C-Eval's subjects are its keys, e.g. computer_network)");
      std::sort(names.begin(), names.end());
      names.erase(std::unique(names.begin(), names.end()), names.end());
    } else {  // every subject of the mapping; a file of the split that the mapping lacks is an error
      const std::string dir = root + "/" + o.split;
      for (const std::string& stem : mc::subjects_on_disk(dir, o.split))
        if (!mapping.count(stem))
          fail_input(dir + "/" + stem + "_" + o.split + ".csv: subject \"" + stem + "\" is not in " + mapping_path +
                     "; expected one of its subjects (--subjects leaves the file out)");
      names = known;
    }
    std::vector<mc::Subject> subjects;
    for (const std::string& n : names) {
      const SubjectNames& m = mapping.at(n);
      const std::string shown = o.prompt_style == "subject-key" ? n : m.chinese;
      subjects.push_back({n, m.category, "以下是中国关于" + shown + "考试的单项选择题，请选出其中的正确答案。\n\n",
                          root + "/" + o.split + "/" + n + "_" + o.split + ".csv", root + "/dev/" + n + "_dev.csv"});
    }
    const mc::Format f{"ceval", true, "\n答案：", "", {"\n\n"}, 256};
    return mc::load_questions(f, subjects, o, o.split != "test", skipped, examples);
  }

 protected:
  std::string extract(const Question& q, const std::string& completion) const override {
    return extract_answer(completion, q.extra.value("options", json::array()));
  }
};

}  // namespace

std::unique_ptr<Task> make_ceval_task() { return std::make_unique<CEvalTask>(); }

}  // namespace polyllama
