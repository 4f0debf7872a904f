#include "polyllama/eval/code_switch.hpp"

#include <algorithm>
#include <array>
#include <optional>
#include <string_view>

#include "polyllama/core/error.hpp"
#include "polyllama/core/unicode_script.hpp"

namespace polyllama {

using unicode::is_letter;
using unicode::next_code_point;
using unicode::Script;
using unicode::script_from_name;
using unicode::script_name;
using unicode::script_of;

namespace {

// Language -> the scripts its text is written in: Chinese, Japanese, Korean, English and the study's 13
// low-resource languages. The only per-language knowledge of this file.
struct LanguageScripts {
  std::string_view code;
  std::vector<std::string_view> scripts;
};
const std::vector<LanguageScripts>& language_table() {
  static const std::vector<LanguageScripts> t = {
      {"ar", {"Arabic"}},     {"bn", {"Bengali"}},    {"en", {"Latin"}},
      {"gu", {"Gujarati"}},   {"hi", {"Devanagari"}}, {"id", {"Latin"}},
      {"ja", {"Han", "Hiragana", "Katakana"}},        {"ko", {"Hangul", "Han"}},
      {"ml", {"Malayalam"}},  {"mr", {"Devanagari"}}, {"ne", {"Devanagari"}},
      {"sw", {"Latin"}},      {"ta", {"Tamil"}},      {"te", {"Telugu"}},
      {"ur", {"Arabic"}},     {"vi", {"Latin"}},      {"zh", {"Han", "Bopomofo"}},
  };
  return t;
}

std::string lower(std::string_view s) {
  std::string o(s);
  for (char& ch : o)
    if (ch >= 'A' && ch <= 'Z') ch = static_cast<char>(ch - 'A' + 'a');
  return o;
}

std::string join(const std::vector<std::string>& v) {
  std::string o;
  for (const std::string& x : v) o += (o.empty() ? "" : ", ") + x;
  return o;
}

Script script_or_fail(std::string_view name, std::string_view what) {
  const std::optional<Script> s = script_from_name(name);
  if (!s)
    fail_input("code-switch " + std::string(what) + " script '" + std::string(name) +
               "' is not a Unicode script name; use a name of Scripts.txt or its ISO 15924 code (Latin or Latn, "
               "Cyrillic, Han, Devanagari, ...)");
  if (*s == Script::Common || *s == Script::Inherited || *s == Script::Unknown)
    fail_input("code-switch " + std::string(what) + " script '" + std::string(name) +
               "' never forms a run (Common, Inherited and Unknown characters are never counted); name a "
               "script such as Latin");
  return *s;
}

std::vector<Script> target_scripts(const std::string& language) {
  if (language.empty())
    fail_input("code-switch language is empty; give a language code (" + join(code_switch_languages()) +
               ") or a script name");
  const std::string code = lower(language);
  for (const LanguageScripts& l : language_table())
    if (l.code == code) {
      std::vector<Script> out;
      for (std::string_view n : l.scripts) out.push_back(script_or_fail(n, "target"));
      return out;
    }
  if (script_from_name(language)) return {script_or_fail(language, "target")};
  fail_input("code-switch language '" + language + "' is unknown; known codes: " + join(code_switch_languages()) +
             "; or name a Unicode script (Latin, Cyrillic, Han, ...)");
}

struct Resolved {
  std::vector<Script> target, allow;
  std::array<bool, 256> accepted{};  // by Script value: target or allowed
};

Resolved resolve(const CodeSwitchConfig& c) {
  if (c.min_run < 1)
    fail_input("code-switch min_run is " + std::to_string(c.min_run) +
               "; it must be at least 1 (letters in one foreign run)");
  Resolved r;
  r.target = target_scripts(c.language);
  if (c.allow_given || !c.allow.empty()) {
    for (const std::string& a : c.allow) r.allow.push_back(script_or_fail(a, "allowed"));
  } else if (std::find(r.target.begin(), r.target.end(), Script::Latin) == r.target.end()) {
    r.allow.push_back(Script::Latin);  // names, terms and code in Latin are normal in non-Latin text
  }
  for (Script s : r.target) r.accepted[static_cast<size_t>(s)] = true;
  for (Script s : r.allow) r.accepted[static_cast<size_t>(s)] = true;
  return r;
}

}  // namespace

void CodeSwitchConfig::validate() const { resolve(*this); }

CodeSwitchScripts resolve_code_switch_scripts(const CodeSwitchConfig& c) {
  const Resolved r = resolve(c);
  CodeSwitchScripts out;
  for (Script s : r.target) out.target.emplace_back(script_name(s));
  for (Script s : r.allow) out.allow.emplace_back(script_name(s));
  return out;
}

std::vector<std::string> code_switch_languages() {
  std::vector<std::string> out;
  for (const LanguageScripts& l : language_table()) out.emplace_back(l.code);
  std::sort(out.begin(), out.end());
  return out;
}

CodeSwitchVerdict detect_code_switch(const CodeSwitchConfig& c, const std::string& utf8) {
  const Resolved r = resolve(c);
  CodeSwitchVerdict v;
  // The open run: its script, its bytes [begin, end) and its letters (Inherited marks excluded).
  bool open = false;
  Script script = Script::Unknown;
  size_t begin = 0, end = 0;
  int letters = 0;
  const auto close = [&] {
    if (open && letters >= c.min_run && !r.accepted[static_cast<size_t>(script)])
      v.runs.emplace_back(std::string(script_name(script)), utf8.substr(begin, end - begin));
    open = false;
  };
  size_t pos = 0;
  while (pos < utf8.size()) {
    const size_t at = pos;
    const char32_t cp = next_code_point(utf8, &pos);
    const Script s = script_of(cp);
    if (!is_letter(cp) || s == Script::Common || s == Script::Unknown) {
      close();
    } else if (s == Script::Inherited) {
      if (open) end = pos;  // a mark continues the letter before it
    } else if (open && s == script) {
      end = pos, ++letters;
    } else {
      close();
      open = true, script = s, begin = at, end = pos, letters = 1;
    }
  }
  close();
  v.switched = !v.runs.empty();
  return v;
}

void CodeSwitchTally::add(const std::string& language, const std::string& category, const std::string& id,
                          const CodeSwitchVerdict& v) {
  const auto count = [&](CodeSwitchGroup& g) {
    ++g.answers;
    if (!v.switched) return;
    ++g.switched;
    if (g.examples.size() >= kCodeSwitchExamples) return;
    CodeSwitchExample e{id, {}};
    for (size_t i = 0; i < v.runs.size() && i < kCodeSwitchExampleRuns; ++i) e.runs.push_back(v.runs[i]);
    g.examples.push_back(std::move(e));
  };
  const auto key = std::make_pair(language, category);
  auto it = index_.find(key);
  if (it == index_.end()) {
    it = index_.emplace(key, groups_.size()).first;
    groups_.push_back(CodeSwitchGroup{language, category, 0, 0, {}});
  }
  count(groups_[it->second]);
  auto lang = by_language_.find(language);
  if (lang == by_language_.end()) {
    order_.push_back(language);
    lang = by_language_.emplace(language, CodeSwitchGroup{language, "all", 0, 0, {}}).first;
  }
  count(lang->second);
}

std::vector<CodeSwitchGroup> CodeSwitchTally::languages() const {
  std::vector<CodeSwitchGroup> out;
  for (const std::string& l : order_) out.push_back(by_language_.at(l));
  return out;
}

}  // namespace polyllama
