// AGIEval and GAOKAO-Bench: prompts and gold answers byte for byte those of an independent Python rendition of each
// benchmark's official prompt code (tests/reference/agieval_gaokao_prompts.py, on the real samples in
// ../shared/data/bench), and every rule of the official answer extraction and scoring, each expected value taken
// from the official Python (AGIEval src/post_process.py, evaluation.py, math_equivalence.py; GAOKAO-Bench
// Bench/bench_function.py extract_choice_answer and OBJ_score_evaluation.py) run on the same completion.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <map>
#include <sstream>

#include "../../src/eval/tasks/answer_extraction.hpp"
#include "polyllama/core/error.hpp"
#include "polyllama/eval/task.hpp"
#include "test_support.hpp"

using namespace polyllama;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

bool have_python3() { return std::system("python3 -c pass > /dev/null 2>&1") == 0; }

// The reference's lines for one benchmark: its questions, then {"counts": ...}.
std::vector<json> reference_rows(const std::string& bench, const std::string& which, int64_t k) {
  const std::string out = test::temp_dir("agieval_gaokao_ref") + "/" + which + ".jsonl";
  const std::string cmd = "python3 " PL_FIXTURES "/../reference/agieval_gaokao_prompts.py '" + bench + "' " + which +
                          " " + std::to_string(k) + " > '" + out + "'";
  EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
  std::vector<json> rows;
  std::istringstream in(test::slurp(out));
  for (std::string line; std::getline(in, line);) rows.push_back(json::parse(line));
  return rows;
}

std::vector<Question> load(const std::string& task, const EvalOptions& o, int64_t* skipped = nullptr) {
  int64_t n = 0;
  std::vector<std::string> why;
  std::vector<Question> qs = make_task(task)->load(o, skipped ? skipped : &n, &why);
  return qs;
}

// Every question against the reference's line, and the counts.
void expect_same_as_reference(const std::vector<Question>& qs, const std::vector<json>& ref) {
  ASSERT_FALSE(ref.empty());
  ASSERT_EQ(qs.size() + 1, ref.size());
  std::map<std::string, int64_t> subjects, categories;
  for (size_t i = 0; i < qs.size(); ++i) {
    const json& r = ref[i];
    EXPECT_EQ(qs[i].subject, r["subject"].get<std::string>()) << i;
    EXPECT_EQ(qs[i].category, r["category"].get<std::string>()) << qs[i].where;
    EXPECT_EQ(qs[i].index, r["index"].get<int64_t>()) << qs[i].where;
    EXPECT_EQ(qs[i].prompt, r["prompt"].get<std::string>()) << qs[i].where;
    EXPECT_EQ(qs[i].gold, r["gold"].get<std::vector<std::string>>()) << qs[i].where;
    if (r.contains("points")) EXPECT_EQ(qs[i].points, r["points"].get<double>()) << qs[i].where;
    ++subjects[qs[i].subject];
    ++categories[qs[i].category];
  }
  const json& counts = ref.back()["counts"];
  EXPECT_EQ(static_cast<int64_t>(qs.size()), counts["questions"].get<int64_t>());
  EXPECT_EQ(json(subjects), counts["subjects"]);
  EXPECT_EQ(json(categories), counts["categories"]);
}

int64_t lines_of(const std::string& path) {
  const std::string t = test::slurp(path);
  return static_cast<int64_t>(std::count(t.begin(), t.end(), '\n')) + (!t.empty() && t.back() != '\n');
}

Question by_subject(const std::vector<Question>& qs, const std::string& subject) {
  for (const Question& q : qs)
    if (q.subject == subject) return q;
  ADD_FAILURE() << "no question of " << subject;
  return {};
}

}  // namespace

TEST(AgiEvalPrompts, ZeroAndFewShotMatchTheOfficialCode) {
  const std::string bench = test::shared_data("bench");
  if (bench.empty()) GTEST_SKIP() << "no ../shared/data/bench";
  if (!have_python3()) GTEST_SKIP() << "no python3";
  for (const int64_t k : {0, 1, 3, 5}) {
    EvalOptions o;
    o.bench_dir = bench;
    o.num_fewshot = k;
    const std::vector<Question> qs = load("agieval", o);
    SCOPED_TRACE("num_fewshot " + std::to_string(k));
    expect_same_as_reference(qs, reference_rows(bench, "agieval", k));
    // Exactly the lines of the files, each task once.
    std::map<std::string, int64_t> per;
    for (const Question& q : qs) ++per[q.subject];
    for (const auto& [subject, n] : per) EXPECT_EQ(n, lines_of(bench + "/agieval/" + subject + ".jsonl")) << subject;
    EXPECT_EQ(per.size(), 4u);
    // The gold in each form: one letter, several letters (a list), a cloze answer.
    EXPECT_EQ(by_subject(qs, "logiqa-zh").gold.size(), 1u);
    EXPECT_EQ(by_subject(qs, "gaokao-mathcloze").labels.size(), 0u);
    EXPECT_EQ(by_subject(qs, "logiqa-zh").category, "Chinese");
    EXPECT_EQ(by_subject(qs, "sat-math").category, "English");
    bool several = false;
    for (const Question& q : qs) several = several || (q.subject == "gaokao-physics" && q.gold.size() > 1);
    EXPECT_TRUE(several);
    // Letters where the zero-shot prompt ends at the answer letter; generation for the rest.
    for (const Question& q : qs) {
      const bool single = q.subject == "logiqa-zh" || q.subject == "sat-math";
      EXPECT_EQ(q.scoring == Scoring::letters, single && k == 0) << q.where;
      if (q.scoring == Scoring::letters) EXPECT_EQ(q.labels, (std::vector<std::string>{"A", "B", "C", "D"}));
      if (q.scoring == Scoring::generate) EXPECT_GT(q.max_new_tokens, 0);
    }
  }
  const Question zh = by_subject(load("agieval", [&] { EvalOptions o; o.bench_dir = bench; return o; }()), "logiqa-zh");
  EXPECT_NE(zh.prompt.find("\n答案：从A到D, 我们应选择"), std::string::npos);
  EXPECT_EQ(zh.prompt.substr(zh.prompt.size() - std::string("我们应选择").size()), "我们应选择");
}

TEST(AgiEvalPrompts, MethodLimitAndSubjects) {
  const std::string bench = test::shared_data("bench");
  if (bench.empty()) GTEST_SKIP() << "no ../shared/data/bench";
  EvalOptions o;
  o.bench_dir = bench;
  o.subjects = {"logiqa-zh", "gaokao-mathcloze"};
  o.limit = 3;
  o.method = "generate";
  const std::vector<Question> qs = load("agieval", o);
  ASSERT_EQ(qs.size(), 6u);
  for (size_t i = 0; i < qs.size(); ++i) {
    EXPECT_EQ(qs[i].scoring, Scoring::generate);
    EXPECT_EQ(qs[i].index, static_cast<int64_t>(i % 3));
    EXPECT_EQ(qs[i].stop, std::vector<std::string>{"\n"});
  }
  EXPECT_EQ(qs[0].subject, "gaokao-mathcloze");  // files in name order
  EXPECT_EQ(qs[0].where, bench + "/agieval/gaokao-mathcloze.jsonl:1");
  o.subjects = {"nope"};
  const auto [code, msg] = test::error_of([&] { load("agieval", o); });
  EXPECT_EQ(code, kExitBadInput);
  EXPECT_NE(msg.find("nope"), std::string::npos) << msg;
}

TEST(GaokaoPrompts, MatchTheOfficialCode) {
  const std::string bench = test::shared_data("bench");
  if (bench.empty()) GTEST_SKIP() << "no ../shared/data/bench";
  if (!have_python3()) GTEST_SKIP() << "no python3";
  EvalOptions o;
  o.bench_dir = bench;
  const std::vector<Question> qs = load("gaokao", o);
  expect_same_as_reference(qs, reference_rows(bench, "gaokao", 0));
  std::map<std::string, int64_t> per;
  for (const Question& q : qs) ++per[q.subject];
  for (const auto& [subject, n] : per) {
    const json j = json::parse(test::slurp(bench + "/gaokao/" + subject + ".json"));
    EXPECT_EQ(n, static_cast<int64_t>(j["example"].size())) << subject;
  }
  EXPECT_EQ(per.size(), 3u);
  const Question cloze = by_subject(qs, "2012-2022_English_Cloze_Test");  // five_out_of_seven: 5 answers
  EXPECT_EQ(cloze.gold.size(), 5u);
  EXPECT_EQ(cloze.category, "English");
  const Question geo = by_subject(qs, "2010-2022_Geography_MCQs");  // multi_question_choice
  EXPECT_GE(geo.gold.size(), 2u);
  EXPECT_TRUE(geo.stop.empty());
  const Question phys = by_subject(qs, "2010-2022_Physics_MCQs");
  EXPECT_EQ(phys.stop, std::vector<std::string>{"<eoa>"});
  EXPECT_EQ(phys.scoring, Scoring::generate);
  EXPECT_EQ(phys.prompt.substr(0, std::string("请你做一道物理选择题。\n").size()), "请你做一道物理选择题。\n");
  EXPECT_EQ(phys.prompt.back(), '\n');
  for (const Question& q : qs) EXPECT_EQ(q.id, std::to_string(q.index)) << q.where;
}

// ---- AGIEval scoring: each case's expected value is what post_process.post_process and
// evaluation.evaluate_single_sample return for it ----

namespace {

// A directory with one question of each kind (a four-option English and Chinese task, a several-answer task, the
// two cloze tasks), and a one-example few_shot_prompts.csv.
std::string tiny_agieval() {
  const std::string dir = test::temp_dir("agieval_tiny");
  fs::create_directories(dir + "/agieval");
  const std::string mc = R"("passage": null, "question": "Q?", "options": ["(A)a", "(B)b", "(C)c", "(D)d"], )";
  test::spit(dir + "/agieval/logiqa-en.jsonl", "{" + mc + R"("label": "B", "answer": null, "other": null})" "\n");
  test::spit(dir + "/agieval/logiqa-zh.jsonl", "{" + mc + R"("label": "D", "answer": null, "other": null})" "\n");
  test::spit(dir + "/agieval/jec-qa-kd.jsonl", "{" + mc + R"("label": ["A", "C"], "answer": null})" "\n{" + mc +
                                                   R"("label": [], "answer": null})" "\n");
  const std::string cloze = R"({"passage": null, "question": "Q?", "options": null, "label": null, "answer": )";
  test::spit(dir + "/agieval/math.jsonl", cloze + R"("\\frac{\\sqrt{3}}{2}"})" "\n");
  test::spit(dir + "/agieval/gaokao-mathcloze.jsonl", cloze + R"("15"})" "\n");
  std::string csv = ",logiqa-en,logiqa-zh,jec-qa-kd,math,gaokao-mathcloze\n";
  const std::string ex = R"("{'passage': None, 'question': 'E?', 'options': ['(A)x', '(B)y'], 'label': 'A'}")";
  const std::string cex = R"("{'passage': None, 'question': 'E?', 'options': None, 'label': None, 'answer': '1'}")";
  csv += "sample 1," + ex + "," + ex + "," + ex + "," + cex + "," + cex + "\n";
  csv += "explanation 1,e,e,e,e,e\n";
  test::spit(dir + "/agieval/few_shot_prompts.csv", csv);
  return dir;
}

struct AgiCase {
  const char* task;
  bool few_shot;
  const char* completion;
  const char* pred;
  bool correct;
};

}  // namespace

TEST(AgiEvalScoring, OfficialExtractionAndComparison) {
  const std::string dir = tiny_agieval();
  std::map<std::pair<std::string, bool>, std::vector<Question>> qs;
  for (const bool few : {false, true}) {
    EvalOptions o;
    o.bench_dir = dir;
    o.num_fewshot = few ? 1 : 0;
    o.method = "generate";
    for (Question& q : load("agieval", o)) qs[{q.subject, few}].push_back(std::move(q));
  }
  const std::unique_ptr<Task> task = make_task("agieval");
  const std::vector<AgiCase> cases = {
      // single answer, zero-shot: find_first_capital_letter (A-F), equal to the label
      {"logiqa-en", false, " (B) 13", "B", true},
      {"logiqa-en", false, " the answer is c, because A is wrong", "A", false},
      {"logiqa-zh", false, "无法确定", "", false},
      {"logiqa-en", false, " GF", "F", false},
      // single answer, few-shot: "answer is .*?([A-G])" / "答案是.*?([A-G])" on one line, else the first capital
      {"logiqa-en", true, "The answer is therefore B", "B", true},
      {"logiqa-en", true, "Clearly the answer is (B).", "B", true},
      {"logiqa-en", true, "Because the answer is\nC", "B", true},
      {"logiqa-en", true, "answer is G", "G", false},
      {"logiqa-zh", true, "答案是：选项D", "D", true},
      {"logiqa-zh", true, "The answer is D", "D", true},
      // several answers: every A-F of the completion, as a set
      {"jec-qa-kd", false, "AC", "A,C", true},
      {"jec-qa-kd", false, "A和C。", "A,C", true},
      {"jec-qa-kd", true, "(A)(C)(A)", "A,C", true},
      {"jec-qa-kd", false, "A, C, and also Consider E", "A,C,E", false},
      {"jec-qa-kd", false, "", "", false},
      // cloze, zero-shot: parse_math_answer then is_equiv
      {"math", false, " $\\frac{\\sqrt{3}}{2}$.", "\\frac{\\sqrt{3}}{2}", true},
      {"math", false, " $\\dfrac{\\sqrt3}{2}$ and so", "\\dfrac{\\sqrt3}{2}", true},
      {"math", false, " \\boxed{x=\\frac{\\sqrt{3}}{2}}", "\\frac{\\sqrt{3}}{2}", true},
      {"math", false, " \\boxed 5 and {x}", "", false},
      {"math", false, " $$", "", false},
      {"gaokao-mathcloze", false, "共15个", "", false},
      {"gaokao-mathcloze", false, " 2个 or 15.", "15", true},
      {"gaokao-mathcloze", false, " x = 15.", "15", true},
      {"gaokao-mathcloze", false, " $k=15$", "15", true},
      {"gaokao-mathcloze", false, " 15.5cm", "15", true},
      {"gaokao-mathcloze", false, " １５", "１５", false},
      // cloze, few-shot: what follows the last "The answer is therefore" / "答案是", compared as it is
      {"math", true, "The answer is therefore $\\frac{\\sqrt{3}}{2}$", "$\\frac{\\sqrt{3}}{2}$", false},
      {"math", true, "The answer is therefore \\frac{\\sqrt{3}}{2}", "\\frac{\\sqrt{3}}{2}", true},
      {"gaokao-mathcloze", true, " 4\n以下答案是 15 ", "15", true},
  };
  for (const AgiCase& c : cases) {
    const Question& q = qs.at({c.task, c.few_shot}).front();
    Response r;
    r.text = c.completion;
    const Score s = task->score(q, r);
    EXPECT_EQ(s.pred, c.pred) << c.task << " " << c.few_shot << " " << c.completion;
    EXPECT_EQ(s.correct, c.correct) << c.task << " " << c.few_shot << " " << c.completion;
    EXPECT_EQ(s.earned, c.correct ? 1.0 : 0.0);
  }
  // An empty label list (jec-qa-kd's release has one) has no gold: always wrong, as evaluation.py's {} set.
  Response r;
  r.text = "A";
  EXPECT_FALSE(task->score(qs.at({"jec-qa-kd", false})[1], r).correct);
  // Letters (the default for a single answer zero-shot): the highest log-probability, ties to the earlier one.
  EvalOptions o;
  o.bench_dir = dir;
  o.subjects = {"logiqa-en"};
  const Question q = load("agieval", o).front();
  ASSERT_EQ(q.scoring, Scoring::letters);
  EXPECT_EQ(q.prompt, "Q: Q? Answer Choices: (A)a (B)b (C)c (D)d\nA: Among A through D, the answer is");
  Response lr;
  lr.logprobs = {-2.0, -0.5, -0.5, -3.0};
  EXPECT_TRUE(task->score(q, lr).correct);
  lr.logprobs = {-0.1, -0.5, -0.5, -3.0};
  EXPECT_EQ(task->score(q, lr).pred, "A");
  // The few-shot prompt: the opening line, the example with its answer and <END>, then the question as problem 2.
  const Question& fz = qs.at({"logiqa-zh", true}).front();
  EXPECT_EQ(fz.prompt, "以下是考试中各个问题的答案。\n问题 1.    E?\n从以下选项中选择:    (A)x (B)y\n答案是 A\n<END>\n"
                       "问题 2.    Q?\n从以下选项中选择:    (A)a (B)b (C)c (D)d\n");
  EXPECT_EQ(fz.stop, (std::vector<std::string>{"<END>", "\n"}));
  EXPECT_EQ(qs.at({"math", true}).front().prompt,
            "Here are the answers for the problems in the exam.\nProblem 1.   E?\nThe answer is therefore 1\n<END>\n"
            "Problem 2.   Q?\n");
}

TEST(AgiEvalScoring, MathNormalisation) {
  using answers::math_is_equiv;
  using answers::math_strip_string;
  // _strip_string's rewrites, each as the official function returns it; nullopt where it raises (IndexError,
  // AssertionError), where is_equiv compares the raw strings.
  const std::vector<std::pair<std::string, std::optional<std::string>>> strip_cases = {
      {"\\left( 1,2 \\right)", "(1,2)"},
      {" .5", "\\frac{1}{2}"},
      {"10/4", "\\frac{10}{4}"},
      {"a/b", "a/b"},
      {"03/4", "03/4"},
      {"-3/4", "\\frac{-3}{4}"},
      {"k = 2", "2"},
      {"abc=2", "abc=2"},
      {"10^{\\circ}", "10"},
      {"50\\%", "50"},
      {"5\\text{ cm}", "5"},
      {"\\sqrt3+\\tfrac12", "\\sqrt{3}+\\frac{1}{2}"},
      {"\\frac1{72}", "\\frac{1}{72}"},
      {"\\frac1", "\\frac1"},  // too short: _fix_fracs returns its argument
      {"αβ=3", "3"},             // len() counts code points
      {"\\sqrt", std::nullopt},
      {"x\\frac", std::nullopt},
      {"1\\text{ m}2\\text{ m}", std::nullopt},
  };
  for (const auto& [in, expected] : strip_cases) EXPECT_EQ(math_strip_string(in), expected) << in;
  EXPECT_TRUE(math_is_equiv(std::string("\\sqrt"), std::string("\\sqrt")));
  EXPECT_FALSE(math_is_equiv(std::string("\\sqrt "), std::string("\\sqrt")));
  EXPECT_TRUE(math_is_equiv(std::string("0.5"), std::string("\\frac{1}{2}")));
  EXPECT_TRUE(math_is_equiv(std::string("1/2"), std::string("\\dfrac{1}{2}")));
  EXPECT_TRUE(math_is_equiv(std::nullopt, std::nullopt));
  EXPECT_FALSE(math_is_equiv(std::nullopt, std::string("1")));
  // Python semantics underneath: str.strip's Unicode spaces, code-point lengths.
  EXPECT_EQ(answers::py_strip("\u3000 x\xC2\xA0\n"), "x");
  EXPECT_EQ(answers::py_len("α=3"), 3);
}

// ---- GAOKAO-Bench scoring: model_answer as extract_choice_answer returns it, points as obj_score_eval counts ----

namespace {

// A directory with one file of each question type; per-answer scores as the release's.
std::string tiny_gaokao(const std::string& prompt_type = "single_choice") {
  const std::string dir = test::temp_dir("gaokao_tiny");
  fs::create_directories(dir + "/gaokao");
  const json prompts = {{"examples",
                         {{{"type", prompt_type}, {"keyword", "2010-2022_Biology_MCQs"}, {"prefix_prompt", "P1\n"}},
                          {{"type", "multi_choice"}, {"keyword", "2010-2022_Physics_MCQs"}, {"prefix_prompt", "P2"}},
                          {{"type", "multi_question_choice"},
                           {"keyword", "2010-2022_Geography_MCQs"},
                           {"prefix_prompt", "P3"}},
                          {{"type", "five_out_of_seven"},
                           {"keyword", "2012-2022_English_Cloze_Test"},
                           {"prefix_prompt", "P4"}}}}};
  test::spit(dir + "/gaokao/Obj_Prompt.json", prompts.dump(2));
  const auto file = [&](const std::string& kw, const json& answer, double score) {
    const json item = {{"year", "2010"}, {"category", "（新课标）"}, {"question", " \n1. Q?\nA. a\n "},
                       {"answer", answer}, {"analysis", ""}, {"index", 0}, {"score", score}};
    test::spit(dir + "/gaokao/" + kw + ".json", json{{"keywords", kw}, {"example", {item}}}.dump(4));
  };
  file("2010-2022_Biology_MCQs", {"B"}, 6);
  file("2010-2022_Physics_MCQs", {"BD"}, 6);
  file("2010-2022_Geography_MCQs", {"A", "B", "C"}, 3);
  file("2012-2022_English_Cloze_Test", {"C", "F", "A", "E", "D"}, 2);
  return dir;
}

struct GkCase {
  const char* keyword;
  const char* completion;
  const char* pred;
  double earned;
};

}  // namespace

TEST(GaokaoScoring, OfficialExtractionAndPoints) {
  EvalOptions o;
  o.bench_dir = tiny_gaokao();
  std::map<std::string, Question> qs;
  for (Question& q : load("gaokao", o)) qs[q.subject] = std::move(q);
  ASSERT_EQ(qs.size(), 4u);
  EXPECT_EQ(qs["2010-2022_Biology_MCQs"].prompt, "P1\n1. Q?\nA. a\n");  // prefix + question.strip() + "\n"
  EXPECT_EQ(qs["2010-2022_Biology_MCQs"].points, 6);
  EXPECT_EQ(qs["2010-2022_Geography_MCQs"].points, 9);  // len(answer) * score
  EXPECT_EQ(qs["2012-2022_English_Cloze_Test"].points, 10);
  const std::unique_ptr<Task> task = make_task("gaokao");
  const std::vector<GkCase> cases = {
      // single_choice: the last A-D of the completion
      {"2010-2022_Biology_MCQs", "【解析】因为A不对，B对。<eoe>\n【答案】: B ", "B", 6},
      {"2010-2022_Biology_MCQs", "【答案】 C 因为D", "D", 0},
      {"2010-2022_Biology_MCQs", "不知道", "", 0},
      // multi_choice (Physics): the A-D after the first 【答案】 (whitespace removed); 6 exact, 3 a subset, else 0
      {"2010-2022_Physics_MCQs", "【解析】A项错误。<eoe>\n【答案】 B D ", "BD", 6},
      {"2010-2022_Physics_MCQs", "【解析】<eoe>\n【答案】 B", "B", 3},
      {"2010-2022_Physics_MCQs", "【解析】<eoe>\n【答案】AB", "AB", 0},
      {"2010-2022_Physics_MCQs", "【答案】 B D 解析：因为A", "BDA", 0},  // a tag at index 0: the last 10 characters
      {"2010-2022_Physics_MCQs", "I think the answer is B and D", "BD", 6},
      // multi_question_choice: one letter per 【答案】 when their count is right, else the first capitals
      {"2010-2022_Geography_MCQs", "（1）【答案】 A <eoa>\n（2）【答案】：B <eoa>\n（3）【答案】C <eoa>", "A,B,C", 9},
      {"2010-2022_Geography_MCQs", "（1）【答案】 A <eoa>\n（2）【答案】 D <eoa>\n（3）【答案】 C <eoa>", "A,D,C", 6},
      {"2010-2022_Geography_MCQs", "（1）【答案】 A\n（2）B", "A,B", 0},
      {"2010-2022_Geography_MCQs", "1. 【答案】 A 2. 选 B 3. C D", "A,B,C", 9},
      // ... and the completion ends after its third <eoa> (the stop the engine cannot count): the fourth answer
      // and the capitals before the first tag no longer count
      {"2010-2022_Geography_MCQs", "Because （1）【答案】 A <eoa>（2）【答案】 B <eoa>（3）【答案】 C <eoa>（4）【答案】 D",
       "A,B,C", 9},
      // five_out_of_seven: the first five A-G
      {"2012-2022_English_Cloze_Test", "【答案】 C F A E D ", "C,F,A,E,D", 10},
      {"2012-2022_English_Cloze_Test", "【答案】 CFAGB", "C,F,A,G,B", 6},
      {"2012-2022_English_Cloze_Test", "【答案】 C F", "C,F", 0},
  };
  for (const GkCase& c : cases) {
    const Question& q = qs.at(c.keyword);
    Response r;
    r.text = c.completion;
    const Score s = task->score(q, r);
    EXPECT_EQ(s.pred, c.pred) << c.keyword << " " << c.completion;
    EXPECT_EQ(s.earned, c.earned) << c.keyword << " " << c.completion;
    EXPECT_EQ(s.correct, c.earned == q.points) << c.keyword << " " << c.completion;
  }
  EXPECT_EQ(answers::gaokao_extract("【答案】 A C 解析：因为B", answers::GaokaoType::multi_choice, 1),
            std::vector<std::string>{"ACB"});
}

TEST(GaokaoScoring, PhysicsPartialCreditScalesWithTheItemsScore) {
  // The release's Physics items are worth 6 (6 exact, 3 partial, as above); an item worth 4 earns 4 and 2, never
  // more than it is worth (fuzz_gaokao found 6 earned of 5 possible with the fixed 6/3 of the official scorer).
  const std::string dir = tiny_gaokao();
  const json item = {{"year", "2010"}, {"category", "（新课标）"}, {"question", "1. Q?"}, {"answer", {"BD"}},
                     {"analysis", ""}, {"index", 0}, {"score", 4}};
  test::spit(dir + "/gaokao/2010-2022_Physics_MCQs.json",
             json{{"keywords", "2010-2022_Physics_MCQs"}, {"example", {item}}}.dump());
  EvalOptions o;
  o.bench_dir = dir;
  o.subjects = {"2010-2022_Physics_MCQs"};
  const std::vector<Question> qs = load("gaokao", o);
  ASSERT_EQ(qs.size(), 1u);
  EXPECT_EQ(qs[0].points, 4);
  const std::unique_ptr<Task> task = make_task("gaokao");
  for (const auto& [text, earned] : std::vector<std::pair<std::string, double>>{
           {"【解析】<eoe>\n【答案】 B D", 4}, {"【解析】<eoe>\n【答案】 D", 2}, {"【解析】<eoe>\n【答案】 A", 0}}) {
    Response r;
    r.text = text;
    EXPECT_EQ(task->score(qs[0], r).earned, earned) << text;
  }
}

// ---- bad input: exit 1 naming the file and line (or item) and what was expected; skip_invalid counts ----

TEST(AgiEvalBadInput, NamedAndSkippable) {
  const std::string dir = test::temp_dir("agieval_bad");
  EvalOptions o;
  o.bench_dir = dir;
  auto [code, msg] = test::error_of([&] { load("agieval", o); });
  EXPECT_EQ(code, kExitBadInput);
  EXPECT_NE(msg.find(dir + "/agieval"), std::string::npos) << msg;

  fs::create_directories(dir + "/agieval");
  const std::string ok = R"({"passage": null, "question": "Q", "options": ["(A)1", "(B)2", "(C)3", "(D)4"], )"
                         R"("label": "A", "answer": null})";
  const std::string path = dir + "/agieval/logiqa-en.jsonl";
  test::spit(path, ok + "\n{\"passage\": null, \"question\": \n" + ok + "\n");
  std::tie(code, msg) = test::error_of([&] { load("agieval", o); });
  EXPECT_EQ(code, kExitBadInput);
  EXPECT_NE(msg.find(path + ":2: malformed JSON"), std::string::npos) << msg;

  test::spit(path, ok + "\n" + ok + "\n" + R"({"passage": null, "question": "Q", "options": ["(A)1", "(B)2"], )"
                   R"("label": "E"})" "\n");
  std::tie(code, msg) = test::error_of([&] { load("agieval", o); });
  EXPECT_EQ(code, kExitBadInput);
  EXPECT_NE(msg.find(path + ":3: label \"E\" is outside the options (A-B)"), std::string::npos) << msg;
  o.skip_invalid = true;
  int64_t skipped = 0;
  EXPECT_EQ(load("agieval", o, &skipped).size(), 2u);
  EXPECT_EQ(skipped, 1);
  o.skip_invalid = false;

  test::spit(path, R"({"passage": null, "question": "Q", "options": ["(A)1", "(B)2"], "label": ["A"]})" "\n");
  std::tie(code, msg) = test::error_of([&] { load("agieval", o); });
  EXPECT_NE(msg.find(path + ":1: label: one letter expected"), std::string::npos) << msg;

  test::spit(path, ok + "\n");
  test::spit(dir + "/agieval/unknown-task.jsonl", ok + "\n");
  std::tie(code, msg) = test::error_of([&] { load("agieval", o); });
  EXPECT_EQ(code, kExitBadInput);
  EXPECT_NE(msg.find("unknown-task.jsonl: \"unknown-task\" is not an AGIEval v1 task"), std::string::npos) << msg;
  fs::remove(dir + "/agieval/unknown-task.jsonl");

  o.num_fewshot = 1;  // few-shot needs few_shot_prompts.csv
  std::tie(code, msg) = test::error_of([&] { load("agieval", o); });
  EXPECT_EQ(code, kExitBadInput);
  EXPECT_NE(msg.find("few_shot_prompts.csv"), std::string::npos) << msg;
  test::spit(dir + "/agieval/few_shot_prompts.csv", ",logiqa-en\nsample 1,\"{'question': 'x', \"\nexplanation 1,e\n");
  std::tie(code, msg) = test::error_of([&] { load("agieval", o); });
  EXPECT_NE(msg.find("few_shot_prompts.csv:2: column logiqa-en: not a Python literal"), std::string::npos) << msg;
  // An integer beyond 64 bits (found by fuzz_agieval: the conversion was undefined behaviour) is named.
  test::spit(dir + "/agieval/few_shot_prompts.csv",
             ",logiqa-en\nsample 1,\"{'question': 'x', 'n': 99999999999999999999}\"\nexplanation 1,e\n");
  std::tie(code, msg) = test::error_of([&] { load("agieval", o); });
  EXPECT_EQ(code, kExitBadInput);
  EXPECT_NE(msg.find("an integer beyond 64 bits"), std::string::npos) << msg;
  o.num_fewshot = 6;
  std::tie(code, msg) = test::error_of([&] { load("agieval", o); });
  EXPECT_NE(msg.find("expected 0 to 5"), std::string::npos) << msg;
}

TEST(GaokaoBadInput, NamedAndSkippable) {
  EvalOptions o;
  o.bench_dir = tiny_gaokao("true_or_false");
  auto [code, msg] = test::error_of([&] { load("gaokao", o); });
  EXPECT_EQ(code, kExitBadInput);
  EXPECT_NE(msg.find("Obj_Prompt.json: item 0: question type \"true_or_false\" unknown"), std::string::npos) << msg;

  o.bench_dir = tiny_gaokao();
  const std::string dir = o.bench_dir + "/gaokao";
  const std::string bio = dir + "/2010-2022_Biology_MCQs.json";
  test::spit(bio, "{\n  \"keywords\": \"x\",\n  \"example\": [\n    {\"question\": }\n  ]\n}\n");
  std::tie(code, msg) = test::error_of([&] { load("gaokao", o); });
  EXPECT_EQ(code, kExitBadInput);
  EXPECT_NE(msg.find(bio + ":4: malformed JSON"), std::string::npos) << msg;

  const json good = {{"question", "Q"}, {"answer", {"A"}}, {"score", 6}};
  json bad = good;
  bad["answer"] = {"E"};
  test::spit(bio, json{{"keywords", "x"}, {"example", {good, bad, good}}}.dump());
  std::tie(code, msg) = test::error_of([&] { load("gaokao", o); });
  EXPECT_EQ(code, kExitBadInput);
  EXPECT_NE(msg.find(bio + ": item 1: answer \"E\" is outside the options of a single_choice"), std::string::npos)
      << msg;
  o.skip_invalid = true;
  int64_t skipped = 0;
  EXPECT_EQ(load("gaokao", o, &skipped).size(), 5u);  // 2 + the other three files' one each
  EXPECT_EQ(skipped, 1);
  o.skip_invalid = false;
  test::spit(bio, json{{"keywords", "x"}, {"example", {good}}}.dump());

  test::spit(dir + "/2010-2022_Unlisted.json", json{{"example", json::array()}}.dump());
  std::tie(code, msg) = test::error_of([&] { load("gaokao", o); });
  EXPECT_NE(msg.find("keyword \"2010-2022_Unlisted\" has no entry in"), std::string::npos) << msg;
  fs::remove(dir + "/2010-2022_Unlisted.json");

  o.num_fewshot = 1;
  std::tie(code, msg) = test::error_of([&] { load("gaokao", o); });
  EXPECT_EQ(code, kExitBadInput);
  EXPECT_NE(msg.find("zero-shot only"), std::string::npos) << msg;
  o.num_fewshot = -1;
  fs::remove(dir + "/Obj_Prompt.json");
  std::tie(code, msg) = test::error_of([&] { load("gaokao", o); });
  EXPECT_NE(msg.find("Obj_Prompt.json: no such file"), std::string::npos) << msg;
}
