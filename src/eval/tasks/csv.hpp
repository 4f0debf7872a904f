#pragma once
// CSV as the benchmarks release it (Python's csv module / pandas.read_csv with default settings): comma-separated,
// fields optionally quoted with ", a doubled "" inside quotes is one ", quoted fields may hold commas and newlines,
// rows end in \n or \r\n, a UTF-8 byte-order mark at the start is dropped; text after a closing quote joins the
// field ("a"b is ab) and a quote inside an unquoted field is kept, as csv.reader does. Private to the eval area's
// tasks.
#include <cstdint>
#include <string>
#include <vector>

namespace polyllama::csv {

struct Row {
  std::vector<std::string> fields;
  int64_t line = 0;  // 1-based line of the file where the row starts (for FILE:LINE messages)
};

// Every row of the file, blank lines skipped. Fails (exit 1) naming the file when it cannot be read, and
// FILE:LINE for a quote that is never closed.
std::vector<Row> read_file(const std::string& path);
std::vector<Row> parse(const std::string& text, const std::string& path);

}  // namespace polyllama::csv
