// The benchmarks' CSV as Python's csv module reads it (the reader C-Eval's and MMLU's own code use through
// pandas): quoted fields with commas, doubled quotes and newlines, CRLF rows, a byte-order mark, blank lines; the
// line a row starts on; text after a closing quote joins the field; an unclosed quote is an error naming FILE:LINE. Expected rows written out by hand from
// csv.reader's documented behaviour.
#include <gtest/gtest.h>

#include "../../src/eval/tasks/csv.hpp"
#include "polyllama/core/error.hpp"
#include "test_support.hpp"

using namespace polyllama;

TEST(Csv, QuotedFieldsLinesAndErrors) {
  const std::string text =
      "\xEF\xBB\xBFid,question,A\r\n0,\"a, b\",\"say \"\"hi\"\"\"\n\n1,\"two\nlines\",x\n2,,\n3,\"\"";
  const std::vector<csv::Row> rows = csv::parse(text, "t.csv");
  ASSERT_EQ(rows.size(), 5u);
  EXPECT_EQ(rows[0].fields, (std::vector<std::string>{"id", "question", "A"}));
  EXPECT_EQ(rows[1].fields, (std::vector<std::string>{"0", "a, b", "say \"hi\""}));
  EXPECT_EQ(rows[2].fields, (std::vector<std::string>{"1", "two\nlines", "x"}));
  EXPECT_EQ(rows[3].fields, (std::vector<std::string>{"2", "", ""}));
  EXPECT_EQ(rows[4].fields, (std::vector<std::string>{"3", ""}));
  EXPECT_EQ(rows[0].line, 1);
  EXPECT_EQ(rows[1].line, 2);
  EXPECT_EQ(rows[2].line, 4);
  EXPECT_EQ(rows[3].line, 6);
  const auto [code, msg] = test::error_of([] { csv::parse("a,b\n1,\"open\n2,3\n", "u.csv"); });
  EXPECT_EQ(code, kExitBadInput);
  EXPECT_NE(msg.find("u.csv:2"), std::string::npos) << msg;
  // csv.reader(['"a"b,c', 'x"y",z']) == [['ab', 'c'], ['x"y"', 'z']]
  const std::vector<csv::Row> odd = csv::parse("\"a\"b,c\nx\"y\",z\n", "v.csv");
  ASSERT_EQ(odd.size(), 2u);
  EXPECT_EQ(odd[0].fields, (std::vector<std::string>{"ab", "c"}));
  EXPECT_EQ(odd[1].fields, (std::vector<std::string>{"x\"y\"", "z"}));
}
