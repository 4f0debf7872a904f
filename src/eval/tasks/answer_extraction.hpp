#pragma once
// The answer-extraction rules of AGIEval (ruixiangcui/AGIEval src/post_process.py, src/math_equivalence.py) and
// GAOKAO-Bench (OpenLMLab/GAOKAO-Bench Bench/bench_function.py, extract_choice_answer), rewritten from their
// Python, and the few Python string semantics they rest on (str.strip, \s, \d and \w of `re` on str patterns,
// slicing by code point). Each function names the official function it follows. At the end, the little the two
// tasks' loaders share (their files, the skipping of invalid items). Private to the eval area's tasks.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "polyllama/core/error.hpp"
#include "polyllama/eval/task.hpp"

namespace polyllama::answers {

// ---- Python str semantics over UTF-8 ----
// str.isspace() and `\s` of a str pattern: ASCII whitespace, \x1c-\x1f, \x85, \xa0 and Unicode's spaces.
bool py_isspace(char32_t c);
// `\d` of a str pattern (Unicode decimal digits; the scripts the benchmarks' text uses: ASCII, fullwidth,
// Arabic-Indic, Devanagari, mathematical digits).
bool py_isdecimal(char32_t c);
// `\w` of a str pattern (str.isalnum() or '_'), approximated outside ASCII: a letter or number unless the code
// point lies in a punctuation, symbol, mark or space block (the list is in answer_extraction.cpp).
bool py_isword(char32_t c);
std::u32string to_u32(const std::string& utf8);  // invalid bytes become U+FFFD
std::string to_utf8(const std::u32string& s);
std::string py_strip(const std::string& s);  // str.strip()
int64_t py_len(const std::string& s);        // len(str): code points
std::string join(const std::vector<std::string>& parts, const std::string& sep);  // sep.join(parts)

// ---- AGIEval, src/post_process.py ----
// find_first_capital_letter: the first of A-F anywhere in the text, or "".
std::string agieval_first_capital(const std::string& s);
// try_parse_few_shot_qa_single_answer ("few-shot" setting): re.search "answer is .*?([A-G])" (English) or
// "答案是.*?([A-G])" (Chinese); nullopt without a match.
std::optional<std::string> agieval_few_shot_letter(const std::string& s, bool english);
// parse_qa_multiple_answer: re.findall "\(*([A-F])\)*", i.e. every A-F in the text, in order.
std::vector<std::string> agieval_all_letters(const std::string& s);
// remove_few_shot_prefix: what follows the last "The answer is therefore", then the last "答案是", stripped.
std::string agieval_remove_few_shot_prefix(const std::string& s);
// parse_math_answer: few-shot returns remove_few_shot_prefix's text; zero-shot takes the last \boxed{...}, else
// the last $...$ of a line, else what follows the last "=", else the last number. nullopt where Python's is None.
std::optional<std::string> agieval_math_answer(const std::string& s, bool few_shot);

// ---- AGIEval, src/math_equivalence.py (hendrycks/math's) ----
// _strip_string; nullopt where it raises (is_equiv then compares the raw strings).
std::optional<std::string> math_strip_string(const std::string& s);
// is_equiv(pred, gold): both None is true, one None false, else the stripped strings equal (the raw ones when
// stripping raises).
bool math_is_equiv(const std::optional<std::string>& pred, const std::optional<std::string>& gold);

// ---- GAOKAO-Bench, Bench/bench_function.py extract_choice_answer ----
enum class GaokaoType { single_choice, multi_question_choice, multi_choice, five_out_of_seven };
// The question types Obj_Prompt.json names; nullopt for any other.
std::optional<GaokaoType> gaokao_type(const std::string& name);
// model_answer for a completion: single_choice the last A-D; multi_question_choice the letters after each
// 【答案】 when there are exactly answer_length of them, else the first answer_length of A-Z; multi_choice one
// string of the A-D after the first 【答案】 (whitespace removed; the last 10 characters when 【答案】 is absent or
// first); five_out_of_seven the first five of A-G.
std::vector<std::string> gaokao_extract(const std::string& output, GaokaoType type, int64_t answer_length);

// ---- the loaders of both tasks ----
// The stems of the files DIR/STEM.ext (ext ".jsonl", ".json"; `except` left out), sorted, and only those
// o.subjects names when it names any. Fails (exit 1) when DIR is missing or has none, or a subject has no file;
// `what` says what belongs in DIR.
std::vector<std::string> bench_stems(const std::string& task, const std::string& dir, const std::string& ext,
                                     const std::string& except, const EvalOptions& o, const std::string& what);
// Appends make()'s question to out. A bad-input failure (a malformed item) is thrown on, or with o.skip_invalid
// counted in *skipped with its reason kept (the first 20). Returns whether a question was added.
template <typename Make>
bool add_or_skip(const EvalOptions& o, std::vector<Question>& out, int64_t* skipped,
                 std::vector<std::string>* skip_examples, Make&& make) {
  try {
    out.push_back(make());
    return true;
  } catch (const Error& e) {
    if (!o.skip_invalid || e.code() != kExitBadInput) throw;
    ++*skipped;
    if (skip_examples->size() < 20) skip_examples->push_back(e.what());
    return false;
  }
}

}  // namespace polyllama::answers
