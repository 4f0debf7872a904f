// Stage 2 of the responses task (the judge, code-switching) and what it reports: results.json's entries and
// results.md's section.
#include <map>

#include "http_client.hpp"
#include "polyllama/core/log.hpp"
#include "polyllama/eval/responses.hpp"
#include "polyllama/eval/results.hpp"

namespace polyllama {

using json = nlohmann::json;

void judge_responses(const JudgeConfig& cfg, ResponsesRun& run) {
  std::vector<JudgeItem> items;
  items.reserve(run.records.size());
  for (const ResponseRecord& r : run.records)
    items.push_back({r.item.id, r.item.category, judge_question(r.item), r.item.reference, r.answer.text});
  JudgeStats st;
  std::vector<JudgeResult> res = judge_answers(cfg, items, nullptr, &st);
  for (size_t i = 0; i < res.size(); ++i) {
    run.records[i].judged = true;
    run.records[i].judge = std::move(res[i]);
  }
  run.judged = true;
  run.judge_model = cfg.model;
  run.judge_url = judge::url_for_log(judge::chat_completions_url(cfg.url));
  run.judge_stats = st;
}

void detect_response_code_switching(const CodeSwitchConfig& cfg, ResponsesRun& run) {
  std::map<std::string, CodeSwitchConfig> by_language;  // validated once per language
  for (ResponseRecord& r : run.records) {
    auto it = by_language.find(r.item.language);
    if (it == by_language.end()) {
      CodeSwitchConfig c = cfg;
      c.language = r.item.language;
      c.validate();
      it = by_language.emplace(r.item.language, c).first;
    }
    r.code_switch = detect_code_switch(it->second, r.answer.text);
  }
  run.code_switch = cfg;
}

namespace {

constexpr const char* kAvg = "AVG";
constexpr size_t kExampleBytes = 40;  // of a run's text in results.md

std::string slug(const std::string& s) {
  std::string o;
  for (const char c : s)
    o += c == ' ' || c == '/' ? '_' : static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return o;
}

// A set of records (a category, all) as results.json reports it.
json metrics(const ResponsesRun& run, const std::vector<size_t>& idx, const std::string& alias) {
  std::vector<std::vector<double>> x(kJudgeCriteria + 1);  // the five criteria, then AVG, over scored answers
  int64_t scored = 0, switched = 0;
  for (size_t i : idx) {
    const ResponseRecord& r = run.records[i];
    switched += r.code_switch.switched ? 1 : 0;
    if (!r.judged || !r.judge.scored) continue;
    ++scored;
    double sum = 0;
    for (size_t c = 0; c < kJudgeCriteria; ++c) {
      x[c].push_back(r.judge.scores[c]);
      sum += r.judge.scores[c];
    }
    x[kJudgeCriteria].push_back(sum / kJudgeCriteria);
  }
  json m = {{"alias", alias},
            {"samples", idx.size()},
            {"judged", run.judged},
            {"scored", scored},
            {"unscored", static_cast<int64_t>(idx.size()) - scored}};
  for (size_t c = 0; c <= kJudgeCriteria; ++c) {
    const std::string name = c < kJudgeCriteria ? kJudgeCriterionAbbrevs[c] : kAvg;
    const MeanStderr s = mean_stderr(x[c]);
    m[name + ",none"] = s.n > 0 ? json(s.mean) : json(nullptr);  // never 0 for "no scores"
    m[name + "_stderr,none"] = s.n > 1 ? json(s.sem) : json(nullptr);
  }
  m["code_switched"] = switched;
  m["code_switch_rate,none"] = idx.empty() ? 0.0 : static_cast<double>(switched) / static_cast<double>(idx.size());
  return m;
}

json group_json(const CodeSwitchGroup& g) {
  json ex = json::array();
  for (const CodeSwitchExample& e : g.examples) {
    json runs = json::array();
    for (const auto& [script, text] : e.runs) runs.push_back({script, text});
    ex.push_back({{"id", e.id}, {"runs", runs}});
  }
  return {{"language", g.language}, {"category", g.category}, {"answers", g.answers},
          {"switched", g.switched}, {"rate", g.rate()},       {"examples", ex}};
}

// The first `limit` bytes of UTF-8 text, cut at a character boundary, on one line, without table pipes.
std::string excerpt(const std::string& s, size_t limit) {
  size_t n = std::min(limit, s.size());
  while (n < s.size() && n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  std::string o;
  for (size_t i = 0; i < n; ++i) {
    if (s[i] == '|')
      o += "\\|";
    else
      o += s[i] == '\n' ? ' ' : s[i];
  }
  return n < s.size() ? o + "…" : o;
}

std::string score_cell(const json& m, const std::string& name) {
  const json& v = m.at(name + ",none");
  if (v.is_null()) return "-";
  const json& se = m.at(name + "_stderr,none");
  return se.is_null() ? fmt("%.2f", v.get<double>()) : fmt("%.2f ± %.2f", v.get<double>(), se.get<double>());
}

bool explicit_allow(const CodeSwitchConfig& c) { return c.allow_given || !c.allow.empty(); }

std::string join(const std::vector<std::string>& v) {
  std::string o;
  for (const std::string& s : v) o += (o.empty() ? "" : ", ") + s;
  return o;
}

}  // namespace

json responses_results_json(const ResponsesRun& run) {
  std::vector<std::string> categories;  // in order of first appearance
  std::map<std::string, std::vector<size_t>> by_category;
  std::vector<size_t> all(run.records.size());
  CodeSwitchTally tally;
  for (size_t i = 0; i < run.records.size(); ++i) {
    const ResponseItem& it = run.records[i].item;
    if (!by_category.count(it.category)) categories.push_back(it.category);
    by_category[it.category].push_back(i);
    all[i] = i;
    tally.add(it.language, it.category, it.id, run.records[i].code_switch);
  }
  json results = json::object(), configs = json::object(), versions = json::object(), nshot = json::object();
  json subtasks = json::array();
  for (const std::string& cat : categories) {
    const std::string key = "responses_" + slug(cat);
    results[key] = metrics(run, by_category.at(cat), " - " + cat);
    subtasks.push_back(key);
  }
  json overall = metrics(run, all, "responses");
  json langs = json::array(), groups = json::array(), scripts = json::object();
  for (const CodeSwitchGroup& g : tally.languages()) {
    langs.push_back(group_json(g));
    CodeSwitchConfig c = run.code_switch;
    c.language = g.language;
    const CodeSwitchScripts s = resolve_code_switch_scripts(c);
    scripts[g.language] = {{"target", s.target}, {"allow", s.allow}};
  }
  for (const CodeSwitchGroup& g : tally.groups()) groups.push_back(group_json(g));
  overall["code_switching"] = {{"languages", langs}, {"categories", groups}};
  results["responses"] = overall;

  const JudgeStats& js = run.judge_stats;
  configs["responses"] = {
      {"task", "responses"},
      {"source", run.source},
      {"instructions", run.records.size()},
      {"generation", run.generation},
      {"judge", run.judged ? json{{"model", run.judge_model},
                                  {"url", run.judge_url},
                                  {"scored", js.scored},
                                  {"unscored", js.unscored},
                                  {"from_cache", js.from_cache},
                                  {"requests", js.requests},
                                  {"retries", js.retries},
                                  {"repairs", js.repairs},
                                  {"seconds", js.seconds}}
                           : json(nullptr)},
      {"code_switch", {{"min_run", run.code_switch.min_run},
                       {"allow", explicit_allow(run.code_switch) ? json(run.code_switch.allow) : json("default")},
                       {"scripts", scripts}}},
      {"metric_list", json::array({{{"metric", "ACC"}, {"aggregation", "mean"}, {"scale", "0-3"}},
                                   {{"metric", "F"}, {"aggregation", "mean"}, {"scale", "0-3"}},
                                   {{"metric", "INFO"}, {"aggregation", "mean"}, {"scale", "0-3"}},
                                   {{"metric", "LC"}, {"aggregation", "mean"}, {"scale", "0-3"}},
                                   {{"metric", "H"}, {"aggregation", "mean"}, {"scale", "0-3"}},
                                   {{"metric", "AVG"}, {"aggregation", "mean"}, {"scale", "0-3"}},
                                   {{"metric", "code_switch_rate"}, {"aggregation", "mean"}}})}};
  versions["responses"] = 1;
  nshot["responses"] = 0;
  return {{"results", results},
          {"groups", {{"responses", overall}}},
          {"group_subtasks", {{"responses", subtasks}}},
          {"configs", configs},
          {"versions", versions},
          {"n-shot", nshot}};
}

std::string responses_markdown(const ResponsesRun& run, const json& res) {
  const json& R = res.at("results");
  const json& all = R.at("responses");
  std::string md = fmt("## responses (%zu instructions, %s)\n\n", run.records.size(), run.source.c_str());
  if (run.judged)
    md += fmt("Judge %s: %lld scored, %lld unscored (left out of the means; see `judge.error` in responses.jsonl). "
              "Each criterion 0-3, mean ± standard error over the scored answers; AVG: each answer's mean of the "
              "five.\n\n",
              run.judge_model.c_str(), static_cast<long long>(all.at("scored").get<int64_t>()),
              static_cast<long long>(all.at("unscored").get<int64_t>()));
  else
    md += "Not judged (no --judge-url and --judge-model): the scores are absent. `polyllama eval --judge-only "
          "OUT/responses.jsonl --judge-url URL --judge-model NAME --out OUT` adds them.\n\n";
  md += "| category | answers | scored | ACC | F | INFO | LC | H | AVG | code-switched % |\n"
        "|---|---|---|---|---|---|---|---|---|---|\n";
  auto row = [&](const std::string& name, const json& m) {
    md += fmt("| %s | %lld | %lld", name.c_str(), static_cast<long long>(m.at("samples").get<int64_t>()),
              static_cast<long long>(m.at("scored").get<int64_t>()));
    for (size_t c = 0; c < kJudgeCriteria; ++c) md += " | " + score_cell(m, kJudgeCriterionAbbrevs[c]);
    md += " | " + score_cell(m, kAvg);
    md += fmt(" | %.1f |\n", 100.0 * m.at("code_switch_rate,none").get<double>());
  };
  for (const json& key : res.at("group_subtasks").at("responses")) {
    const json& m = R.at(key.get<std::string>());
    row(m.at("alias").get<std::string>().substr(3), m);
  }
  row("**overall**", all);

  std::vector<std::string> allow = run.code_switch.allow;
  md += fmt("\n### Code-switching\n\nAn answer code-switches when it holds a run of at least %d letters of a script "
            "that is neither its language's nor allowed (allowed: %s).\n\n",
            run.code_switch.min_run,
            explicit_allow(run.code_switch) ? (allow.empty() ? "none" : join(allow).c_str())
                                        : "the default, Latin for a language not written in it");
  md += "| language | category | answers | switched | rate % | examples |\n|---|---|---|---|---|---|\n";
  const json& cs = all.at("code_switching");
  auto cs_row = [&](const json& g) {
    std::string ex;
    for (const json& e : g.at("examples")) {
      const json& r0 = e.at("runs").at(0);
      ex += (ex.empty() ? "" : "; ") + excerpt(e.at("id").get<std::string>(), kExampleBytes) + ": " +
            r0.at(0).get<std::string>() + " \"" + excerpt(r0.at(1).get<std::string>(), kExampleBytes) + "\"";
    }
    md += fmt("| %s | %s | %lld | %lld | %.1f | %s |\n", g.at("language").get<std::string>().c_str(),
              g.at("category").get<std::string>().c_str(), static_cast<long long>(g.at("answers").get<int64_t>()),
              static_cast<long long>(g.at("switched").get<int64_t>()), 100.0 * g.at("rate").get<double>(),
              ex.c_str());
  };
  for (const json& g : cs.at("languages")) cs_row(g);
  for (const json& g : cs.at("categories")) cs_row(g);
  return md + "\n";
}

}  // namespace polyllama
