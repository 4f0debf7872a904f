// The C-Eval and MMLU tasks (src/eval/tasks/ceval.cpp, mmlu.cpp):
//  * every prompt equals, byte for byte, the one tests/reference/ceval_mmlu_prompts.py builds (a plain-Python
//    rendition of C-Eval's evaluators/llama.py and MMLU's evaluate.py, reading the files with csv and pandas'
//    type inference), on the real samples in ../shared/data/bench and on made-up files whose cells pandas turns
//    into numbers, NaN and booleans; gold answers and the counts of questions, subjects and categories agree;
//  * two prompts written out by hand from the official code;
//  * scoring: letters (ties to the earlier option), C-Eval's answer extraction from a generation
//    (ChatGLM_Evaluator.extract_cot_answer, rule by rule) and MMLU's first standalone letter;
//  * bad input: exit 1 naming FILE:LINE and what was expected; --skip-invalid counts and skips.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "../../src/eval/tasks/tasks.hpp"
#include "polyllama/core/error.hpp"
#include "test_support.hpp"

using namespace polyllama;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

bool have_python() { return std::system("python3 -c 'import csv, json' >/dev/null 2>&1") == 0; }

std::unique_ptr<Task> task_named(const std::string& name) {
  return name == "ceval" ? make_ceval_task() : make_mmlu_task();
}

std::vector<Question> load(const std::string& task, const EvalOptions& o, int64_t* skipped = nullptr,
                           std::vector<std::string>* examples = nullptr) {
  int64_t n = 0;
  std::vector<std::string> ex;
  return task_named(task)->load(o, skipped ? skipped : &n, examples ? examples : &ex);
}

void write(const std::string& path, const std::string& bytes) {
  fs::create_directories(fs::path(path).parent_path());
  test::spit(path, bytes);
}

std::vector<std::string> stems(const std::string& dir, const std::string& split) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string f = e.path().filename().string(), suffix = "_" + split + ".csv";
    if (f.size() > suffix.size() && f.substr(f.size() - suffix.size()) == suffix)
      out.push_back(f.substr(0, f.size() - suffix.size()));
  }
  return out;
}

// The reference's questions by (subject, index) and its counts, for one task.
struct Reference {
  std::map<std::pair<std::string, int64_t>, json> questions;
  json counts;
};

Reference reference(const std::string& bench, const std::string& task, const std::string& args,
                    const std::string& tag) {
  const std::string out = test::temp_dir(tag) + "/reference.jsonl";
  const std::string cmd = "python3 '" PL_FIXTURES "/../reference/ceval_mmlu_prompts.py' '" + bench + "' --task " +
                          task + " " + args + " > '" + out + "'";
  EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
  Reference r;
  std::ifstream in(out);
  for (std::string line; std::getline(in, line);) {
    const json j = json::parse(line);
    if (j.contains("counts"))
      r.counts = j["counts"];
    else
      r.questions[{j["subject"].get<std::string>(), j["index"].get<int64_t>()}] = j;
  }
  return r;
}

// Every question of the task equals the reference's; the counts are the reference's (those of the files).
void expect_as_reference(const std::vector<Question>& qs, const Reference& ref) {
  ASSERT_FALSE(ref.counts.is_null()) << "the reference printed no counts";
  EXPECT_EQ(static_cast<int64_t>(qs.size()), ref.counts["questions"].get<int64_t>());
  std::set<std::string> subjects, categories;
  for (const Question& q : qs) {
    subjects.insert(q.subject);
    categories.insert(q.category);
    const auto it = ref.questions.find({q.subject, q.index});
    ASSERT_NE(it, ref.questions.end()) << q.where << ": not in the reference";
    const json& r = it->second;
    EXPECT_EQ(q.prompt, r["prompt"].get<std::string>()) << q.where;
    EXPECT_EQ(q.gold.empty() ? "" : q.gold[0], r["gold"].get<std::string>()) << q.where;
    EXPECT_EQ(q.category, r["category"].get<std::string>()) << q.where;
  }
  EXPECT_EQ(static_cast<int64_t>(subjects.size()), ref.counts["subjects"].get<int64_t>());
  EXPECT_EQ(static_cast<int64_t>(categories.size()), ref.counts["categories"].get<int64_t>());
}

std::string joined(const std::vector<std::string>& v) {
  std::string s;
  for (const std::string& x : v) s += (s.empty() ? "" : ",") + x;
  return s;
}

// A made-up C-Eval and MMLU release whose cells pandas does not keep as text: all-integer columns ("007" -> 7),
// numeric columns ("3" -> 3.0, "1e-5" -> 1e-05), NA strings ("None", "NA", "" -> nan), booleans, quoted commas,
// quotes and newlines, CRLF rows.
std::string typed_bench(const std::string& tag) {
  const std::string dir = test::temp_dir(tag);
  const std::string dev = "Q0,007,3,None,True,A\n\"Q1, with \"\"quotes\"\"\",+4,2.5,x,false,B\n"
                          "\"Q2\nsecond line\", 5 ,1e-5,NA,TRUE,C\nQ3,6,1E3,,True,D\nQ4,8,inf,7,False,A\n";
  const std::string val = "V0,1,0.0001,1e16,N/A,C\r\nV1,2,3.,-Infinity,null,D\r\nV2,x,\"4\",5.50,1,A\r\n";
  write(dir + "/mmlu/dev/virology_dev.csv", dev);
  write(dir + "/mmlu/val/virology_val.csv", val);
  write(dir + "/mmlu/dev/abstract_algebra_dev.csv", val + dev);
  write(dir + "/mmlu/val/abstract_algebra_val.csv", dev);
  const std::string head = "id,question,A,B,C,D,answer\n";
  auto with_ids = [](const std::string& rows) {
    std::string out;
    int64_t id = 0;
    size_t start = 0;
    // every row above starts a line with Q, V or a quote; no continuation line does
    for (size_t i = 0; i <= rows.size(); ++i)
      if (i == rows.size() ||
          (i > start && rows[i - 1] == '\n' && (rows[i] == 'Q' || rows[i] == 'V' || rows[i] == '"'))) {
        out += std::to_string(id++) + "," + rows.substr(start, i - start);
        start = i;
      }
    return out;
  };
  write(dir + "/ceval/dev/art_studies_dev.csv", head + with_ids(dev));
  write(dir + "/ceval/val/art_studies_val.csv", head + with_ids(val));
  write(dir + "/ceval/subject_mapping.json", R"({"art_studies": ["Art Studies", "艺术学", "Humanities"]})");
  return dir;
}

}  // namespace

TEST(CEvalPrompts, MatchOfficialCodeOnBench) {
  const std::string bench = test::shared_data("bench");
  if (bench.empty()) GTEST_SKIP() << "no ../shared/data/bench";
  if (!have_python()) GTEST_SKIP() << "no python3";
  EvalOptions o;
  o.bench_dir = bench;
  o.subjects = stems(bench + "/ceval/val", "val");  // the samples hold 3 of the mapping's 52 subjects
  ASSERT_EQ(o.subjects.size(), 3u);
  const std::string subjects = " --subjects " + joined(o.subjects);
  expect_as_reference(load("ceval", o), reference(bench, "ceval", subjects, "ceval_ref5"));
  o.num_fewshot = 0;
  expect_as_reference(load("ceval", o), reference(bench, "ceval", "--k 0" + subjects, "ceval_ref0"));
  o.num_fewshot = 3;
  o.prompt_style = "subject-key";
  expect_as_reference(load("ceval", o), reference(bench, "ceval", "--k 3 --subject-key" + subjects, "ceval_ref3"));
}

TEST(MmluPrompts, MatchOfficialCodeOnBench) {
  const std::string bench = test::shared_data("bench");
  if (bench.empty()) GTEST_SKIP() << "no ../shared/data/bench";
  if (!have_python()) GTEST_SKIP() << "no python3";
  EvalOptions o;
  o.bench_dir = bench;
  expect_as_reference(load("mmlu", o), reference(bench, "mmlu", "", "mmlu_ref5"));
  o.num_fewshot = 1;
  expect_as_reference(load("mmlu", o), reference(bench, "mmlu", "--k 1", "mmlu_ref1"));
}

TEST(CEvalPrompts, PandasTypedCellsAsOfficialCode) {
  if (!have_python()) GTEST_SKIP() << "no python3";
  const std::string bench = typed_bench("typed_bench");
  EvalOptions o;
  o.bench_dir = bench;
  const std::vector<Question> ceval = load("ceval", o), mmlu = load("mmlu", o);
  expect_as_reference(ceval, reference(bench, "ceval", "", "typed_ceval"));
  expect_as_reference(mmlu, reference(bench, "mmlu", "", "typed_mmlu"));
  // What pandas makes of the cells, spelled out for one prompt: the column B of val (1, 2, x) stays text, C
  // (0.0001, 3., "4") is float64, D (1e16, -Infinity, 5.50) float64, E (N/A, null, 1) float64 with NaN.
  ASSERT_EQ(ceval.size(), 3u);
  EXPECT_NE(ceval[1].prompt.find("\nV1\nA. 2\nB. 3.0\nC. -inf\nD. nan\n答案："), std::string::npos) << ceval[1].prompt;
  EXPECT_NE(ceval[0].prompt.find("Q0\nA. 7\nB. 3.0\nC. nan\nD. True\n答案：A\n\n"), std::string::npos);
  EXPECT_EQ(ceval[0].extra["options"], json({"1", "0.0001", "1e+16", "nan"}));
  // Where pandas itself is installed, the reference read through pandas.read_csv prints the same.
  if (std::system("python3 -c 'import pandas' >/dev/null 2>&1") == 0) {
    expect_as_reference(ceval, reference(bench, "ceval", "--pandas", "typed_ceval_pd"));
    expect_as_reference(mmlu, reference(bench, "mmlu", "--pandas", "typed_mmlu_pd"));
  }
}

TEST(MmluPrompts, AllSubjectsAndTheirCategories) {
  if (!have_python()) GTEST_SKIP() << "no python3";
  // The reference's categories.py tables against the C++ table, for every one of the 57 subjects.
  const std::string dir = test::temp_dir("mmlu57");
  const std::vector<std::string> subjects = {
      "abstract_algebra", "anatomy", "astronomy", "business_ethics", "clinical_knowledge", "college_biology",
      "college_chemistry", "college_computer_science", "college_mathematics", "college_medicine",
      "college_physics", "computer_security", "conceptual_physics", "econometrics", "electrical_engineering",
      "elementary_mathematics", "formal_logic", "global_facts", "high_school_biology", "high_school_chemistry",
      "high_school_computer_science", "high_school_european_history", "high_school_geography",
      "high_school_government_and_politics", "high_school_macroeconomics", "high_school_mathematics",
      "high_school_microeconomics", "high_school_physics", "high_school_psychology", "high_school_statistics",
      "high_school_us_history", "high_school_world_history", "human_aging", "human_sexuality",
      "international_law", "jurisprudence", "logical_fallacies", "machine_learning", "management", "marketing",
      "medical_genetics", "miscellaneous", "moral_disputes", "moral_scenarios", "nutrition", "philosophy",
      "prehistory", "professional_accounting", "professional_law", "professional_medicine",
      "professional_psychology", "public_relations", "security_studies", "sociology", "us_foreign_policy",
      "virology", "world_religions"};
  ASSERT_EQ(subjects.size(), 57u);
  for (const std::string& s : subjects) {
    write(dir + "/mmlu/dev/" + s + "_dev.csv", "Example of " + s + "?,a,b,c,d,B\n");
    write(dir + "/mmlu/test/" + s + "_test.csv", "Question of " + s + "?,a,b,c,d,C\nAnother?,1,2,3,4,D\n");
  }
  EvalOptions o;
  o.bench_dir = dir;
  o.split = "test";
  o.num_fewshot = 1;
  const std::vector<Question> qs = load("mmlu", o);
  expect_as_reference(qs, reference(dir, "mmlu", "--split test --k 1", "mmlu57_ref"));
  std::map<std::string, int64_t> per_category;
  for (const Question& q : qs) per_category[q.category] += q.index == 0;
  EXPECT_EQ(per_category, (std::map<std::string, int64_t>{
                              {"STEM", 18}, {"humanities", 13}, {"other", 14}, {"social sciences", 12}}));
}

TEST(CEvalPrompts, WrittenOutByHand) {
  const std::string dir = test::temp_dir("ceval_hand");
  write(dir + "/ceval/subject_mapping.json", R"({"computer_network": ["Computer Network", "计算机网络", "STEM"]})");
  write(dir + "/ceval/dev/computer_network_dev.csv",
        "id,question,A,B,C,D,answer,explanation\n0,滑动窗口的作用是____。,流量控制,拥塞控制,路由控制,差错控制,A,"
        "\"1. 流量控制。\"\n1, 前后有空格 ,a,b,c,d,B,\n");
  write(dir + "/ceval/val/computer_network_val.csv",
        "id,question,A,B,C,D,answer\n7,TCP端对端通信作用于____,主机之间,网络之间,进程之间,主机到网络,C\n");
  EvalOptions o;
  o.bench_dir = dir;
  o.num_fewshot = 2;
  std::vector<Question> qs = load("ceval", o);
  ASSERT_EQ(qs.size(), 1u);
  EXPECT_EQ(qs[0].prompt,
            "以下是中国关于计算机网络考试的单项选择题，请选出其中的正确答案。\n\n"
            "滑动窗口的作用是____。\nA. 流量控制\nB. 拥塞控制\nC. 路由控制\nD. 差错控制\n答案：A\n\n"
            " 前后有空格 \nA. a\nB. b\nC. c\nD. d\n答案：B\n\n"
            "TCP端对端通信作用于____\nA. 主机之间\nB. 网络之间\nC. 进程之间\nD. 主机到网络\n答案：");
  EXPECT_EQ(qs[0].gold, std::vector<std::string>{"C"});
  EXPECT_EQ(qs[0].labels, (std::vector<std::string>{"A", "B", "C", "D"}));
  EXPECT_EQ(qs[0].id, "7");
  EXPECT_EQ(qs[0].index, 0);
  EXPECT_EQ(qs[0].category, "STEM");
  EXPECT_EQ(qs[0].where, dir + "/ceval/val/computer_network_val.csv:2");
  EXPECT_EQ(qs[0].scoring, Scoring::letters);
  EXPECT_EQ(task_named("ceval")->num_fewshot(o), 2);
  o.prompt_style = "subject-key";
  o.num_fewshot = 0;
  EXPECT_EQ(load("ceval", o)[0].prompt.rfind("以下是中国关于computer_network考试的单项选择题，请选出其中的正确答案。\n\nTCP", 0),
            0u);
}

TEST(MmluPrompts, WrittenOutByHand) {
  const std::string dir = test::temp_dir("mmlu_hand");
  write(dir + "/mmlu/dev/high_school_geography_dev.csv",
        "Which one is a river?,Nile,Alps,\"Sahara, desert\",Everest,A\n\"Two\nlines?\",1,2,3,4,D\n");
  write(dir + "/mmlu/val/high_school_geography_val.csv", "x\n\n\"What is 1,000?\",a,b,c,d,B\n");
  EvalOptions o;
  o.bench_dir = dir;
  const auto [code, msg] = test::error_of([&] { load("mmlu", o); });  // 5-shot: 2 dev rows
  EXPECT_EQ(code, kExitBadInput);
  EXPECT_NE(msg.find("high_school_geography_dev.csv: 2 usable rows"), std::string::npos) << msg;
  o.num_fewshot = 2;
  o.split = "val";
  // The first val row has one field: a malformed row, here skipped.
  o.skip_invalid = true;
  int64_t skipped = 0;
  std::vector<std::string> why;
  const std::vector<Question> qs = load("mmlu", o, &skipped, &why);
  ASSERT_EQ(qs.size(), 1u);
  EXPECT_EQ(skipped, 1);
  EXPECT_EQ(qs[0].prompt,
            "The following are multiple choice questions (with answers) about  high school geography.\n\n"
            "Which one is a river?\nA. Nile\nB. Alps\nC. Sahara, desert\nD. Everest\nAnswer: A\n\n"
            "Two\nlines?\nA. 1\nB. 2\nC. 3\nD. 4\nAnswer: D\n\n"
            "What is 1,000?\nA. a\nB. b\nC. c\nD. d\nAnswer:");
  EXPECT_EQ(qs[0].index, 1);  // the row in its file; the blank line is no row
  EXPECT_EQ(qs[0].id, "1");
  EXPECT_EQ(qs[0].where, dir + "/mmlu/val/high_school_geography_val.csv:3");
  EXPECT_EQ(qs[0].category, "social sciences");
  EXPECT_EQ(qs[0].extra["subcategory"], "geography");
}

TEST(CEvalScore, LettersAndGeneratedAnswers) {
  const std::unique_ptr<Task> t = make_ceval_task();
  Question q;
  q.labels = {"A", "B", "C", "D"};
  q.gold = {"C"};
  Score s = t->score(q, {{-3.0, -2.0, -1.0, -4.0}, ""});
  EXPECT_EQ(s.pred, "C");
  EXPECT_TRUE(s.correct);
  EXPECT_EQ(s.earned, 1.0);
  s = t->score(q, {{-1.0, -2.0, -1.0, -4.0}, ""});  // a tie goes to the earlier option
  EXPECT_EQ(s.pred, "A");
  EXPECT_FALSE(s.correct);
  Question test_q = q;
  test_q.gold.clear();  // the test split: a prediction, never correct
  s = t->score(test_q, {{-3.0, -2.0, -1.0, -4.0}, ""});
  EXPECT_EQ(s.pred, "C");
  EXPECT_FALSE(s.correct);

  q.scoring = Scoring::generate;
  q.extra["options"] = json({"流量控制", "拥塞控制", "路由控制", "差错控制"});
  auto pred = [&](const std::string& text) { return t->score(q, {{}, text}).pred; };
  // 1. the last "所以答案是X。" whose X is one letter
  EXPECT_EQ(pred("所以答案是A。后来又想，所以答案是C。"), "C");
  EXPECT_EQ(pred("所以答案是A。所以答案是CD。"), "A");  // the last match, "CD", is no letter: rule 2, 答案是A
  EXPECT_EQ(pred("所以答案是\nB。答案为D"), "D");       // '.' never crosses a line: rule 2, 答案为D
  EXPECT_EQ(pred("所以答案是B所以答案是C。"), "B");    // one lazy match "B所以答案是C": rule 2, leftmost 答案是B
  // 2. the patterns in ChatGLM's order, each at its leftmost match
  EXPECT_EQ(pred("我认为D是正确的，答案为B"), "D");
  EXPECT_EQ(pred("答案为B，选项A正确"), "A");
  EXPECT_EQ(pred("选择C，答案是B"), "B");
  EXPECT_EQ(pred("答案：C"), "C");
  EXPECT_EQ(pred("答案A"), "A");
  // 3. exactly one of A-D in the (stripped) response
  EXPECT_EQ(pred("  B\n"), "B");
  EXPECT_EQ(pred("\u3000B"), "B");
  EXPECT_EQ(pred("B. 拥塞控制"), "B");
  // 4. exactly one option's text
  EXPECT_EQ(pred("应该是差错控制吧"), "D");
  EXPECT_EQ(pred("流量控制或拥塞控制"), "");
  // nothing found: no prediction, not correct
  EXPECT_EQ(pred("不知道"), "");
  EXPECT_FALSE(t->score(q, {{}, "不知道"}).correct);
  q.gold = {"B"};
  s = t->score(q, {{}, "B"});
  EXPECT_TRUE(s.correct);
  EXPECT_EQ(s.earned, 1.0);
}

TEST(MmluScore, LettersAndGeneratedAnswers) {
  const std::unique_ptr<Task> t = make_mmlu_task();
  Question q;
  q.labels = {"A", "B", "C", "D"};
  q.gold = {"D"};
  EXPECT_EQ(t->score(q, {{-5.0, -5.0, -6.0, -5.0}, ""}).pred, "A");
  EXPECT_TRUE(t->score(q, {{-5.0, -5.0, -6.0, -4.0}, ""}).correct);
  q.scoring = Scoring::generate;
  auto pred = [&](const std::string& text) { return t->score(q, {{}, text}).pred; };
  EXPECT_EQ(pred(" D"), "D");
  EXPECT_EQ(pred("Answer: (B)"), "B");  // the A of "Answer" is inside a word
  EXPECT_EQ(pred("C. Paris"), "C");
  EXPECT_EQ(pred("The answer is D."), "D");
  EXPECT_EQ(pred("A and B"), "A");
  EXPECT_EQ(pred("BC or AD_ or D2"), "");
  EXPECT_EQ(pred("none"), "");
  EXPECT_TRUE(t->score(q, {{}, " D\n"}).correct);
  EXPECT_FALSE(t->score(q, {{}, "E"}).correct);
}

TEST(CEvalInput, SplitsMethodsAndFilters) {
  const std::string dir = test::temp_dir("ceval_modes");
  write(dir + "/ceval/subject_mapping.json",
        R"({"law": ["Law", "法学", "Humanities"], "physician": ["Physician", "医师资格", "Other"]})");
  for (const std::string s : {"law", "physician"}) {
    write(dir + "/ceval/dev/" + s + "_dev.csv", "id,question,A,B,C,D,answer\n0,d?,a,b,c,d,A\n");
    write(dir + "/ceval/val/" + s + "_val.csv", "id,question,A,B,C,D,answer\n0,q0,a,b,c,d,B\n1,q1,a,b,c,d,C\n");
    write(dir + "/ceval/test/" + s + "_test.csv", "id,question,A,B,C,D\n10,t0,a,b,c,d\n11,t1,a,b,c,d\n");
  }
  EvalOptions o;
  o.bench_dir = dir;
  o.num_fewshot = 1;
  std::vector<Question> qs = load("ceval", o);
  ASSERT_EQ(qs.size(), 4u);
  EXPECT_EQ(qs[0].subject, "law");
  EXPECT_EQ(qs[3].subject, "physician");
  EXPECT_EQ(qs[3].category, "Other");
  o.limit = 1;
  o.subjects = {"physician"};
  o.method = "generate";
  qs = load("ceval", o);
  ASSERT_EQ(qs.size(), 1u);
  EXPECT_EQ(qs[0].scoring, Scoring::generate);
  EXPECT_EQ(qs[0].stop, std::vector<std::string>{"\n\n"});
  EXPECT_EQ(qs[0].max_new_tokens, 256);
  o.split = "test";
  o.limit = 0;
  o.method = "loglik";
  qs = load("ceval", o);
  ASSERT_EQ(qs.size(), 2u);
  EXPECT_TRUE(qs[1].gold.empty());
  EXPECT_EQ(qs[1].id, "11");
  EXPECT_EQ(qs[1].split, "test");
  auto error = [&](EvalOptions bad) { return test::error_of([&] { load("ceval", bad); }); };
  EvalOptions bad = o;
  bad.method = "vote";
  EXPECT_EQ(error(bad).first, kExitBadInput);
  bad = o;
  bad.split = "dev";
  EXPECT_NE(error(bad).second.find("expected val or test"), std::string::npos);
  bad = o;
  bad.prompt_style = "cot";
  EXPECT_EQ(error(bad).first, kExitBadInput);
  bad = o;
  bad.num_fewshot = 2;  // one dev row
  EXPECT_NE(error(bad).second.find(dir + "/ceval/dev/physician_dev.csv: 1 usable rows"), std::string::npos);
}

TEST(CEvalInput, BadFilesNameFileLineAndWhatWasExpected) {
  const std::string dir = test::temp_dir("ceval_bad");
  const std::string mapping = dir + "/ceval/subject_mapping.json";
  write(mapping, R"({"law": ["Law", "法学", "Humanities"], "logic": ["Logic", "逻辑学", "Humanities"]})");
  const std::string head = "id,question,A,B,C,D,answer\n";
  write(dir + "/ceval/dev/law_dev.csv", head + "0,d?,a,b,c,d,A\n");
  write(dir + "/ceval/dev/logic_dev.csv", head + "0,d?,a,b,c,d,A\n");
  write(dir + "/ceval/val/law_val.csv", head + "0,q0,a,b,c,d,B\n1,q1,a,b,c,d,E\n2,\"q2\nx\",a,b,c\n3,q3,a,b,c,d,D\n");
  EvalOptions o;
  o.bench_dir = dir;
  o.num_fewshot = 1;
  auto expect_error = [&](const EvalOptions& opt, const std::string& want) {
    const auto [code, msg] = test::error_of([&] { load("ceval", opt); });
    EXPECT_EQ(code, kExitBadInput) << want;
    EXPECT_NE(msg.find(want), std::string::npos) << "want: " << want << "\ngot: " << msg;
  };
  // logic is in the mapping but has no file (law comes first: its bad rows are skipped here)
  o.skip_invalid = true;
  expect_error(o, dir + "/ceval/val/logic_val.csv: no such file");
  o.skip_invalid = false;
  o.subjects = {"law"};
  expect_error(o, dir + "/ceval/val/law_val.csv:3: answer \"E\": expected one of A, B, C, D");
  o.skip_invalid = true;
  int64_t skipped = 0;
  std::vector<std::string> why;
  const std::vector<Question> qs = load("ceval", o, &skipped, &why);
  ASSERT_EQ(qs.size(), 2u);
  EXPECT_EQ(qs[1].index, 3);
  EXPECT_EQ(qs[1].where, dir + "/ceval/val/law_val.csv:6");
  EXPECT_EQ(skipped, 2);
  ASSERT_EQ(why.size(), 2u);
  EXPECT_NE(why[1].find("law_val.csv:4: expected 7 fields (id,question,A,B,C,D,answer), found 5"), std::string::npos)
      << why[1];
  o.skip_invalid = false;
  o.subjects = {"law", "history"};
  expect_error(o, "--subjects history: not in " + mapping);
  // A file of the split whose subject the mapping lacks.
  write(dir + "/ceval/val/logic_val.csv", head);
  write(dir + "/ceval/val/history_val.csv", head);
  o.subjects.clear();
  expect_error(o, dir + "/ceval/val/history_val.csv: subject \"history\" is not in " + mapping);
  write(dir + "/ceval/val/logic_val.csv", "id,question,A,B,C,answer\n");
  o.subjects = {"logic"};
  expect_error(o, dir + "/ceval/val/logic_val.csv:1: no column \"D\"");
  write(mapping, R"({"law": ["Law", "法学"]})");
  expect_error(o, mapping + ": subject \"law\": expected [English name, Chinese name, category]");
  fs::remove(mapping);
  expect_error(o, mapping + ": no such file");
}

TEST(MmluInput, BadFilesNameFileLineAndWhatWasExpected) {
  const std::string dir = test::temp_dir("mmlu_bad");
  write(dir + "/mmlu/val/anatomy_val.csv", "q0,a,b,c,d,A\nq1,a,b,c,d,a\nq2,a,b,c,d,e,B\n");
  EvalOptions o;
  o.bench_dir = dir;
  o.num_fewshot = 0;  // no dev file needed
  auto expect_error = [&](const EvalOptions& opt, const std::string& want) {
    const auto [code, msg] = test::error_of([&] { load("mmlu", opt); });
    EXPECT_EQ(code, kExitBadInput) << want;
    EXPECT_NE(msg.find(want), std::string::npos) << "want: " << want << "\ngot: " << msg;
  };
  expect_error(o, dir + "/mmlu/val/anatomy_val.csv:2: answer \"a\": expected one of A, B, C, D");
  o.skip_invalid = true;
  int64_t skipped = 0;
  std::vector<std::string> why;
  ASSERT_EQ(load("mmlu", o, &skipped, &why).size(), 1u);
  EXPECT_EQ(skipped, 2);
  ASSERT_EQ(why.size(), 2u);
  EXPECT_NE(why[1].find("anatomy_val.csv:3: expected 6 fields (question,A,B,C,D,answer), found 7"),
            std::string::npos)
      << why[1];
  o.skip_invalid = false;
  o.num_fewshot = -1;
  expect_error(o, dir + "/mmlu/dev/anatomy_dev.csv: no such file");
  o.num_fewshot = -2;
  expect_error(o, "--num-fewshot -2");
  o.num_fewshot = 0;
  o.subjects = {"astrology"};
  expect_error(o, "--subjects astrology: not one of MMLU's 57 subjects");
  o.subjects = {"virology"};
  expect_error(o, dir + "/mmlu/val/virology_val.csv: no such file");
  o.subjects.clear();
  write(dir + "/mmlu/val/astrology_val.csv", "q,a,b,c,d,A\n");
  expect_error(o, dir + "/mmlu/val/astrology_val.csv: subject \"astrology\" is not one of MMLU's 57");
  o.split = "test";
  expect_error(o, dir + "/mmlu/test: no such directory");
  o.prompt_style = "chat";
  expect_error(o, "mmlu: --prompt-style chat");
}
