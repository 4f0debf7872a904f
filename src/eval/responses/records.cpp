// The responses task's files: the instructions it reads, the records of OUT/responses.jsonl it writes, and those
// records read back for --judge-only.
#include <algorithm>
#include <fstream>
#include <map>

#include "polyllama/core/error.hpp"
#include "polyllama/eval/responses.hpp"

namespace polyllama {

namespace {

using json = nlohmann::json;

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// A field that must be a string ("" when absent and optional); fails naming the line.
std::string text_field(const json& j, const char* key, bool required, const std::string& where, bool* present) {
  const auto it = j.find(key);
  if (present) *present = it != j.end() && !it->is_null();
  if (it == j.end() || it->is_null()) {
    if (required) fail_input(where + ": missing field \"" + key + "\" (a string)");
    return "";
  }
  if (!it->is_string()) fail_input(where + ": field \"" + key + "\" is not a string");
  return it->get<std::string>();
}

// Each non-blank line of a JSONL file as a JSON object, with its FILE:LINE.
template <typename Fn>
void for_each_record(const std::string& path, const char* what, Fn&& fn) {
  std::ifstream in(path);
  if (!in) fail_input(path + ": cannot open the " + what);
  std::string line;
  for (int64_t line_no = 1; std::getline(in, line); ++line_no) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = path + ":" + std::to_string(line_no);
    json j;
    try {
      j = json::parse(line);
    } catch (const json::exception& e) {  // parse_error, or out_of_range for a number beyond double (1e400)
      fail_input(where + ": not valid JSON (" + e.what() + ")");
    }
    if (!j.is_object()) fail_input(where + ": expected a JSON object per line");
    fn(j, where);
  }
}

// The item fields shared by the instruction file and the records: id, category, instruction, input, reference,
// language.
ResponseItem read_item(const json& j, const std::string& where, const std::string& default_language,
                       const std::vector<std::string>& languages) {
  ResponseItem it;
  it.where = where;
  const auto id = j.find("id");
  if (id == j.end() || id->is_null()) fail_input(where + ": missing field \"id\" (a string or an integer)");
  if (id->is_string())
    it.id = id->get<std::string>();
  else if (id->is_number_integer())
    it.id = std::to_string(id->get<int64_t>());
  else
    fail_input(where + ": field \"id\" is neither a string nor an integer");
  if (it.id.empty()) fail_input(where + ": field \"id\" is empty");
  it.category = text_field(j, "category", true, where, nullptr);
  if (it.category.empty()) fail_input(where + ": field \"category\" is empty");
  it.instruction = text_field(j, "instruction", true, where, nullptr);
  if (it.instruction.empty()) fail_input(where + ": field \"instruction\" is empty");
  it.input = text_field(j, "input", false, where, &it.has_input);
  it.reference = text_field(j, "reference", false, where, &it.has_reference);
  bool has_language = false;
  it.language = text_field(j, "language", false, where, &has_language);
  if (!has_language) {
    it.language = default_language;
  } else if (std::find(languages.begin(), languages.end(), lower(it.language)) == languages.end()) {
    std::string known;
    for (const std::string& l : languages) known += (known.empty() ? "" : ", ") + l;
    fail_input(where + ": \"language\": '" + it.language + "' is not a language the code-switching check knows (" +
               known + ")");
  }
  return it;
}

// Fails on an id seen before, naming both lines.
void check_unique(std::map<std::string, std::string>& seen, const ResponseItem& it) {
  const auto [pos, fresh] = seen.emplace(it.id, it.where);
  if (!fresh) fail_input(it.where + ": id \"" + it.id + "\" repeats the id of " + pos->second + " (ids are unique)");
}

}  // namespace

std::vector<ResponseItem> read_instructions(const std::string& path, const std::string& default_language,
                                            const CodeSwitchConfig& cs) {
  CodeSwitchConfig c = cs;
  c.language = default_language;
  c.validate();
  const std::vector<std::string> languages = code_switch_languages();
  std::vector<ResponseItem> out;
  std::map<std::string, std::string> seen;
  for_each_record(path, "instructions (--responses)", [&](const json& j, const std::string& where) {
    out.push_back(read_item(j, where, default_language, languages));
    check_unique(seen, out.back());
  });
  if (out.empty()) fail_input(path + ": no instructions (one JSON object per line: id, category, instruction)");
  return out;
}

std::string judge_question(const ResponseItem& item) {
  return item.input.empty() ? item.instruction : item.instruction + "\n\n" + item.input;
}

json ResponsesGenConfig::to_json() const {
  const SamplingConfig& s = gen.sampling;
  return {{"template", template_name},
          {"system", system},
          {"temperature", s.temperature},
          {"top_k", s.top_k},
          {"top_p", s.top_p},
          {"repetition_penalty", s.repetition_penalty},
          {"seed", s.seed},
          {"max_new_tokens", gen.max_new_tokens}};
}

std::string response_record_line(const ResponseRecord& r, const std::string& judge_model) {
  using ojson = nlohmann::ordered_json;  // the fields in this order: a record reads top to bottom
  const ResponseItem& it = r.item;
  const bool scored = r.judged && r.judge.scored;
  ojson j = {{"id", it.id},
             {"category", it.category},
             {"language", it.language},
             {"instruction", it.instruction},
             {"input", it.has_input ? ojson(it.input) : ojson(nullptr)},
             {"reference", it.has_reference ? ojson(it.reference) : ojson(nullptr)},
             {"prompt", r.answer.prompt},
             {"answer", r.answer.text},
             {"finish_reason", r.answer.finish_reason},
             {"prompt_tokens", r.answer.prompt_tokens},
             {"generated_tokens", r.answer.generated_tokens},
             {"generation", ojson(r.generation)},
             {"seconds", r.answer.seconds}};
  ojson scores = ojson::object();
  double sum = 0;
  for (size_t c = 0; c < kJudgeCriteria; ++c) {
    scores[kJudgeCriterionAbbrevs[c]] = scored ? ojson(r.judge.scores[c]) : ojson(nullptr);
    if (scored) sum += r.judge.scores[c];
  }
  j["scores"] = scores;
  j["AVG"] = scored ? ojson(sum / kJudgeCriteria) : ojson(nullptr);
  j["judge"] = nullptr;
  if (r.judged)
    j["judge"] = {{"model", judge_model},         {"scored", r.judge.scored},
                  {"reason", r.judge.reason},     {"reply", r.judge.reply},
                  {"repaired", r.judge.repaired}, {"latency_s", r.judge.latency_s},
                  {"cached", r.judge.cached},     {"requests", r.judge.http_requests},
                  {"error", r.judge.error}};
  j["code_switched"] = r.code_switch.switched;
  ojson runs = ojson::array();
  for (const auto& [script, text] : r.code_switch.runs) runs.push_back({script, text});
  j["code_switch_runs"] = runs;
  return j.dump(-1, ' ', false, ojson::error_handler_t::replace);
}

std::vector<ResponseRecord> read_response_records(const std::string& path, const std::string& default_language,
                                                  const CodeSwitchConfig& cs) {
  CodeSwitchConfig c = cs;
  c.language = default_language;
  c.validate();
  const std::vector<std::string> languages = code_switch_languages();
  std::vector<ResponseRecord> out;
  std::map<std::string, std::string> seen;
  for_each_record(path, "answers (--judge-only)", [&](const json& j, const std::string& where) {
    ResponseRecord r;
    r.item = read_item(j, where, default_language, languages);
    check_unique(seen, r.item);
    r.answer.text = text_field(j, "answer", true, where, nullptr);
    r.answer.prompt = text_field(j, "prompt", false, where, nullptr);
    r.answer.finish_reason = text_field(j, "finish_reason", false, where, nullptr);
    for (const auto& [key, dst] : {std::pair<const char*, int64_t*>{"prompt_tokens", &r.answer.prompt_tokens},
                                   {"generated_tokens", &r.answer.generated_tokens}}) {
      const auto f = j.find(key);
      if (f == j.end() || f->is_null()) continue;
      if (!f->is_number_integer()) fail_input(where + ": field \"" + key + "\" is not an integer");
      *dst = f->get<int64_t>();
    }
    if (j.contains("seconds") && j["seconds"].is_number()) r.answer.seconds = j["seconds"].get<double>();
    if (j.contains("generation")) {
      if (!j["generation"].is_object()) fail_input(where + ": field \"generation\" is not an object");
      r.generation = j["generation"];
    }
    out.push_back(std::move(r));
  });
  if (out.empty()) fail_input(path + ": no answers (the responses.jsonl of an earlier `eval --tasks responses`)");
  return out;
}

}  // namespace polyllama
