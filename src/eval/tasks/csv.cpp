#include "csv.hpp"

#include <fstream>
#include <sstream>

#include "polyllama/core/error.hpp"

namespace polyllama::csv {

std::vector<Row> parse(const std::string& text, const std::string& path) {
  std::vector<Row> rows;
  size_t i = text.compare(0, 3, "\xEF\xBB\xBF") == 0 ? 3 : 0;
  int64_t line = 1;
  const size_t n = text.size();
  while (i < n) {
    Row row;
    row.line = line;
    std::string field;
    bool quoted = false, after_quote = false, any = false;  // after_quote: a quote may not reopen
    for (;;) {
      if (i >= n) {
        if (quoted) fail_input(path + ":" + std::to_string(row.line) + ": a quoted field is never closed");
        break;
      }
      const char c = text[i];
      if (quoted) {
        if (c == '"') {
          if (i + 1 < n && text[i + 1] == '"') {
            field += '"';
            i += 2;
            continue;
          }
          quoted = false;
          after_quote = true;
          ++i;
          continue;
        }
        if (c == '\n') ++line;
        field += c;
        ++i;
        continue;
      }
      if (c == ',') {
        row.fields.push_back(std::move(field));
        field.clear();
        after_quote = false;
        any = true;
        ++i;
        continue;
      }
      if (c == '\n' || (c == '\r' && i + 1 < n && text[i + 1] == '\n')) {
        i += c == '\r' ? 2 : 1;
        ++line;
        break;
      }
      if (c == '"' && field.empty() && !after_quote) {
        quoted = true;
        any = true;
        ++i;
        continue;
      }
      field += c;  // after a closing quote too: Python's csv joins the pieces ("a"b is ab)
      any = true;
      ++i;
    }
    if (!any && field.empty()) continue;  // a blank line
    row.fields.push_back(std::move(field));
    rows.push_back(std::move(row));
  }
  return rows;
}

std::vector<Row> read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail_input(path + ": cannot open the file");
  std::stringstream ss;
  ss << f.rdbuf();
  return parse(ss.str(), path);
}

}  // namespace polyllama::csv
