#include "multiple_choice.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <set>

#include "polyllama/core/error.hpp"

namespace fs = std::filesystem;

namespace polyllama::mc {

const std::vector<std::string>& letters() {
  static const std::vector<std::string> kLetters = {"A", "B", "C", "D"};
  return kLetters;
}

namespace {

// pandas' default na_values (pandas/_libs/parsers.pyx STR_NA_VALUES, pandas >= 2.0).
bool is_na(const std::string& s) {
  static const std::set<std::string> kNa = {"",    "#N/A", "#N/A N/A", "#NA",  "-1.#IND", "-1.#QNAN", "-NaN",
                                            "-nan", "1.#IND", "1.#QNAN", "<NA>", "N/A",   "NA",      "NULL",
                                            "NaN",  "None", "n/a",     "nan",  "null"};
  return kNa.count(s) > 0;
}

bool is_ascii_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }

std::string lower_ascii(std::string s) {
  for (char& c : s)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return s;
}

// What a cell is to pandas' column inference.
enum class Kind { na, integer, real, boolean, text };

struct Cell {
  Kind kind = Kind::text;
  int64_t i = 0;
  double d = 0;
  bool b = false;
};

// [+-]?(D+(.D*)?|.D+)([eE][+-]?D+)? with ASCII whitespace around it (pandas' tokenizer skips it for numbers), or
// [+-]?(inf|infinity) in any case with nothing around it.
Cell classify(const std::string& raw) {
  Cell c;
  if (is_na(raw)) {
    c.kind = Kind::na;
    return c;
  }
  const std::string low = lower_ascii(raw);
  if (low == "true" || low == "false") {
    c.kind = Kind::boolean;
    c.b = low == "true";
    return c;
  }
  const std::string unsigned_low = low.empty() || (low[0] != '+' && low[0] != '-') ? low : low.substr(1);
  if (unsigned_low == "inf" || unsigned_low == "infinity") {
    c.kind = Kind::real;
    c.d = low[0] == '-' ? -HUGE_VAL : HUGE_VAL;
    return c;
  }
  size_t a = 0, z = raw.size();
  while (a < z && is_ascii_space(raw[a])) ++a;
  while (z > a && is_ascii_space(raw[z - 1])) --z;
  const std::string s = raw.substr(a, z - a);
  size_t p = s.empty() || (s[0] != '+' && s[0] != '-') ? 0 : 1;
  const size_t int_start = p;
  while (p < s.size() && is_digit(s[p])) ++p;
  const size_t int_digits = p - int_start;
  if (int_digits > 0 && p == s.size()) {  // an integer literal
    const std::string digits = (s[0] == '-' ? "-" : "") + s.substr(int_start);
    const auto r = std::from_chars(digits.data(), digits.data() + digits.size(), c.i);
    if (r.ec != std::errc() || r.ptr != digits.data() + digits.size()) return c;  // beyond int64: text
    c.kind = Kind::integer;
    c.d = std::strtod(s.c_str(), nullptr);  // its value in a column of floats
    return c;
  }
  size_t frac_digits = 0;
  if (p < s.size() && s[p] == '.') {
    ++p;
    const size_t f = p;
    while (p < s.size() && is_digit(s[p])) ++p;
    frac_digits = p - f;
  }
  if (int_digits + frac_digits == 0) return c;
  if (p < s.size() && (s[p] == 'e' || s[p] == 'E')) {
    ++p;
    if (p < s.size() && (s[p] == '+' || s[p] == '-')) ++p;
    const size_t e = p;
    while (p < s.size() && is_digit(s[p])) ++p;
    if (p == e) return c;  // "1e": no exponent digits
  }
  if (p != s.size()) return c;
  c.d = std::strtod(s.c_str(), nullptr);
  if (std::isinf(c.d)) return c;  // pandas' parser rejects an overflowing number: the column stays text
  c.kind = Kind::real;
  return c;
}

}  // namespace

std::string python_float_repr(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v < 0 ? "-inf" : "inf";
  char buf[64];
  // Without a precision, to_chars writes the shortest digits that read back to v: d[.ddd]e±XX.
  const auto r = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::scientific);
  std::string s(buf, r.ptr);
  const bool negative = s[0] == '-';
  if (negative) s.erase(0, 1);
  const size_t e = s.find('e');
  const int exp10 = std::atoi(s.c_str() + e + 1);
  std::string digits = s.substr(0, e);
  digits.erase(std::remove(digits.begin(), digits.end(), '.'), digits.end());
  std::string out;
  if (exp10 >= -4 && exp10 < 16) {  // CPython float_repr_style 'short', format code 'r'
    const int point = exp10 + 1;    // digits before the decimal point
    const int n = static_cast<int>(digits.size());
    if (point <= 0)
      out = "0." + std::string(static_cast<size_t>(-point), '0') + digits;
    else if (point >= n)
      out = digits + std::string(static_cast<size_t>(point - n), '0') + ".0";
    else
      out = digits.substr(0, static_cast<size_t>(point)) + "." + digits.substr(static_cast<size_t>(point));
  } else {
    out = digits.substr(0, 1) + (digits.size() > 1 ? "." + digits.substr(1) : "");
    const std::string mag = std::to_string(std::abs(exp10));
    out += (exp10 < 0 ? "e-" : "e+") + (mag.size() < 2 ? "0" + mag : mag);
  }
  return negative ? "-" + out : out;
}

std::vector<std::vector<std::string>> pandas_cells(const std::vector<const std::vector<std::string>*>& rows,
                                                   int64_t ncols) {
  std::vector<std::vector<std::string>> out(rows.size(), std::vector<std::string>(static_cast<size_t>(ncols)));
  std::vector<Cell> cells(rows.size());
  for (int64_t col = 0; col < ncols; ++col) {
    const size_t j = static_cast<size_t>(col);
    bool any_na = false, any_text = false, any_bool = false, any_number = false, all_int = true;
    for (size_t r = 0; r < rows.size(); ++r) {
      cells[r] = classify((*rows[r])[j]);
      switch (cells[r].kind) {
        case Kind::na: any_na = true; break;
        case Kind::text: any_text = true; break;
        case Kind::boolean: any_bool = true; break;
        case Kind::integer: any_number = true; break;
        case Kind::real:
          any_number = true;
          all_int = false;
          break;
      }
    }
    const bool text_column = any_text || (any_bool && any_number);
    for (size_t r = 0; r < rows.size(); ++r) {
      const Cell& c = cells[r];
      std::string& o = out[r][j];
      if (c.kind == Kind::na)
        o = "nan";
      else if (text_column)
        o = (*rows[r])[j];
      else if (c.kind == Kind::boolean)
        o = c.b ? "True" : "False";
      else if (all_int && !any_na)  // int64 column
        o = std::to_string(c.i);
      else if (all_int)  // integers and NaN: pandas reads int64, then casts ("-0" -> "0.0")
        o = python_float_repr(static_cast<double>(c.i));
      else  // a decimal point or an exponent somewhere: every cell is read as a float ("-0" -> "-0.0")
        o = python_float_repr(c.d);
    }
  }
  return out;
}

void Invalid::operator()(const std::string& why) const {
  if (!skip_) fail_input(why + " (--skip-invalid counts and skips such rows)");
  ++*skipped_;
  if (examples_->size() < 20) examples_->push_back(why);
}

int64_t fewshot_count(const EvalOptions& o) {
  if (o.num_fewshot < -1)
    fail_input("--num-fewshot " + std::to_string(o.num_fewshot) + ": expected 0 or more (-1: the default, 5)");
  return o.num_fewshot == -1 ? 5 : o.num_fewshot;
}

void check_split(const std::string& task, const EvalOptions& o) {
  if (o.split != "val" && o.split != "test")
    fail_input(task + ": --split " + o.split + ": expected val or test (dev holds the few-shot examples)");
}

Scoring scoring_of(const std::string& task, const EvalOptions& o) {
  if (o.method.empty() || o.method == "loglik") return Scoring::letters;
  if (o.method == "generate") return Scoring::generate;
  fail_input(task + ": --method " + o.method + ": expected loglik or generate");
}

namespace {

// One CSV file of a subject, with where each of the benchmark's fields is.
struct Table {
  std::string path;
  std::vector<csv::Row> rows;                   // data rows, header excluded (Question::index is the position)
  std::vector<std::string> malformed;           // per row: why its field count is wrong ("" when it is right)
  std::vector<std::vector<std::string>> shown;  // per row: its cells as the official code prints them
  int64_t id = -1, question = 0, answer = 5;    // column positions (id -1: none; answer -1: none)
  std::array<int64_t, 4> options = {1, 2, 3, 4};
};

std::string where(const Table& t, size_t r) { return t.path + ":" + std::to_string(t.rows[r].line); }

Table read_table(const Format& f, const std::string& path, bool need_answer, const std::string& what) {
  if (!fs::is_regular_file(path)) fail_input(path + ": no such file (" + what + ")");
  Table t;
  t.path = path;
  t.rows = csv::read_file(path);
  int64_t ncols = 6;
  std::string layout = "question,A,B,C,D,answer";
  if (f.header_row) {
    const std::string expected = "expected the header id,question,A,B,C,D,answer[,explanation]";
    if (t.rows.empty()) fail_input(path + ": the file is empty; " + expected);
    const std::vector<std::string> head = t.rows.front().fields;
    const std::string head_where = path + ":" + std::to_string(t.rows.front().line);
    t.rows.erase(t.rows.begin());
    auto column = [&](const std::string& name, bool required) -> int64_t {
      const auto it = std::find(head.begin(), head.end(), name);
      if (it != head.end()) return it - head.begin();
      if (required) fail_input(head_where + ": no column \"" + name + "\"; " + expected);
      return -1;
    };
    t.id = column("id", false);
    t.question = column("question", true);
    for (size_t k = 0; k < 4; ++k) t.options[k] = column(letters()[k], true);
    t.answer = column("answer", need_answer);
    ncols = static_cast<int64_t>(head.size());
    layout.clear();
    for (const std::string& h : head) layout += (layout.empty() ? "" : ",") + h;
  }
  t.malformed.resize(t.rows.size());
  std::vector<const std::vector<std::string>*> good;
  for (size_t r = 0; r < t.rows.size(); ++r) {
    const int64_t n = static_cast<int64_t>(t.rows[r].fields.size());
    if (n != ncols)
      t.malformed[r] = where(t, r) + ": expected " + std::to_string(ncols) + " fields (" + layout + "), found " +
                       std::to_string(n);
    else
      good.push_back(&t.rows[r].fields);
  }
  // Column types come from the well-formed rows (pandas would stop at a row with too many fields).
  const std::vector<std::vector<std::string>> cells = pandas_cells(good, ncols);
  t.shown.resize(t.rows.size());
  for (size_t r = 0, g = 0; r < t.rows.size(); ++r)
    if (t.malformed[r].empty()) t.shown[r] = cells[g++];
  return t;
}

// Why row r cannot be used ("" when it can).
std::string problem(const Table& t, size_t r, bool need_answer) {
  if (!t.malformed[r].empty()) return t.malformed[r];
  if (!need_answer) return "";
  const std::string& a = t.rows[r].fields[static_cast<size_t>(t.answer)];
  const std::vector<std::string>& l = letters();
  if (std::find(l.begin(), l.end(), a) == l.end())
    return where(t, r) + ": answer \"" + a + "\": expected one of A, B, C, D";
  return "";
}

// A question as both benchmarks write it: the question, "\n{letter}. {option}" per option, the answer cue, and
// for an example the answer and a blank line (ceval llama.py format_example; hendrycks evaluate.py
// format_example).
std::string render(const Format& f, const Table& t, size_t r, bool with_answer) {
  const std::vector<std::string>& c = t.shown[r];
  std::string s = c[static_cast<size_t>(t.question)];
  for (size_t k = 0; k < 4; ++k) s += "\n" + letters()[k] + ". " + c[static_cast<size_t>(t.options[k])];
  s += f.answer_cue;
  if (with_answer) s += f.answer_lead + t.rows[r].fields[static_cast<size_t>(t.answer)] + "\n\n";
  return s;
}

}  // namespace

std::vector<Question> load_questions(const Format& f, const std::vector<Subject>& subjects, const EvalOptions& o,
                                     bool with_gold, int64_t* skipped, std::vector<std::string>* examples) {
  const int64_t k = fewshot_count(o);
  const Scoring scoring = scoring_of(f.task, o);
  const Invalid invalid(o, skipped, examples);
  std::vector<Question> out;
  for (const Subject& s : subjects) {
    std::string prefix = s.header;
    if (k > 0) {
      const Table dev = read_table(f, s.dev_path, true, f.task + " dev file of " + s.name + ": the few-shot examples");
      int64_t taken = 0;
      for (size_t r = 0; r < dev.rows.size() && taken < k; ++r) {
        const std::string why = problem(dev, r, true);
        if (!why.empty()) {
          invalid(why);
          continue;
        }
        prefix += render(f, dev, r, true);
        ++taken;
      }
      if (taken < k)
        fail_input(dev.path + ": " + std::to_string(taken) + " usable rows, but --num-fewshot " + std::to_string(k) +
                   " takes the first " + std::to_string(k) + " as examples");
    }
    const Table t = read_table(f, s.split_path, with_gold, f.task + " " + o.split + " file of " + s.name);
    int64_t taken = 0;
    for (size_t r = 0; r < t.rows.size() && (o.limit <= 0 || taken < o.limit); ++r) {
      const std::string why = problem(t, r, with_gold);
      if (!why.empty()) {
        invalid(why);
        continue;
      }
      Question q;
      q.task = f.task;
      q.subject = s.name;
      q.category = s.category;
      q.split = o.split;
      q.where = where(t, r);
      q.index = static_cast<int64_t>(r);
      q.id = t.id >= 0 ? t.rows[r].fields[static_cast<size_t>(t.id)] : std::to_string(r);
      q.prompt = prefix + render(f, t, r, false);
      q.scoring = scoring;
      q.labels = letters();
      if (with_gold) q.gold = {t.rows[r].fields[static_cast<size_t>(t.answer)]};
      if (scoring == Scoring::generate) {
        q.stop = f.stop;
        q.max_new_tokens = f.max_new_tokens;
      }
      nlohmann::json options = nlohmann::json::array();
      for (size_t c = 0; c < 4; ++c) options.push_back(t.shown[r][static_cast<size_t>(t.options[c])]);
      q.extra["options"] = options;
      out.push_back(std::move(q));
      ++taken;
    }
  }
  return out;
}

Score MultipleChoiceTask::score(const Question& q, const Response& r) const {
  if (q.scoring == Scoring::letters) return score_letters(q, r);
  Score s;
  s.pred = extract(q, r.text);
  s.correct = !s.pred.empty() && q.gold.size() == 1 && q.gold[0] == s.pred;
  s.earned = s.correct ? q.points : 0.0;
  return s;
}

std::string unknown_names(const std::vector<std::string>& filter, const std::vector<std::string>& known) {
  std::string out;
  for (const std::string& name : filter)
    if (std::find(known.begin(), known.end(), name) == known.end()) out += (out.empty() ? "" : ", ") + name;
  return out;
}

std::vector<std::string> subjects_on_disk(const std::string& dir, const std::string& split) {
  if (!fs::is_directory(dir)) fail_input(dir + ": no such directory (the benchmark's " + split + " split)");
  const std::string suffix = "_" + split + ".csv";
  std::vector<std::string> out;
  for (const fs::directory_entry& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (name.size() > suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0)
      out.push_back(name.substr(0, name.size() - suffix.size()));
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace polyllama::mc
