#include "answer_extraction.hpp"

#include <algorithm>
#include <filesystem>

namespace polyllama::answers {

// ---- Python str semantics over UTF-8 ----

namespace {

// The code point at byte i and its length in bytes; an invalid or truncated sequence is one byte of U+FFFD.
std::pair<char32_t, size_t> decode_at(const std::string& s, size_t i) {
  const auto b = static_cast<unsigned char>(s[i]);
  if (b < 0x80) return {b, 1};
  size_t len = 0;
  char32_t cp = 0;
  if ((b & 0xE0) == 0xC0) {
    len = 2;
    cp = b & 0x1F;
  } else if ((b & 0xF0) == 0xE0) {
    len = 3;
    cp = b & 0x0F;
  } else if ((b & 0xF8) == 0xF0) {
    len = 4;
    cp = b & 0x07;
  } else {
    return {0xFFFD, 1};
  }
  if (i + len > s.size()) return {0xFFFD, 1};
  for (size_t k = 1; k < len; ++k) {
    const auto c = static_cast<unsigned char>(s[i + k]);
    if ((c & 0xC0) != 0x80) return {0xFFFD, 1};
    cp = (cp << 6) | (c & 0x3F);
  }
  return {cp, len};
}

bool in(char32_t c, char32_t lo, char32_t hi) { return c >= lo && c <= hi; }

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  size_t pos = 0;
  while ((pos = s.find(from, pos)) != std::string::npos) {
    s.replace(pos, from.size(), to);
    pos += to.size();
  }
  return s;
}

// str.split(sep) with a non-empty separator: every piece, empty ones included.
std::vector<std::string> split(const std::string& s, const std::string& sep) {
  std::vector<std::string> out;
  size_t start = 0, pos = 0;
  while ((pos = s.find(sep, start)) != std::string::npos) {
    out.push_back(s.substr(start, pos - start));
    start = pos + sep.size();
  }
  out.push_back(s.substr(start));
  return out;
}

bool contains(const std::string& s, const std::string& what) { return s.find(what) != std::string::npos; }

// s.split(sep)[-1]: what follows the last separator (the whole string without one).
std::string after_last(const std::string& s, const std::string& sep) {
  const size_t pos = s.rfind(sep);
  return pos == std::string::npos ? s : s.substr(pos + sep.size());
}

std::string lstrip_spaces(const std::string& s) { return s.substr(std::min(s.find_first_not_of(' '), s.size())); }

// The first code point of s as UTF-8 and the rest; s is not empty.
std::pair<std::string, std::string> first_char(const std::string& s) {
  const size_t len = decode_at(s, 0).second;
  return {s.substr(0, len), s.substr(len)};
}

}  // namespace

bool py_isspace(char32_t c) {
  return in(c, 0x09, 0x0D) || in(c, 0x1C, 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 || in(c, 0x2000, 0x200A) ||
         c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

bool py_isdecimal(char32_t c) {
  return in(c, '0', '9') || in(c, 0x660, 0x669) || in(c, 0x6F0, 0x6F9) || in(c, 0x966, 0x96F) ||
         in(c, 0xFF10, 0xFF19) || in(c, 0x1D7CE, 0x1D7FF);
}

bool py_isword(char32_t c) {
  if (c < 0x80) return in(c, '0', '9') || in(c, 'A', 'Z') || in(c, 'a', 'z') || c == '_';
  if (c <= 0xBF)  // Latin-1 symbols; ª ² ³ µ ¹ º ¼ ½ ¾ count as letters or numbers in Python
    return c == 0xAA || c == 0xB2 || c == 0xB3 || c == 0xB5 || c == 0xB9 || c == 0xBA || in(c, 0xBC, 0xBE);
  if (c == 0xD7 || c == 0xF7) return false;                         // × ÷
  if (in(c, 0x300, 0x36F) || in(c, 0x2000, 0x206F)) return false;   // combining marks, general punctuation
  if (in(c, 0x20A0, 0x214F) || in(c, 0x2190, 0x245F)) return false;  // currency, letterlike (℃), arrows, maths
  if (in(c, 0x2500, 0x2775) || in(c, 0x2794, 0x2BFF)) return false;  // box drawing, shapes, dingbats (not ❶..)
  if (in(c, 0x3000, 0x303F))  // CJK punctuation, less 々〆〇, the Hangzhou numerals and the kana marks
    return in(c, 0x3005, 0x3007) || in(c, 0x3021, 0x3029) || in(c, 0x3031, 0x3035) || in(c, 0x3038, 0x303C);
  if (in(c, 0xFE10, 0xFE1F) || in(c, 0xFE30, 0xFE6F)) return false;  // vertical and small forms
  if (in(c, 0xFF01, 0xFF0F) || in(c, 0xFF1A, 0xFF20) || in(c, 0xFF3B, 0xFF40) || in(c, 0xFF5B, 0xFF65))
    return false;  // fullwidth punctuation
  if (in(c, 0xFFE0, 0xFFFF) || in(c, 0x1F000, 0x1FAFF)) return false;  // fullwidth signs, specials, emoji
  return true;
}

std::u32string to_u32(const std::string& utf8) {
  std::u32string out;
  for (size_t i = 0; i < utf8.size();) {
    const auto [cp, len] = decode_at(utf8, i);
    out.push_back(cp);
    i += len;
  }
  return out;
}

std::string to_utf8(const std::u32string& s) {
  std::string out;
  for (const char32_t c : s) {
    if (c < 0x80) {
      out += static_cast<char>(c);
    } else if (c < 0x800) {
      out += static_cast<char>(0xC0 | (c >> 6));
      out += static_cast<char>(0x80 | (c & 0x3F));
    } else if (c < 0x10000) {
      out += static_cast<char>(0xE0 | (c >> 12));
      out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (c & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (c >> 18));
      out += static_cast<char>(0x80 | ((c >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (c & 0x3F));
    }
  }
  return out;
}

std::string py_strip(const std::string& s) {
  size_t begin = s.size(), end = 0;  // bytes of the first and past the last non-space code point
  for (size_t i = 0; i < s.size();) {
    const auto [cp, len] = decode_at(s, i);
    if (!py_isspace(cp)) {
      begin = std::min(begin, i);
      end = i + len;
    }
    i += len;
  }
  return begin >= end ? std::string() : s.substr(begin, end - begin);
}

int64_t py_len(const std::string& s) {
  int64_t n = 0;
  for (size_t i = 0; i < s.size(); i += decode_at(s, i).second) ++n;
  return n;
}

std::string join(const std::vector<std::string>& parts, const std::string& sep) {
  std::string out;
  for (size_t k = 0; k < parts.size(); ++k) {
    if (k > 0) out += sep;
    out += parts[k];
  }
  return out;
}

// ---- AGIEval, src/post_process.py ----

std::string agieval_first_capital(const std::string& s) {
  for (const char c : s)
    if (c >= 'A' && c <= 'F') return std::string(1, c);
  return "";
}

std::optional<std::string> agieval_few_shot_letter(const std::string& s, bool english) {
  const std::string lead = english ? "answer is " : "答案是";
  // re.search tries each start in turn; `.*?` then crosses no newline before the first A-G.
  for (size_t p = s.find(lead); p != std::string::npos; p = s.find(lead, p + 1))
    for (size_t i = p + lead.size(); i < s.size() && s[i] != '\n'; ++i)
      if (s[i] >= 'A' && s[i] <= 'G') return std::string(1, s[i]);
  return std::nullopt;
}

std::vector<std::string> agieval_all_letters(const std::string& s) {
  std::vector<std::string> out;
  for (const char c : s)
    if (c >= 'A' && c <= 'F') out.emplace_back(1, c);
  return out;
}

std::string agieval_remove_few_shot_prefix(const std::string& s) {
  std::string out = s;
  for (const std::string prefix : {"The answer is therefore", "答案是"}) {
    // startswith, else the last occurrence: either way the text after it, stripped.
    const size_t pos = out.compare(0, prefix.size(), prefix) == 0 ? 0 : out.rfind(prefix);
    if (pos != std::string::npos) out = py_strip(out.substr(pos + prefix.size()));
  }
  return out;
}

namespace {

// last_boxed_only_string: from the last \boxed (else \fbox) to the brace that closes the first one opened.
std::optional<std::string> last_boxed_only(const std::string& s) {
  size_t idx = s.rfind("\\boxed");
  if (idx == std::string::npos) idx = s.rfind("\\fbox");
  if (idx == std::string::npos) return std::nullopt;
  int64_t open = 0;
  for (size_t i = idx; i < s.size(); ++i) {
    if (s[i] == '{') ++open;
    if (s[i] == '}' && --open == 0) return s.substr(idx, i + 1 - idx);
  }
  return std::nullopt;
}

// remove_boxed: the inside of "\boxed{...}" (after its last "=" when it has one); None otherwise.
std::optional<std::string> remove_boxed(const std::optional<std::string>& s) {
  const std::string left = "\\boxed{";
  if (!s || s->compare(0, left.size(), left) != 0 || s->back() != '}') return std::nullopt;
  const std::string answer = s->substr(left.size(), s->size() - left.size() - 1);
  return contains(answer, "=") ? lstrip_spaces(after_last(answer, "=")) : answer;
}

// get_answer_with_dollar_sign: re.findall "\$(.*)\$" (greedy within a line), the last match, after its last "=".
std::optional<std::string> answer_with_dollar_sign(const std::string& s) {
  std::optional<std::string> last;
  for (size_t p = 0; p < s.size();) {
    if (s[p] == '$') {
      const size_t eol = std::min(s.find('\n', p), s.size());
      const size_t t = s.rfind('$', eol - 1);
      if (t != std::string::npos && t > p) {
        last = s.substr(p + 1, t - p - 1);
        p = t + 1;
        continue;
      }
    }
    ++p;
  }
  if (last && contains(*last, "=")) last = lstrip_spaces(after_last(*last, "="));
  return last;
}

// get_answer_without_dollar_sign: after the last "=" (spaces before and dots after removed, cut at a literal
// backslash-n), else the last match of "(?:\$)?\d+(?:\.\d+)?(?![\w\d])".
std::optional<std::string> answer_without_dollar_sign(const std::string& s) {
  if (contains(s, "=")) {
    std::string m = lstrip_spaces(after_last(s, "="));
    m.erase(m.find_last_not_of('.') + 1);
    const size_t bn = m.find("\\n");
    return bn == std::string::npos ? m : m.substr(0, bn);
  }
  const std::u32string u = to_u32(s);
  const size_t n = u.size();
  const auto digits_from = [&](size_t i) {
    size_t j = i;
    while (j < n && py_isdecimal(u[j])) ++j;
    return j;
  };
  const auto free_at = [&](size_t i) { return i >= n || !(py_isword(u[i]) || py_isdecimal(u[i])); };
  // A shorter \d+ or fraction would leave a digit next, which the lookahead refuses: only the longest runs can
  // match, so trying the optional "$" then the optional fraction, longest first, is the regex's backtracking.
  const auto match_at = [&](size_t p) -> size_t {  // end of the match at p, or 0
    for (const bool dollar : {true, false}) {
      if (dollar && u[p] != U'$') continue;
      const size_t q = p + (dollar ? 1 : 0), r = digits_from(q);
      if (r == q) continue;
      if (r + 1 < n && u[r] == U'.' && py_isdecimal(u[r + 1]) && free_at(digits_from(r + 1)))
        return digits_from(r + 1);
      if (free_at(r)) return r;
    }
    return 0;
  };
  std::optional<std::string> last;
  for (size_t p = 0; p < n;) {
    const size_t e = match_at(p);
    if (e == 0) {
      ++p;
      continue;
    }
    last = to_utf8(u.substr(p, e - p));
    p = e;
  }
  return last;
}

}  // namespace

std::optional<std::string> agieval_math_answer(const std::string& s, bool few_shot) {
  const std::string raw = agieval_remove_few_shot_prefix(s);
  if (few_shot) return raw;
  if (contains(raw, "\\boxed")) return remove_boxed(last_boxed_only(raw));
  std::optional<std::string> answer = answer_with_dollar_sign(raw);
  if (!answer || answer->empty()) answer = answer_without_dollar_sign(raw);  // Python's `if not answer`
  return answer;
}

// ---- AGIEval, src/math_equivalence.py ----

namespace {

// _fix_fracs: \frac12 -> \frac{1}{2}; nullopt where Python raises IndexError (nothing after a \frac).
std::optional<std::string> fix_fracs(const std::string& s) {
  const std::vector<std::string> parts = split(s, "\\frac");
  std::string out = parts[0];
  for (size_t k = 1; k < parts.size(); ++k) {
    const std::string& sub = parts[k];
    out += "\\frac";
    if (sub.empty()) return std::nullopt;
    if (sub[0] == '{') {
      out += sub;
      continue;
    }
    if (py_len(sub) < 2) return s;  // the failed `assert len(substr) >= 2` returns the argument unchanged
    const auto [a, rest] = first_char(sub);
    const auto [b, post] = first_char(rest);
    out += b != "{" ? "{" + a + "}{" + b + "}" + post : "{" + a + "}" + b + post;
  }
  return out;
}

// _fix_a_slash_b: "a/b" of two integers written as str(int) writes them becomes \frac{a}{b}.
std::string fix_a_slash_b(const std::string& s) {
  const std::vector<std::string> parts = split(s, "/");
  if (parts.size() != 2) return s;
  const auto canonical_int = [](const std::string& x) {  // "{}".format(int(x)) == x
    const std::string d = !x.empty() && x[0] == '-' ? x.substr(1) : x;
    if (d.empty() || d.find_first_not_of("0123456789") != std::string::npos) return false;
    return d == "0" ? x == "0" : d[0] != '0';
  };
  if (!canonical_int(parts[0]) || !canonical_int(parts[1])) return s;
  return "\\frac{" + parts[0] + "}{" + parts[1] + "}";
}

// _fix_sqrt: \sqrt3 -> \sqrt{3}; nullopt where Python raises IndexError (nothing after a \sqrt).
std::optional<std::string> fix_sqrt(const std::string& s) {
  if (!contains(s, "\\sqrt")) return s;
  const std::vector<std::string> parts = split(s, "\\sqrt");
  std::string out = parts[0];
  for (size_t k = 1; k < parts.size(); ++k) {
    if (parts[k].empty()) return std::nullopt;
    const auto [a, rest] = first_char(parts[k]);
    out += a != "{" ? "\\sqrt{" + a + "}" + rest : "\\sqrt" + parts[k];
  }
  return out;
}

}  // namespace

std::optional<std::string> math_strip_string(const std::string& str) {
  std::string s = replace_all(str, "\n", "");
  s = replace_all(s, "\\!", "");
  s = replace_all(s, "\\\\", "\\");
  s = replace_all(replace_all(s, "tfrac", "frac"), "dfrac", "frac");
  s = replace_all(replace_all(s, "\\left", ""), "\\right", "");
  s = replace_all(replace_all(s, "^{\\circ}", ""), "^\\circ", "");
  s = replace_all(s, "\\$", "");
  if (contains(s, "\\text{ ")) {  // _remove_right_units asserts a single unit
    const std::vector<std::string> parts = split(s, "\\text{ ");
    if (parts.size() != 2) return std::nullopt;
    s = parts[0];
  }
  s = replace_all(s, "\\%", "");
  s = replace_all(replace_all(s, " .", " 0."), "{.", "{0.");
  if (s.empty()) return s;
  if (s[0] == '.') s = "0" + s;
  const std::vector<std::string> eq = split(s, "=");
  if (eq.size() == 2 && py_len(eq[0]) <= 2) s = eq[1];
  std::optional<std::string> t = fix_sqrt(s);
  if (!t) return std::nullopt;
  t = fix_fracs(replace_all(*t, " ", ""));
  if (!t) return std::nullopt;
  if (*t == "0.5") t = "\\frac{1}{2}";
  return fix_a_slash_b(*t);
}

bool math_is_equiv(const std::optional<std::string>& pred, const std::optional<std::string>& gold) {
  if (!pred && !gold) return true;
  if (!pred || !gold) return false;
  const std::optional<std::string> a = math_strip_string(*pred), b = math_strip_string(*gold);
  if (!a || !b) return *pred == *gold;
  return *a == *b;
}

// ---- GAOKAO-Bench, Bench/bench_function.py ----

std::optional<GaokaoType> gaokao_type(const std::string& name) {
  if (name == "single_choice") return GaokaoType::single_choice;
  if (name == "multi_question_choice") return GaokaoType::multi_question_choice;
  if (name == "multi_choice") return GaokaoType::multi_choice;
  if (name == "five_out_of_seven") return GaokaoType::five_out_of_seven;
  return std::nullopt;
}

namespace {

// re.findall of one character class over the text, in order.
std::vector<std::string> letters_in(const std::u32string& s, char32_t lo, char32_t hi) {
  std::vector<std::string> out;
  for (const char32_t c : s)
    if (c >= lo && c <= hi) out.emplace_back(1, static_cast<char>(c));
  return out;
}

const std::u32string kAnswerTag = U"【答案】";

}  // namespace

std::vector<std::string> gaokao_extract(const std::string& output, GaokaoType type, int64_t answer_length) {
  const std::u32string u = to_u32(output);
  std::vector<std::string> out;
  switch (type) {
    case GaokaoType::single_choice: {  // re.findall(r'[A-D]', model_output[::-1]) -> the last A-D
      const std::vector<std::string> all = letters_in(u, U'A', U'D');
      if (!all.empty()) out.push_back(all.back());
      break;
    }
    case GaokaoType::multi_question_choice: {
      // re.findall(r"【答案】\s*[:：]*\s*[A-Z]"): the three classes are disjoint, so greedy skipping is exact.
      std::vector<std::string> tagged;
      for (size_t p = u.find(kAnswerTag); p != std::u32string::npos; p = u.find(kAnswerTag, p + 1)) {
        size_t q = p + kAnswerTag.size();
        while (q < u.size() && py_isspace(u[q])) ++q;
        while (q < u.size() && (u[q] == U':' || u[q] == U'：')) ++q;
        while (q < u.size() && py_isspace(u[q])) ++q;
        if (q < u.size() && u[q] >= U'A' && u[q] <= U'Z') {
          tagged.emplace_back(1, static_cast<char>(u[q]));
          p = q;  // findall goes on after the match
        }
      }
      if (static_cast<int64_t>(tagged.size()) == answer_length) return tagged;
      const std::vector<std::string> all = letters_in(u, U'A', U'Z');
      const size_t n = std::min(all.size(), static_cast<size_t>(std::max<int64_t>(answer_length, 0)));
      out.assign(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(n));
      break;
    }
    case GaokaoType::multi_choice: {
      std::u32string content;  // re.sub(r'\s+', '', model_output)
      for (const char32_t c : u)
        if (!py_isspace(c)) content += c;
      const size_t at = content.find(kAnswerTag);
      // `if answer_index > 0`: a tag at the very start counts as absent, as in the official code.
      const std::u32string tail = at != std::u32string::npos && at > 0 ? content.substr(at)
                                  : content.size() > 10               ? content.substr(content.size() - 10)
                                                                      : content;
      std::string answer;
      for (const std::string& l : letters_in(tail, U'A', U'D')) answer += l;
      if (!answer.empty()) out.push_back(answer);
      break;
    }
    case GaokaoType::five_out_of_seven: {
      const std::vector<std::string> all = letters_in(u, U'A', U'G');
      out.assign(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(std::min<size_t>(5, all.size())));
      break;
    }
  }
  return out;
}

// ---- the loaders of both tasks ----

std::vector<std::string> bench_stems(const std::string& task, const std::string& dir, const std::string& ext,
                                     const std::string& except, const EvalOptions& o, const std::string& what) {
  namespace fs = std::filesystem;
  if (!fs::is_directory(dir)) fail_input(dir + ": no such directory (it should hold " + what + ")");
  std::vector<std::string> stems;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_regular_file() && e.path().extension() == ext && e.path().filename() != except)
      stems.push_back(e.path().stem().string());
  std::sort(stems.begin(), stems.end());
  if (stems.empty()) fail_input(dir + ": no <name>" + ext + " files (it should hold " + what + ")");
  for (const std::string& s : o.subjects)
    if (std::find(stems.begin(), stems.end(), s) == stems.end())
      fail_input(task + ": --subjects " + s + ": no " + dir + "/" + s + ext);
  if (o.subjects.empty()) return stems;
  std::vector<std::string> kept;
  for (const std::string& s : stems)
    if (std::find(o.subjects.begin(), o.subjects.end(), s) != o.subjects.end()) kept.push_back(s);
  return kept;
}

}  // namespace polyllama::answers
