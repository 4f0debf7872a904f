// GAOKAO-Bench, objective questions (OpenLMLab/GAOKAO-Bench; data: Data/Objective_Questions): DIR/gaokao/
// <keyword>.json ({"keywords", "example": [{year, category, question, answer: [..], analysis, index, score}]};
// later releases name the answer "standard_answer") and DIR/gaokao/Obj_Prompt.json ({"examples": [{type,
// keyword, prefix_prompt}]}), which gives each file its zero-shot prompt and question type. Every <keyword>.json
// present is evaluated; its keyword must have an entry in Obj_Prompt.json. Zero-shot only, as the benchmark.
//
// Prompt (Bench/bench_function.py choice_test: question = data[i]['question'].strip() + '\n'; the completion
// models of the first release's models/openai.py and models/moss.py send prompt + question):
//   prefix_prompt + question.strip() + "\n"
// The prefixes ask for the reasoning in 【解析】 ... <eoe> and the answer in 【答案】 ... <eoa>, so every question
// generates: greedy, stopping at "<eoa>" (for a multi_question_choice item with n sub-answers, after the n-th
// "<eoa>": its prompt asks for one "【答案】 X <eoa>" per sub-question, and score() cuts the completion there), at
// most 1024 new tokens (max_tokens of the first release's completion API call, models/openai.py).
//
// Scoring (Bench/OBJ_score_evaluation.py, obj_score_eval): model_answer = extract_choice_answer(completion, type,
// len(answer)) (answer_extraction.hpp); a model_answer of another length than the answer becomes "Z"s
// (check_length_equal); then per sub-answer j, `score` points when model_answer[j] == answer[j] (count_score).
// A question is worth len(answer) * score points. The subject Physics scores instead 6 points for an exact
// answer and 3 for one whose letters are all in the answer (partial credit for multi_choice), 0 otherwise. The
// figure is points earned / points possible; categories are the scorer's subjects (score_dict: English, Math,
// Chinese, Physics, Chemistry, Biology, History, Geography, Politics).
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "answer_extraction.hpp"
#include "polyllama/core/error.hpp"
#include "tasks.hpp"

namespace polyllama {

namespace {

using json = nlohmann::json;
using answers::GaokaoType;

constexpr int64_t kMaxNewTokens = 1024;
// OBJ_score_evaluation.py's Physics branch adds a fixed 6 for an exact answer and 3 for a partial one. Every Physics
// item of the release is worth 6, so scoring the item's own `score` and half of it is the same there, and keeps the
// points earned within the points possible when a file gives another score (fuzz_gaokao found 6 of 5 earned).
constexpr double kPhysicsFull = 6, kPhysicsPartial = 3;

// OBJ_score_evaluation.py's score_dict: the subject of each objective file.
std::string subject_of(const std::string& keyword) {
  static const std::map<std::string, std::string> subjects = {
      {"2010-2013_English_MCQs", "English"},
      {"2010-2022_English_Fill_in_Blanks", "English"},
      {"2012-2022_English_Cloze_Test", "English"},
      {"2010-2022_English_Reading_Comp", "English"},
      {"2010-2022_Math_I_MCQs", "Math"},
      {"2010-2022_Math_II_MCQs", "Math"},
      {"2010-2022_Chinese_Modern_Lit", "Chinese"},
      {"2010-2022_Chinese_Lang_and_Usage_MCQs", "Chinese"},
      {"2010-2022_Physics_MCQs", "Physics"},
      {"2010-2022_Chemistry_MCQs", "Chemistry"},
      {"2010-2022_Biology_MCQs", "Biology"},
      {"2010-2022_History_MCQs", "History"},
      {"2010-2022_Geography_MCQs", "Geography"},
      {"2010-2022_Political_Science_MCQs", "Politics"},
  };
  if (const auto it = subjects.find(keyword); it != subjects.end()) return it->second;
  // A file the scorer does not list: the word after the years ("2010-2022_Biology_MCQs" -> "Biology").
  const size_t a = keyword.find('_');
  if (a == std::string::npos) return keyword;
  return keyword.substr(a + 1, keyword.find('_', a + 1) - a - 1);
}

// The letters extract_choice_answer can return for a type (its regular expressions' classes).
std::string alphabet(GaokaoType t) {
  switch (t) {
    case GaokaoType::multi_question_choice: return "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    case GaokaoType::five_out_of_seven: return "ABCDEFG";
    default: return "ABCD";
  }
}

struct FilePrompt {
  std::string type_name, prefix;
  GaokaoType type = GaokaoType::single_choice;
};

json read_json(const std::string& path, const std::string& what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail_input(path + ": cannot open the file (" + what + ")");
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  try {
    return json::parse(text);
  } catch (const json::parse_error& e) {
    const size_t upto = std::min<size_t>(e.byte > 0 ? e.byte - 1 : 0, text.size());
    const auto line = 1 + std::count(text.begin(), text.begin() + static_cast<std::ptrdiff_t>(upto), '\n');
    fail_input(path + ":" + std::to_string(line) + ": malformed JSON (" + e.what() + ")");
  } catch (const json::exception& e) {  // out_of_range: a number beyond double (1e400); no byte offset there
    fail_input(path + ": malformed JSON (" + e.what() + ")");
  }
}

// Obj_Prompt.json: keyword -> its type and prefix; fails naming the item for an unknown type.
std::map<std::string, FilePrompt> read_prompts(const std::string& path) {
  const json j = read_json(path, "GAOKAO-Bench's Obj_Prompt.json");
  if (!j.is_object() || !j.contains("examples") || !j["examples"].is_array())
    fail_input(path + ": {\"examples\": [{\"type\", \"keyword\", \"prefix_prompt\"}, ...]} expected");
  std::map<std::string, FilePrompt> out;
  for (size_t i = 0; i < j["examples"].size(); ++i) {
    const json& e = j["examples"][i];
    const std::string where = path + ": item " + std::to_string(i);
    if (!e.is_object() || !e.contains("type") || !e["type"].is_string() || !e.contains("keyword") ||
        !e["keyword"].is_string() || !e.contains("prefix_prompt") || !e["prefix_prompt"].is_string())
      fail_input(where + ": {\"type\", \"keyword\", \"prefix_prompt\"} strings expected");
    FilePrompt p;
    p.type_name = e["type"].get<std::string>();
    const std::optional<GaokaoType> t = answers::gaokao_type(p.type_name);
    if (!t)
      fail_input(where + ": question type \"" + p.type_name + "\" unknown (objective types: single_choice, "
                 "multi_choice, multi_question_choice, five_out_of_seven)");
    p.type = *t;
    p.prefix = e["prefix_prompt"].get<std::string>();
    out[e["keyword"].get<std::string>()] = p;
  }
  return out;
}

// One item of a file as a question (fails naming FILE: item N).
Question make_question(const json& item, const std::string& keyword, const FilePrompt& fp, const std::string& path,
                       int64_t index) {
  Question q;
  q.task = "gaokao";
  q.subject = keyword;
  q.category = subject_of(keyword);
  q.split = "test";
  q.where = path + ": item " + std::to_string(index);
  q.index = index;
  if (!item.is_object()) fail_input(q.where + ": an object {question, answer, score, ...} expected");
  if (!item.contains("question") || !item["question"].is_string())
    fail_input(q.where + ": question: a string expected");
  const char* key = item.contains("answer") ? "answer" : "standard_answer";
  const json gold = item.contains(key) ? item[key] : json();
  if (!gold.is_array() || gold.empty())
    fail_input(q.where + ": answer: a list of answers expected (e.g. [\"A\"], [\"AC\"], [\"B\", \"D\", \"A\"])");
  const std::string letters = alphabet(fp.type);
  for (const json& g : gold) {
    const std::string a = g.is_string() ? g.get<std::string>() : "";
    const bool one_letter = fp.type != GaokaoType::multi_choice;
    if (a.empty() || (one_letter && a.size() != 1) || a.find_first_not_of(letters) != std::string::npos)
      fail_input(q.where + ": answer " + g.dump() + " is outside the options of a " + fp.type_name + " question (" +
                 (one_letter ? "one letter " : "letters ") + letters.front() + "-" + letters.back() + " expected)");
    q.gold.push_back(a);
  }
  if (!item.contains("score") || !item["score"].is_number() || item["score"].get<double>() <= 0)
    fail_input(q.where + ": score: a positive number expected (the points of each answer)");
  const double score = item["score"].get<double>();
  q.points = static_cast<double>(q.gold.size()) * score;  // count_score: len(standard_answer) * score
  if (item.contains("index") && item["index"].is_number_integer()) q.id = std::to_string(item["index"].get<int64_t>());
  q.prompt = fp.prefix + answers::py_strip(item["question"].get<std::string>()) + "\n";
  q.scoring = Scoring::generate;
  q.max_new_tokens = kMaxNewTokens;
  if (fp.type != GaokaoType::multi_question_choice || q.gold.size() == 1) q.stop = {"<eoa>"};
  q.extra = {{"type", fp.type_name}, {"score", score}, {"partial_credit", q.category == "Physics"}};
  if (item.contains("year")) q.extra["year"] = item["year"];
  return q;
}

class GaokaoTask : public Task {
 public:
  std::string name() const override { return "gaokao"; }

  int64_t num_fewshot(const EvalOptions& o) const override {
    if (o.num_fewshot > 0 || o.num_fewshot < -1)
      fail_input("gaokao: --num-fewshot " + std::to_string(o.num_fewshot) +
                 ": GAOKAO-Bench is zero-shot only (its prompts have no examples); expected 0");
    return 0;
  }

  std::vector<Question> load(const EvalOptions& o, int64_t* skipped,
                             std::vector<std::string>* skip_examples) const override {
    num_fewshot(o);
    if (!o.prompt_style.empty())
      fail_input("gaokao: --prompt-style " + o.prompt_style + ": GAOKAO-Bench has only its official prompts");
    const std::string dir = o.bench_dir + "/gaokao";
    const std::string prompt_path = dir + "/Obj_Prompt.json";
    const std::vector<std::string> stems = answers::bench_stems(
        "gaokao", dir, ".json", "Obj_Prompt.json", o,
        "GAOKAO-Bench's objective files, <keyword>.json of Data/Objective_Questions, and Obj_Prompt.json");
    if (!std::filesystem::exists(prompt_path))
      fail_input(prompt_path + ": no such file (GAOKAO-Bench's Bench/Obj_Prompt.json: each file's prompt)");
    const std::map<std::string, FilePrompt> prompts = read_prompts(prompt_path);

    std::vector<Question> out;
    for (const std::string& stem : stems) {
      const std::string path = dir + "/" + stem + ".json";
      const auto fp = prompts.find(stem);
      if (fp == prompts.end())
        fail_input(path + ": keyword \"" + stem + "\" has no entry in " + prompt_path +
                   " (its prompt and question type); --subjects leaves the file out");
      const json data = read_json(path, "a GAOKAO-Bench objective file");
      if (!data.is_object() || !data.contains("example") || !data["example"].is_array())
        fail_input(path + ": {\"keywords\", \"example\": [...]} expected");
      const json& items = data["example"];
      int64_t kept = 0;
      for (size_t i = 0; i < items.size() && (o.limit == 0 || kept < o.limit); ++i) {
        const auto make = [&] { return make_question(items[i], stem, fp->second, path, static_cast<int64_t>(i)); };
        if (answers::add_or_skip(o, out, skipped, skip_examples, make)) ++kept;
      }
    }
    return out;
  }

  Score score(const Question& q, const Response& r) const override {
    const std::string type_name = q.extra.value("type", "single_choice");
    const GaokaoType type = answers::gaokao_type(type_name).value_or(GaokaoType::single_choice);
    const int64_t n = static_cast<int64_t>(q.gold.size());
    std::string text = r.text;
    if (type == GaokaoType::multi_question_choice) {  // the stop after the n-th "<eoa>" (see the top)
      size_t at = 0;
      for (int64_t k = 0; k < n && at != std::string::npos; ++k) at = text.find("<eoa>", k == 0 ? 0 : at + 5);
      if (at != std::string::npos) text.resize(at);
    }
    std::vector<std::string> model = answers::gaokao_extract(text, type, n);
    Score s;
    s.pred = answers::join(model, ",");
    if (static_cast<int64_t>(model.size()) != n) model.assign(static_cast<size_t>(n), "Z");  // check_length_equal
    const double score = q.extra.value("score", 1.0);
    const bool partial = q.extra.value("partial_credit", false);
    for (size_t j = 0; j < model.size(); ++j) {
      if (model[j] == q.gold[j]) {
        s.earned += score;
      } else if (partial && model[j].find_first_not_of(q.gold[j]) == std::string::npos) {
        s.earned += score * kPhysicsPartial / kPhysicsFull;  // every chosen letter is right, some are missing
      }
    }
    s.correct = std::abs(s.earned - q.points) <= 1e-9 * q.points;  // sums of a fractional score may round
    return s;
  }
};

}  // namespace

std::unique_ptr<Task> make_gaokao_task() { return std::make_unique<GaokaoTask>(); }

}  // namespace polyllama
