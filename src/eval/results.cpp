#include "polyllama/eval/results.hpp"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "polyllama/core/atomic_file.hpp"
#include "polyllama/core/error.hpp"
#include "polyllama/core/log.hpp"
#include "polyllama/eval/responses.hpp"

namespace fs = std::filesystem;

namespace polyllama {

MeanStderr mean_stderr(const std::vector<double>& x) {
  MeanStderr m;
  m.n = static_cast<int64_t>(x.size());
  if (x.empty()) return m;
  for (double v : x) m.mean += v;
  m.mean /= static_cast<double>(x.size());
  if (x.size() > 1) {
    double ss = 0;
    for (double v : x) ss += (v - m.mean) * (v - m.mean);
    m.sem = std::sqrt(ss / static_cast<double>(x.size() - 1)) / std::sqrt(static_cast<double>(x.size()));
  }
  return m;
}

namespace {

using json = nlohmann::json;

std::string slug(const std::string& s) {
  std::string o;
  for (const char c : s)
    o += c == ' ' || c == '/' ? '_' : static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return o;
}

bool has_gold(const TaskRun& r) {
  for (const Question& q : r.questions)
    if (!q.gold.empty()) return true;
  return false;
}

// A set of questions (a subject, a category, a task) as results.json reports it.
json metrics(const TaskRun& r, const std::vector<size_t>& idx, const std::string& alias) {
  json m = {{"alias", alias}, {"samples", idx.size()}};
  std::vector<double> acc;
  double earned = 0, points = 0;
  bool gold = false;
  for (size_t i : idx) gold = gold || !r.questions[i].gold.empty();
  if (!gold) return m;  // a test split: predictions only
  for (size_t i : idx) {
    acc.push_back(r.scores[i].correct ? 1.0 : 0.0);
    earned += r.scores[i].earned;
    points += r.questions[i].points;
  }
  const MeanStderr a = mean_stderr(acc);
  m["acc,none"] = a.mean;
  m["acc_stderr,none"] = a.sem;
  m["score,none"] = points > 0 ? earned / points : 0.0;
  m["points_earned"] = earned;
  m["points_possible"] = points;
  return m;
}

struct Grouping {
  std::vector<std::string> subjects, categories;  // in order of first appearance
  std::map<std::string, std::vector<size_t>> by_subject, by_category;
  std::map<std::string, std::vector<std::string>> subjects_of;  // category -> subjects
};

Grouping group(const TaskRun& r) {
  Grouping g;
  for (size_t i = 0; i < r.questions.size(); ++i) {
    const Question& q = r.questions[i];
    if (!g.by_subject.count(q.subject)) {
      g.subjects.push_back(q.subject);
      if (!g.by_category.count(q.category)) g.categories.push_back(q.category);
      g.subjects_of[q.category].push_back(q.subject);
    }
    g.by_subject[q.subject].push_back(i);
    g.by_category[q.category].push_back(i);
  }
  return g;
}

// The mean over subjects of their accuracy (C-Eval's and AGIEval's headline averages), beside the
// question-weighted one.
void add_subject_mean(json& m, const json& results, const std::string& task, const std::vector<std::string>& subs) {
  if (!m.contains("acc,none")) return;
  double s = 0;
  for (const std::string& sub : subs) s += results.at(task + "_" + slug(sub)).at("acc,none").get<double>();
  m["acc_subject_mean,none"] = subs.empty() ? 0.0 : s / static_cast<double>(subs.size());
}

std::string pct(const json& m, const char* key) {
  return m.contains(key) ? fmt("%.2f", 100.0 * m.at(key).get<double>()) : std::string("-");
}

const char* const kResultsHeader = "# Evaluation results\n\n";
const char* const kResponsesHeading = "## responses ";

// Every object member of `part` into the same member of `res` (results.json's top-level sections).
void merge_sections(json& res, const json& part) {
  for (const auto& [section, entries] : part.items())
    for (const auto& [key, value] : entries.items()) res[section][key] = value;
}

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail_input(path + ": cannot read");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// OUT/responses.jsonl: one line per instruction, in input order.
void write_response_records(const std::string& out_dir, const ResponsesRun& rr) {
  std::string lines;
  for (const ResponseRecord& r : rr.records) lines += response_record_line(r, rr.judge_model) + "\n";
  write_file_atomically(out_dir + "/responses.jsonl", lines);
}

}  // namespace

json results_json(const std::vector<TaskRun>& runs, const std::vector<PplResult>& ppl, const json& config,
                  const ResponsesRun* responses) {
  json results = json::object(), groups = json::object(), group_subtasks = json::object(),
       configs = json::object(), versions = json::object(), nshot = json::object();
  for (const TaskRun& r : runs) {
    const Grouping g = group(r);
    std::vector<std::string> cats;
    for (const std::string& sub : g.subjects) {
      const std::string key = r.task + "_" + slug(sub);
      results[key] = metrics(r, g.by_subject.at(sub), " - " + sub);
      const Question& q0 = r.questions[g.by_subject.at(sub)[0]];
      configs[key] = {{"task", key}, {"group", r.task}, {"subject", sub}, {"category", q0.category},
                      {"split", r.split}, {"num_fewshot", r.num_fewshot},
                      {"output_type", q0.scoring == Scoring::letters ? "multiple_choice" : "generate_until"},
                      {"metric_list", json::array({{{"metric", "acc"}, {"aggregation", "mean"}}})}};
      versions[key] = r.version;
      nshot[key] = r.num_fewshot;
    }
    for (const std::string& cat : g.categories) {
      const std::string key = r.task + "_" + slug(cat);
      json m = metrics(r, g.by_category.at(cat), " - " + cat);
      add_subject_mean(m, results, r.task, g.subjects_of.at(cat));
      results[key] = m;
      groups[key] = m;
      json subs = json::array();
      for (const std::string& sub : g.subjects_of.at(cat)) subs.push_back(r.task + "_" + slug(sub));
      group_subtasks[key] = subs;
      cats.push_back(key);
    }
    std::vector<size_t> all(r.questions.size());
    for (size_t i = 0; i < all.size(); ++i) all[i] = i;
    json m = metrics(r, all, r.task);
    add_subject_mean(m, results, r.task, g.subjects);
    m["skipped_invalid"] = r.skipped;
    results[r.task] = m;
    groups[r.task] = m;
    group_subtasks[r.task] = cats;
    versions[r.task] = r.version;
    nshot[r.task] = r.num_fewshot;
  }
  for (const PplResult& p : ppl) {
    const std::string key = "ppl_" + slug(p.source.label);
    json m = {{"alias", "perplexity " + p.source.label}, {"path", p.source.path}, {"documents", p.documents},
              {"tokens", p.tokens}, {"nats", p.nats}, {"token_perplexity,none", p.perplexity()},
              {"bits_per_token,none", p.bits_per_token()}};
    m["bits_per_char,none"] = p.chars > 0 ? json(p.bits_per_char()) : json(nullptr);
    m["bits_per_byte,none"] = p.bytes > 0 ? json(p.bits_per_byte()) : json(nullptr);
    m["chars"] = p.chars;
    m["bytes"] = p.bytes;
    results[key] = m;
    versions[key] = 1;
  }
  json res = {{"results", results}, {"groups", groups}, {"group_subtasks", group_subtasks}, {"configs", configs},
              {"versions", versions}, {"n-shot", nshot}, {"config", config}};
  if (responses) merge_sections(res, responses_results_json(*responses));
  return res;
}

void write_results(const std::string& out_dir, const std::vector<TaskRun>& runs, const std::vector<PplResult>& ppl,
                   const json& config, const ResponsesRun* responses) {
  fs::create_directories(out_dir);
  const json res = results_json(runs, ppl, config, responses);
  write_file_atomically(out_dir + "/results.json", res.dump(2, ' ', false, json::error_handler_t::replace) + "\n");

  std::string md = kResultsHeader;
  for (const TaskRun& r : runs) {
    // Samples: one line per question, in question order.
    std::string lines;
    json submission = json::object();
    for (size_t i = 0; i < r.questions.size(); ++i) {
      const Question& q = r.questions[i];
      const Response& a = r.responses[i];
      const Score& s = r.scores[i];
      json j = {{"task", q.task}, {"subject", q.subject}, {"category", q.category}, {"split", q.split},
                {"index", q.index}, {"id", q.id}, {"prompt", q.prompt}};
      if (q.scoring == Scoring::letters) {
        j["choices"] = q.labels;
        j["logprobs"] = a.logprobs;
      } else {
        j["completion"] = a.text;
      }
      j["pred"] = s.pred;
      j["gold"] = q.gold;
      j["correct"] = s.correct;
      j["points"] = q.points;
      j["earned"] = s.earned;
      if (!q.extra.empty()) j["extra"] = q.extra;
      lines += j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
      if (q.gold.empty()) submission[q.subject][q.id.empty() ? std::to_string(q.index) : q.id] = s.pred;
    }
    write_file_atomically(out_dir + "/samples_" + r.task + ".jsonl", lines);
    const bool scored = has_gold(r);
    if (r.task == "ceval" && !scored)
      write_file_atomically(out_dir + "/ceval_submission.json", submission.dump(2) + "\n");

    // results.md: the task, its categories, then its subjects.
    const Grouping g = group(r);
    md += fmt("## %s (%s, %lld-shot)\n\n", r.task.c_str(), r.split.c_str(), static_cast<long long>(r.num_fewshot));
    if (!scored) {
      md += fmt("%zu questions; no answers in this split: predictions only (samples_%s.jsonl%s).\n\n",
                r.questions.size(), r.task.c_str(), r.task == "ceval" ? ", ceval_submission.json" : "");
      continue;
    }
    md += "| group | questions | acc % | ± | subject mean % | score % |\n|---|---|---|---|---|---|\n";
    const json& R = res.at("results");
    auto row = [&](const std::string& name, const json& m) {
      md += fmt("| %s | %lld | %s | %s | %s | %s |\n", name.c_str(),
                static_cast<long long>(m.at("samples").get<int64_t>()),
                pct(m, "acc,none").c_str(), pct(m, "acc_stderr,none").c_str(), pct(m, "acc_subject_mean,none").c_str(),
                pct(m, "score,none").c_str());
    };
    row("**" + r.task + "**", R.at(r.task));
    for (const std::string& cat : g.categories) row(cat, R.at(r.task + "_" + slug(cat)));
    md += "\n| subject | category | questions | acc % | ± | score % |\n|---|---|---|---|---|---|\n";
    for (const std::string& sub : g.subjects) {
      const json& m = R.at(r.task + "_" + slug(sub));
      md += fmt("| %s | %s | %lld | %s | %s | %s |\n", sub.c_str(),
                r.questions[g.by_subject.at(sub)[0]].category.c_str(),
                static_cast<long long>(m.at("samples").get<int64_t>()), pct(m, "acc,none").c_str(),
                pct(m, "acc_stderr,none").c_str(), pct(m, "score,none").c_str());
    }
    md += "\n";
  }
  if (responses) {
    write_response_records(out_dir, *responses);
    md += responses_markdown(*responses, res);
  }
  if (!ppl.empty()) {
    md += "## Perplexity\n\n| source | documents | tokens | token perplexity | bits/token | bits/char | bits/byte |\n"
          "|---|---|---|---|---|---|---|\n";
    for (const PplResult& p : ppl)
      md += fmt("| %s (%s) | %lld | %lld | %.3f | %.4f | %s | %s |\n", p.source.label.c_str(), p.source.path.c_str(),
                static_cast<long long>(p.documents), static_cast<long long>(p.tokens), p.perplexity(),
                p.bits_per_token(), p.chars > 0 ? fmt("%.4f", p.bits_per_char()).c_str() : "-",
                p.bytes > 0 ? fmt("%.4f", p.bits_per_byte()).c_str() : "-");
    md += "\n";
  }
  write_file_atomically(out_dir + "/results.md", md);
}

void update_responses_results(const std::string& out_dir, const ResponsesRun& responses, const json& config) {
  const std::string json_path = out_dir + "/results.json", md_path = out_dir + "/results.md";
  if (!fs::exists(json_path)) return write_results(out_dir, {}, {}, config, &responses);
  json res;
  try {
    res = json::parse(read_text_file(json_path));
  } catch (const json::exception& e) {  // parse_error, or out_of_range for a number beyond double (1e400)
    fail_input(json_path + ": not valid JSON (" + e.what() + "); move it away to write a fresh one");
  }
  if (!res.is_object()) fail_input(json_path + ": not a results.json object; move it away to write a fresh one");
  // The earlier responses entries go; every other task's stay.
  for (const char* section : {"results", "groups", "group_subtasks", "configs", "versions", "n-shot"}) {
    if (!res.contains(section) || !res[section].is_object()) continue;
    json kept = json::object();
    for (const auto& [key, value] : res[section].items())
      if (key != "responses" && key.rfind("responses_", 0) != 0) kept[key] = value;
    res[section] = kept;
  }
  const json part = responses_results_json(responses);
  merge_sections(res, part);
  res["config"]["judge_only"] = config;
  write_response_records(out_dir, responses);
  write_file_atomically(json_path, res.dump(2, ' ', false, json::error_handler_t::replace) + "\n");

  // results.md: the responses section replaced where it was (up to the next "## " heading), else appended.
  std::string md = fs::exists(md_path) ? read_text_file(md_path) : std::string(kResultsHeader);
  const std::string section = responses_markdown(responses, res);
  const size_t found = md.find(std::string("\n") + kResponsesHeading);
  if (found == std::string::npos) {
    md += section;
  } else {
    const size_t at = found + 1, next = md.find("\n## ", at);
    md = md.substr(0, at) + section + (next == std::string::npos ? "" : md.substr(next + 1));
  }
  write_file_atomically(md_path, md);
}

}  // namespace polyllama
