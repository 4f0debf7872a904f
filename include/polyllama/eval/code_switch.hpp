#pragma once
// Code-switching in a model's answers, part of the study's response-quality measurement ("LLaMA Beyond English",
// Zhao et al. 2024): how often an answer that should be in the target language drifts into another script.
//
// An answer is split into runs by the Unicode Script property (core/unicode_script.hpp):
//   - a run is a maximal sequence of letters (general category L* or M*) of one script; a letter of another
//     script ends it and starts a new run;
//   - Inherited marks (combining accents U+0300.., ZWJ/ZWNJ, variation selectors) continue the run of the letter
//     before them and do not add to its length (a decomposed "é" is one letter); with no run open they are
//     ignored;
//   - everything else ends the open run: Common characters (spaces, digits, ASCII and full-width punctuation,
//     emoji, U+30FC) and non-letters of any script (Devanagari digits, Arabic-Indic digits).
// The answer code-switches when it holds a run of at least min_run letters whose script is neither one of the
// target language's scripts nor an allowed one. Only the Script property counts, not Script_Extensions.
//
// Limits, by construction: the measure sees scripts, not languages. For a Latin-script target (vi, sw, id, en)
// an answer that drifts into English is never flagged; nor is Hindi drifting into Marathi (both Devanagari) or
// Urdu into Arabic. By default a non-Latin target also allows Latin (names, terms and code are normal in Chinese
// text), so English drift in a Hindi answer is flagged only with an explicit, empty `allow`.
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace polyllama {

struct CodeSwitchConfig {
  // A language code of code_switch_languages() ("zh", "hi", ...) or a Unicode script name or ISO 15924 code
  // ("Cyrillic", "Cyrl"), matched ignoring ASCII case.
  std::string language;
  // Script names accepted besides the target's. Empty and !allow_given: the default, Latin when the target has no
  // Latin script, nothing when it has (en, id, sw, vi). Non-empty: exactly these.
  std::vector<std::string> allow;
  bool allow_given = false;  // true: `allow` exactly as given, even empty (only the target's scripts pass)
  int min_run = 2;           // letters in one foreign run before the answer counts as switched (>= 1)
  // Fails (exit 1) on an unknown language (listing the codes), an unknown or meaningless allowed script (Common,
  // Inherited, Unknown) or min_run < 1.
  void validate() const;
};

// The scripts a config resolves to (long names), for logging the resolved config.
struct CodeSwitchScripts {
  std::vector<std::string> target, allow;
};
CodeSwitchScripts resolve_code_switch_scripts(const CodeSwitchConfig& c);  // validates c
// The language codes the table knows, sorted.
std::vector<std::string> code_switch_languages();

struct CodeSwitchVerdict {
  bool switched = false;
  std::vector<std::pair<std::string, std::string>> runs;  // (script name, UTF-8 text) of the offending runs, in order
};
// Validates the config. Invalid UTF-8 bytes read as U+FFFD (Common) and so end a run.
CodeSwitchVerdict detect_code_switch(const CodeSwitchConfig& c, const std::string& utf8);

// Per (language, category): how many answers switched, and the first few of them.
struct CodeSwitchExample {
  std::string id;                                         // the instruction's id
  std::vector<std::pair<std::string, std::string>> runs;  // its first kCodeSwitchExampleRuns offending runs
};
struct CodeSwitchGroup {
  std::string language, category;
  int64_t answers = 0, switched = 0;
  std::vector<CodeSwitchExample> examples;  // the first kCodeSwitchExamples switched answers, in arrival order
  double rate() const { return answers > 0 ? static_cast<double>(switched) / static_cast<double>(answers) : 0.0; }
};
inline constexpr size_t kCodeSwitchExamples = 3;
inline constexpr size_t kCodeSwitchExampleRuns = 5;

class CodeSwitchTally {
 public:
  void add(const std::string& language, const std::string& category, const std::string& id,
           const CodeSwitchVerdict& v);
  // One group per (language, category), in order of first appearance.
  const std::vector<CodeSwitchGroup>& groups() const { return groups_; }
  // One group per language over all its categories (category "all"); examples in arrival order.
  std::vector<CodeSwitchGroup> languages() const;

 private:
  std::vector<CodeSwitchGroup> groups_;
  std::map<std::pair<std::string, std::string>, size_t> index_;
  std::vector<std::string> order_;  // languages in order of first appearance
  std::map<std::string, CodeSwitchGroup> by_language_;
};

}  // namespace polyllama
