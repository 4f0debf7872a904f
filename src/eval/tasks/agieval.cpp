// AGIEval v1 (ruixiangcui/AGIEval; data: its data/v1 release): DIR/agieval/<task>.jsonl, one question a line
// ({"passage", "question", "options", "label", "answer", "other"}), and DIR/agieval/few_shot_prompts.csv. Every
// task file present is evaluated; the task's language and kind are those of src/dataset_loader.py's lists
// (english_qa_datasets, chinese_qa_datasets, english_cloze_datasets, chinese_cloze_datasets, and
// evaluation.py's multi_choice_datasets: several answers). Category: "English" or "Chinese", the two groups of
// those lists.
//
// Prompts, byte for byte (dataset_loader.py):
//   zero-shot (convert_zero_shot; the default), X the letter of the last option:
//     English choice  passage + "Q: " + question + " " + "Answer Choices: " + " ".join(options) + "\n"
//                     + "A: Among A through X, the answer is"
//     Chinese choice  passage + "问题：" + question + " " + "选项：" + " ".join(options) + "\n"
//                     + "答案：从A到X, 我们应选择"
//     English cloze   passage + "Q: " + question + "\n" + "A: The answer is"
//     Chinese cloze   passage + "问题：" + question + "\n" + "答案："
//   few-shot, answer only (setting "few-shot": combine_prompt with load_explanation=False, concat_prompt,
//   convert_few_shot), with run_prediction.py's end_of_example "<END>\n":
//     "Here are the answers for the problems in the exam.\n" (Chinese: "以下是考试中各个问题的答案。\n")
//     + per example i = 1..n: "Problem i.   " + passage + " " + question + "\n" + "Choose from the following
//       options:    " + " ".join(options) + "\n" + "The answer is therefore " + label + "\n" + "<END>\n"
//       (Chinese "问题 i.   " ... "从以下选项中选择:    " ... "答案是 " + label; cloze: no passage, no options,
//       the answer in place of the label)
//     + the question as example n+1 without its answer line.
//   The examples are the csv's "sample" rows of the task's column (sat-en's for sat-en-without-passage, whose
//   passages are then left out), as many as there are non-empty "explanation" cells beside them (zip).
//
// Scoring. A single-answer question's zero-shot prompt ends where the answer letter goes: by default the
// letters' next-token log-probabilities (score_letters; labels A.. for the options). Everything else generates
// greedily and scores as post_process.py and evaluation.py do (answer_extraction.hpp): single answer
// find_first_capital_letter (zero-shot) or "answer is .*?([A-G])" / "答案是.*?([A-G])" then the first capital
// (few-shot), equal to the label; several answers every A-F of the completion, as a set equal to the label's;
// cloze parse_math_answer, then is_equiv of math_equivalence.py. The gold is `label` when truthy, else `answer`
// (load_dataset_as_result_schema); an empty label with no answer is scored wrong, as there. --method loglik
// changes nothing for the questions that generate: their official prompts do not end at the answer letter.
//
// Not here: the chain-of-thought settings (zero-shot-CoT, few-shot-CoT), the second-stage prompt
// (generate_second_stage_input) and the chat-message form of the prompts (chat_mode), all of which serve
// OpenAI's chat models; the few-shot prompt is the completion form (concat_prompt), the one for a base model.
#include <algorithm>
#include <cctype>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>

#include "answer_extraction.hpp"
#include "csv.hpp"
#include "polyllama/core/error.hpp"
#include "tasks.hpp"

namespace polyllama {

namespace {

using json = nlohmann::json;

enum class Kind { single, multi, cloze };

struct TaskInfo {
  bool english = true;
  Kind kind = Kind::single;
};

// dataset_loader.py's lists, and evaluation.py's multi_choice_datasets (those scored as a set of letters).
std::optional<TaskInfo> task_info(const std::string& name) {
  static const std::set<std::string> english_qa = {"lsat-ar",  "lsat-lr",  "lsat-rc",  "logiqa-en",
                                                   "sat-math", "sat-en",   "aqua-rat", "sat-en-without-passage",
                                                   "gaokao-english"};
  static const std::set<std::string> chinese_qa = {"logiqa-zh",        "jec-qa-kd",      "jec-qa-ca",
                                                   "gaokao-chinese",   "gaokao-geography", "gaokao-history",
                                                   "gaokao-biology",   "gaokao-chemistry", "gaokao-physics",
                                                   "gaokao-mathqa"};
  static const std::set<std::string> multi = {"jec-qa-kd", "jec-qa-ca", "gaokao-physics"};
  if (english_qa.count(name)) return TaskInfo{true, Kind::single};
  if (chinese_qa.count(name)) return TaskInfo{false, multi.count(name) ? Kind::multi : Kind::single};
  if (name == "math") return TaskInfo{true, Kind::cloze};
  if (name == "gaokao-mathcloze") return TaskInfo{false, Kind::cloze};
  return std::nullopt;
}

constexpr int64_t kMaxFewShot = 5;  // few_shot_prompts.csv holds "sample 1" .. "sample 5"
// run_prediction.py builds few-shot prompts with max_tokens=2048: concat_prompt keeps the examples while the
// prompt is under 2048 tokens of tiktoken's cl100k_base. For the released few_shot_prompts.csv, answer only,
// that drops examples in two tasks (counted with cl100k_base; every other task keeps all of its examples).
const std::map<std::string, int64_t> kTokenBudgetShots = {{"lsat-rc", 2}, {"gaokao-chinese", 1}};
// Generation: the answer comes at once after these prompts; the completion stops at the end of its line
// (few-shot also at "<END>", run_prediction.py's stop, which follows that line in every example).
constexpr int64_t kMaxNewTokens = 64;

// ---- Python literals (ast.literal_eval of a few_shot_prompts.csv cell) ----

class PyLiteral {
 public:
  PyLiteral(const std::string& text, std::string where) : s_(text), where_(std::move(where)) {}

  json parse() {
    json v = value();
    skip_space();
    if (i_ < s_.size()) error("unexpected text after the value");
    return v;
  }

 private:
  [[noreturn]] void error(const std::string& what) const {
    fail_input(where_ + ": not a Python literal (" + what + " at byte " + std::to_string(i_) + ")");
  }
  void skip_space() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) ++i_;
  }
  bool quote_at(size_t i) const { return i < s_.size() && (s_[i] == '\'' || s_[i] == '"'); }

  json value() {
    skip_space();
    if (i_ >= s_.size()) error("a value expected");
    const char c = s_[i_];
    if (c == '{') return dict();
    if (c == '[' || c == '(') return sequence(c == '[' ? ']' : ')');
    if (quote_at(i_) || (std::string("rRuU").find(c) != std::string::npos && quote_at(i_ + 1))) return strings();
    for (const auto& [word, v] : {std::pair<std::string, json>{"None", nullptr}, {"True", true}, {"False", false}})
      if (s_.compare(i_, word.size(), word) == 0) {
        i_ += word.size();
        return v;
      }
    return number();
  }

  json dict() {
    json out = json::object();
    ++i_;
    for (;;) {
      skip_space();
      if (i_ < s_.size() && s_[i_] == '}') break;
      const json key = value();
      if (!key.is_string()) error("a string key expected");
      skip_space();
      if (i_ >= s_.size() || s_[i_] != ':') error("':' expected");
      ++i_;
      out[key.get<std::string>()] = value();
      skip_space();
      if (i_ < s_.size() && s_[i_] == ',') {
        ++i_;
        continue;
      }
      if (i_ >= s_.size() || s_[i_] != '}') error("',' or '}' expected");
      break;
    }
    ++i_;
    return out;
  }

  json sequence(char close) {
    json out = json::array();
    ++i_;
    for (;;) {
      skip_space();
      if (i_ < s_.size() && s_[i_] == close) break;
      out.push_back(value());
      skip_space();
      if (i_ < s_.size() && s_[i_] == ',') {
        ++i_;
        continue;
      }
      if (i_ >= s_.size() || s_[i_] != close) error(std::string("',' or '") + close + "' expected");
      break;
    }
    ++i_;
    return out;
  }

  // Adjacent string literals, concatenated as Python does.
  json strings() {
    std::string out;
    do {
      out += one_string();
      skip_space();
    } while (i_ < s_.size() && (quote_at(i_) || (std::string("rRuU").find(s_[i_]) != std::string::npos &&
                                                 quote_at(i_ + 1))));
    return out;
  }

  std::string one_string() {
    bool raw = false;
    if (!quote_at(i_)) {  // a prefix: r/R raw, u/U plain
      raw = s_[i_] == 'r' || s_[i_] == 'R';
      ++i_;
    }
    const char q = s_[i_];
    const bool triple = s_.compare(i_, 3, std::string(3, q)) == 0;
    i_ += triple ? 3 : 1;
    std::u32string out;  // escapes name code points; text is copied through as UTF-8 below
    std::string bytes;
    const auto flush = [&] {
      bytes += answers::to_utf8(out);
      out.clear();
    };
    for (;;) {
      if (i_ >= s_.size()) error("an unterminated string");
      const char c = s_[i_];
      if (c == q && (!triple || s_.compare(i_, 3, std::string(3, q)) == 0)) {
        i_ += triple ? 3 : 1;
        break;
      }
      if (c == '\n' && !triple) error("a newline inside a quoted string");
      if (c != '\\' || raw) {
        flush();
        bytes += c;
        ++i_;
        if (raw && c == '\\' && i_ < s_.size()) bytes += s_[i_++];  // r'\'' keeps both characters
        continue;
      }
      escape(out);
    }
    flush();
    return bytes;
  }

  // One backslash escape of a str literal into out (unknown escapes stay as written, as Python keeps them).
  void escape(std::u32string& out) {
    ++i_;
    if (i_ >= s_.size()) error("an unterminated string");
    const char e = s_[i_++];
    static const std::map<char, char32_t> simple = {{'\\', '\\'}, {'\'', '\''}, {'"', '"'},  {'a', 7},
                                                    {'b', 8},     {'f', 12},    {'n', '\n'}, {'r', '\r'},
                                                    {'t', '\t'},  {'v', 11}};
    if (e == '\n') return;  // a line continuation
    if (const auto it = simple.find(e); it != simple.end()) {
      out += it->second;
      return;
    }
    if (e >= '0' && e <= '7') {
      char32_t v = static_cast<char32_t>(e - '0');
      for (int k = 0; k < 2 && i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '7'; ++k)
        v = v * 8 + static_cast<char32_t>(s_[i_++] - '0');
      out += v;
      return;
    }
    const int width = e == 'x' ? 2 : e == 'u' ? 4 : e == 'U' ? 8 : 0;
    if (width == 0) {
      out += U'\\';
      out += static_cast<char32_t>(static_cast<unsigned char>(e));
      return;
    }
    if (i_ + static_cast<size_t>(width) > s_.size()) error("a truncated \\" + std::string(1, e) + " escape");
    char32_t v = 0;
    for (int k = 0; k < width; ++k) {
      const char h = s_[i_++];
      if (!std::isxdigit(static_cast<unsigned char>(h))) error("a bad \\" + std::string(1, e) + " escape");
      v = v * 16 + static_cast<char32_t>(std::isdigit(static_cast<unsigned char>(h)) ? h - '0'
                                                                                       : (h | 0x20) - 'a' + 10);
    }
    // A surrogate pair written as two \u escapes becomes its code point; a lone surrogate cannot be UTF-8.
    if (!out.empty() && out.back() >= 0xD800 && out.back() < 0xDC00 && v >= 0xDC00 && v < 0xE000) {
      out.back() = 0x10000 + ((out.back() - 0xD800) << 10) + (v - 0xDC00);
      return;
    }
    out += v;
    if (v >= 0xDC00 && v < 0xE000) out.back() = 0xFFFD;
  }

  json number() {
    const size_t start = i_;
    while (i_ < s_.size() && std::string("+-0123456789.eEjJ_xXabcdefABCDEF").find(s_[i_]) != std::string::npos)
      ++i_;
    const std::string t = s_.substr(start, i_ - start);
    if (t.empty()) error("a value expected");
    try {
      size_t used = 0;
      const double v = std::stod(t, &used);
      if (used != t.size()) error("a number expected");
      if (t.find_first_of(".eE") != std::string::npos) return json(v);
      // Python's integers have no bound; a 64-bit one holds every integer the release's files have.
      if (!(v >= -9223372036854775808.0 && v < 9223372036854775808.0)) error("an integer beyond 64 bits");
      return json(static_cast<int64_t>(v));
    } catch (const std::logic_error&) {
      error("a number expected");
    }
  }

  const std::string& s_;
  std::string where_;
  size_t i_ = 0;
};

// "{}".format(v) for the values an example cell holds: a str as it is, a list as Python's repr of it.
std::string py_str(const json& v);

std::string py_repr_str(const std::string& s) {
  const bool dq = s.find('\'') != std::string::npos && s.find('"') == std::string::npos;
  const char q = dq ? '"' : '\'';
  std::string out(1, q);
  for (const char c : s) {
    if (c == '\\' || c == q) out += std::string("\\") + c;
    else if (c == '\n') out += "\\n";
    else if (c == '\r') out += "\\r";
    else if (c == '\t') out += "\\t";
    else out += c;
  }
  return out + q;
}

std::string py_str(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_null()) return "None";
  if (v.is_boolean()) return v.get<bool>() ? "True" : "False";
  if (v.is_array()) {
    std::vector<std::string> items;
    for (const json& e : v) items.push_back(e.is_string() ? py_repr_str(e.get<std::string>()) : py_str(e));
    return "[" + answers::join(items, ", ") + "]";
  }
  return v.dump();
}

std::string join_options(const json& options) {  // " ".join(options)
  return answers::join(options.get<std::vector<std::string>>(), " ");
}

bool all_strings(const json& v) {
  return v.is_array() && std::all_of(v.begin(), v.end(), [](const json& e) { return e.is_string(); });
}

// combine_prompt's question_input: the example's (or the question's) text before its answer line.
std::string few_shot_input(const TaskInfo& t, int64_t number, const std::string& passage,
                           const std::string& question, const std::string& options) {
  const std::string n = std::to_string(number);
  if (t.kind == Kind::cloze) return (t.english ? "Problem " + n + ".   " : "问题 " + n + ".   ") + question + "\n";
  if (t.english)
    return "Problem " + n + ".   " + passage + " " + question + "\n" + "Choose from the following options:    " +
           options + "\n";
  return "问题 " + n + ".   " + passage + " " + question + "\n" + "从以下选项中选择:    " + options + "\n";
}

// The few-shot opening of a task's prompts (concat_prompt's output) and the number of examples in it.
struct FewShotPrefix {
  std::string text;
  int64_t shots = 0;
};

FewShotPrefix few_shot_prefix(const std::vector<csv::Row>& rows, const std::string& path, const std::string& task,
                              const TaskInfo& t, int64_t want) {
  const bool skip_passage = task == "sat-en-without-passage";
  const std::string column = skip_passage ? "sat-en" : task;
  if (rows.empty()) fail_input(path + ": empty (AGIEval's few-shot examples expected)");
  const std::vector<std::string>& header = rows[0].fields;
  const auto col_it = std::find(header.begin(), header.end(), column);
  if (col_it == header.end())
    fail_input(path + ": no column \"" + column + "\" (the few-shot examples of " + task + ")");
  const size_t col = static_cast<size_t>(col_it - header.begin());
  const auto cell = [&](size_t r) { return r < rows.size() && col < rows[r].fields.size() ? rows[r].fields[col] : ""; };
  // combine_prompt reads records 1, 3, 5, 7, 9 (samples) and 2, 4, 6, 8, 10 (explanations), header at 0, and
  // zips the non-empty cells of each.
  std::vector<std::pair<json, int64_t>> contexts;
  int64_t explanations = 0;
  for (size_t r = 1; r <= 2 * kMaxFewShot; ++r) {
    if (cell(r).empty()) continue;
    if (r % 2 == 0) {
      ++explanations;
      continue;
    }
    const std::string where = path + ":" + std::to_string(rows[r].line) + ": column " + column;
    contexts.emplace_back(PyLiteral(cell(r), where).parse(), rows[r].line);
  }
  int64_t shots = std::min({want, static_cast<int64_t>(contexts.size()), explanations});
  if (const auto it = kTokenBudgetShots.find(task); it != kTokenBudgetShots.end()) shots = std::min(shots, it->second);
  if (shots < 1) fail_input(path + ": column " + column + " holds no few-shot example");
  std::string en = "Here are the answers for the problems in the exam.\n", zh = "以下是考试中各个问题的答案。\n";
  for (int64_t i = 0; i < shots; ++i) {
    // Plain references, not a structured binding: the lambda below captures con, and
    // capturing a binding is C++20 (clang 14 refuses it; the fuzz build uses clang).
    const json& con = contexts[static_cast<size_t>(i)].first;
    const int64_t line = contexts[static_cast<size_t>(i)].second;
    const std::string where = path + ":" + std::to_string(line) + ": column " + column;
    const auto field = [&](const char* key) { return con.is_object() && con.contains(key) ? con[key] : json(); };
    if (!con.is_object() || !field("question").is_string())
      fail_input(where + ": a dict with a \"question\" string expected");
    const json passage = field("passage"), options = field("options");
    if (!passage.is_null() && !passage.is_string()) fail_input(where + ": \"passage\": a string or None expected");
    if (!options.is_null() && !all_strings(options)) fail_input(where + ": \"options\": a list of strings expected");
    const std::string p = passage.is_string() && !skip_passage ? passage.get<std::string>() : "";
    const std::string input = few_shot_input(t, i + 1, p, field("question").get<std::string>(),
                                             options.is_null() ? "" : join_options(options));
    const json answer = t.kind == Kind::cloze ? field("answer") : field("label");
    const std::string shown = answer.is_null() ? "" : py_str(answer);
    const std::string output = (t.english ? "The answer is therefore " : "答案是 ") + shown;
    (t.english ? en : zh) += input + output + "\n" + "<END>\n";
  }
  // concat_prompt returns the longer of its two strings (the other is still only its opening line).
  return {answers::py_len(en) > answers::py_len(zh) ? en : zh, shots};
}

// Python's truthiness of a label: not None, not "", not [].
bool truthy(const json& v) { return !(v.is_null() || (v.is_string() && v.get<std::string>().empty()) ||
                                      (v.is_array() && v.empty())); }

// A label's letters must name options: every ASCII letter in it is one of the option letters. Other characters
// are kept as they are (the release has "A B D" in gaokao-mathqa and ["A", "C", "D", "。"] in jec-qa-ca): AGIEval
// compares the label verbatim, so such a question is scored wrong whatever the answer, here as there.
void check_letters(const std::string& label, const std::string& letters, const std::string& where) {
  for (const char c : label)
    if (((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')) && letters.find(c) == std::string::npos)
      fail_input(where + ": label \"" + label + "\" is outside the options (" + letters.front() + "-" +
                 letters.back() + ")");
}

struct LoadContext {
  std::string task, path;
  TaskInfo info;
  const FewShotPrefix* few = nullptr;  // null: zero-shot
  std::string method;
};

// One JSONL line as a question (fails naming FILE:LINE).
Question make_question(const LoadContext& c, const std::string& line, int64_t line_no) {
  Question q;
  q.task = "agieval";
  q.subject = c.task;
  q.category = c.info.english ? "English" : "Chinese";
  q.split = "test";
  q.where = c.path + ":" + std::to_string(line_no);
  q.index = line_no - 1;
  json d;
  try {
    d = json::parse(line);
  } catch (const json::exception& e) {  // parse_error, or out_of_range for a number beyond double (1e400)
    fail_input(q.where + ": malformed JSON line (" + e.what() + ")");
  }
  if (!d.is_object()) fail_input(q.where + ": a JSON object {passage, question, options, label, answer} expected");
  const auto field = [&](const char* key) { return d.contains(key) ? d[key] : json(); };
  const json passage = field("passage"), question = field("question"), options = field("options");
  if (!passage.is_null() && !passage.is_string()) fail_input(q.where + ": passage: a string or null expected");
  if (!question.is_string()) fail_input(q.where + ": question: a string expected");
  const std::string p = passage.is_string() ? passage.get<std::string>() : "";
  const std::string text = question.get<std::string>();
  const bool english = c.info.english;
  std::string letters;
  if (c.info.kind != Kind::cloze) {
    if (!all_strings(options) || options.empty() || options.size() > 7)
      fail_input(q.where + ": options: a list of 1 to 7 strings expected");
    // convert_zero_shot names the last option's letter; a single option reads as A-E (English) or A-D.
    const size_t count = options.size() == 1 ? (english ? 5 : 4) : options.size();
    letters = std::string("ABCDEFG").substr(0, count);
    for (const char l : letters) q.labels.emplace_back(1, l);
  }
  // The gold: label if truthy else answer (load_dataset_as_result_schema).
  const json gold = truthy(field("label")) ? field("label") : field("answer");
  if (c.info.kind == Kind::cloze) {
    if (!gold.is_string()) fail_input(q.where + ": answer: the cloze answer (a string) expected");
    q.gold = {gold.get<std::string>()};
  } else if (gold.is_string()) {
    check_letters(gold.get<std::string>(), letters, q.where);
    q.gold = {gold.get<std::string>()};
  } else if (gold.is_array() && c.info.kind == Kind::multi) {
    for (const json& g : gold) {
      if (!g.is_string()) fail_input(q.where + ": label: a list of letters expected");
      check_letters(g.get<std::string>(), letters, q.where);
      q.gold.push_back(g.get<std::string>());
    }
  } else if (!gold.is_null()) {
    fail_input(q.where + ": label: " + std::string(c.info.kind == Kind::multi ? "a letter or a list of letters"
                                                                               : "one letter") +
               " expected, found " + gold.dump());
  }  // null: no correct option; AGIEval's evaluation scores the question wrong, and so does score()

  if (c.few) {
    q.prompt = c.few->text + few_shot_input(c.info, c.few->shots + 1, p, text,
                                            options.is_array() ? join_options(options) : "");
  } else if (c.info.kind == Kind::cloze) {
    q.prompt = english ? p + "Q: " + text + "\n" + "A: The answer is" : p + "问题：" + text + "\n" + "答案：";
  } else if (english) {
    q.prompt = p + "Q: " + text + " " + "Answer Choices: " + join_options(options) + "\n" +
               "A: Among A through " + letters.back() + ", the answer is";
  } else {
    q.prompt = p + "问题：" + text + " " + "选项：" + join_options(options) + "\n" + "答案：从A到" + letters.back() +
               ", 我们应选择";
  }
  const bool letter_scoring = c.info.kind == Kind::single && !c.few && c.method != "generate";
  q.scoring = letter_scoring ? Scoring::letters : Scoring::generate;
  if (!letter_scoring) {
    q.max_new_tokens = kMaxNewTokens;
    q.stop = c.few ? std::vector<std::string>{"<END>", "\n"} : std::vector<std::string>{"\n"};
  }
  q.extra = {{"kind", c.info.kind == Kind::single ? "single" : c.info.kind == Kind::multi ? "multi" : "cloze"},
             {"language", english ? "en" : "zh"},
             {"n_shot", c.few ? c.few->shots : 0}};
  return q;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail_input(path + ": cannot open the file");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class AgiEvalTask : public Task {
 public:
  std::string name() const override { return "agieval"; }

  int64_t num_fewshot(const EvalOptions& o) const override {
    if (o.num_fewshot < -1 || o.num_fewshot > kMaxFewShot)
      fail_input("agieval: --num-fewshot " + std::to_string(o.num_fewshot) +
                 ": expected 0 to 5 (few_shot_prompts.csv holds at most 5 examples per task; default 0)");
    return std::max<int64_t>(o.num_fewshot, 0);
  }

  std::vector<Question> load(const EvalOptions& o, int64_t* skipped,
                             std::vector<std::string>* skip_examples) const override {
    const int64_t shots = num_fewshot(o);
    if (!o.prompt_style.empty())
      fail_input("agieval: --prompt-style " + o.prompt_style + ": AGIEval has only its official prompts");
    const std::string dir = o.bench_dir + "/agieval";
    const std::vector<std::string> stems =
        answers::bench_stems("agieval", dir, ".jsonl", "", o, "AGIEval's data/v1 files, <task>.jsonl");
    std::vector<csv::Row> fs_rows;
    const std::string fs_path = dir + "/few_shot_prompts.csv";
    if (shots > 0) fs_rows = csv::read_file(fs_path);

    std::vector<Question> out;
    for (const std::string& stem : stems) {
      const std::string path = dir + "/" + stem + ".jsonl";
      const std::optional<TaskInfo> info = task_info(stem);
      if (!info)
        fail_input(path + ": \"" + stem + "\" is not an AGIEval v1 task (dataset_loader.py's lists: lsat-ar, "
                   "lsat-lr, lsat-rc, logiqa-en, logiqa-zh, sat-math, sat-en, sat-en-without-passage, aqua-rat, "
                   "gaokao-*, jec-qa-kd, jec-qa-ca, math)");
      FewShotPrefix few;
      if (shots > 0) few = few_shot_prefix(fs_rows, fs_path, stem, *info, shots);
      const LoadContext c{stem, path, *info, shots > 0 ? &few : nullptr, o.method};
      const std::string text = read_text(path);
      int64_t kept = 0, line_no = 0;
      for (size_t pos = 0; pos < text.size() && (o.limit == 0 || kept < o.limit);) {
        size_t end = text.find('\n', pos);
        if (end == std::string::npos) end = text.size();
        const std::string line = text.substr(pos, end - pos);
        pos = end + 1;
        ++line_no;
        if (answers::add_or_skip(o, out, skipped, skip_examples, [&] { return make_question(c, line, line_no); }))
          ++kept;
      }
    }
    return out;
  }

  Score score(const Question& q, const Response& r) const override {
    if (q.scoring == Scoring::letters) return score_letters(q, r);
    const std::string kind = q.extra.value("kind", "single");
    const bool few = q.extra.value("n_shot", 0) > 0;
    Score s;
    if (kind == "single") {  // post_process: zero-shot or few-shot single answer; evaluation: prediction == label
      std::optional<std::string> letter;
      if (few) letter = answers::agieval_few_shot_letter(r.text, q.extra.value("language", "en") == "en");
      s.pred = letter ? *letter : answers::agieval_first_capital(r.text);
      s.correct = q.gold.size() == 1 && q.gold[0] == s.pred;
    } else if (kind == "multi") {  // parse_qa_multiple_answer; convert_to_set(prediction) == convert_to_set(label)
      const std::vector<std::string> found = answers::agieval_all_letters(r.text);
      const std::set<std::string> pred(found.begin(), found.end()), gold(q.gold.begin(), q.gold.end());
      s.pred = answers::join(std::vector<std::string>(pred.begin(), pred.end()), ",");
      s.correct = !q.gold.empty() && pred == gold;  // a missing label is the empty dict there: never equal
    } else {  // parse_math_answer, then is_equiv(prediction, label)
      const std::optional<std::string> answer = answers::agieval_math_answer(r.text, few);
      s.pred = answer.value_or("");
      s.correct = !q.gold.empty() && answers::math_is_equiv(answer, q.gold[0]);
    }
    s.earned = s.correct ? q.points : 0.0;
    return s;
  }
};

}  // namespace

std::unique_ptr<Task> make_agieval_task() { return std::make_unique<AgiEvalTask>(); }

}  // namespace polyllama
