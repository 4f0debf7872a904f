// `tokenizer stats`: code points go to the right script; per-script counts add up to the tokenizer's own
// token count (for each of two different tokenizers side by side) and the text's character count; byte-fallback
// pieces are attributed to the character they spell; and on real corpora LLaMA 2's tokenizer shows the known
// picture (Chinese in bytes, English ~1.3 tokens per word).
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "polyllama/tokenizer/stats.hpp"
#include "polyllama/tokenizer/tokenizer.hpp"
#include "test_support.hpp"

namespace polyllama {
namespace {

TEST(TokenizerStats, ClassifiesCodePoints) {
  const std::pair<uint32_t, Script> cases[] = {
      {'a', Script::latin},        {'Z', Script::latin},       {0xE9, Script::latin},      {0x4E2D, Script::han},
      {0x20000, Script::han},      {0x3042, Script::kana},     {0x30AB, Script::kana},     {0xD55C, Script::hangul},
      {0x0416, Script::cyrillic},  {0x0645, Script::arabic},   {0x0928, Script::devanagari}, {0x0E01, Script::thai},
      {0x03B1, Script::greek},     {'7', Script::digit},       {0xFF17, Script::digit},    {0x0663, Script::digit},
      {',', Script::punct},        {0x3002, Script::punct},    {0xFF0C, Script::punct},    {0x201C, Script::punct},
      {' ', Script::space},        {'\n', Script::space},      {0x3000, Script::space},    {0x1F600, Script::other},
      {0x05D0, Script::other},     {0xD7, Script::punct},      {0x0964, Script::punct}};
  for (const auto& [cp, want] : cases) EXPECT_EQ(classify_code_point(cp), want) << std::hex << cp;
  EXPECT_TRUE(script_uses_spaces(Script::latin));
  EXPECT_FALSE(script_uses_spaces(Script::han));
  EXPECT_FALSE(script_uses_spaces(Script::thai));
}

class Llama2Stats : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string model = test::shared_data("tokenizers/llama2-tokenizer.model");
    if (model.empty()) GTEST_SKIP() << "no ../shared/data/tokenizers/llama2-tokenizer.model";
    tok_ = std::make_unique<Tokenizer>(Tokenizer::from_file(model));
    stats_tok_ = std::make_unique<StatsTokenizer>(tok_->model_bytes(), model);
  }
  std::unique_ptr<Tokenizer> tok_;
  std::unique_ptr<StatsTokenizer> stats_tok_;
};

TEST_F(Llama2Stats, CountsAddUp) {
  const std::string text = "Hello world, 你好世界！龘 Привет мир 2024 こんにちは 😀\n  new line\tx";
  TextStats s;
  add_document_stats(text, {stats_tok_.get()}, s);
  int64_t tokens = 0, chars = 0, bytes = 0;
  for (const ScriptStats& sc : s.scripts) {
    tokens += sc.per_tokenizer[0].tokens;
    chars += sc.chars;
    bytes += sc.bytes;
  }
  EXPECT_EQ(tokens, static_cast<int64_t>(tok_->encode(text).size()));
  EXPECT_EQ(s.total.per_tokenizer[0].tokens, tokens);
  EXPECT_EQ(bytes, static_cast<int64_t>(text.size()));
  EXPECT_EQ(chars, s.total.chars);
  EXPECT_EQ(s.scripts[static_cast<size_t>(Script::han)].chars, 5);  // 你好世界龘
  EXPECT_EQ(s.scripts[static_cast<size_t>(Script::latin)].words, 5);  // Hello world, new line x
  EXPECT_EQ(s.scripts[static_cast<size_t>(Script::cyrillic)].words, 2);
  // 龘 and the emoji are not in LLaMA 2's vocabulary: 3 and 4 byte pieces, all counted for their script.
  EXPECT_GE(s.scripts[static_cast<size_t>(Script::han)].per_tokenizer[0].byte_tokens, 3);
  EXPECT_EQ(s.scripts[static_cast<size_t>(Script::other)].per_tokenizer[0].byte_tokens, 4);
  EXPECT_EQ(s.scripts[static_cast<size_t>(Script::other)].per_tokenizer[0].tokens, 4);
  // Two different tokenizers side by side, LLaMA 2's and the 300-piece one of tests/fixtures/hf_tiny: each
  // one's per-script tokens add up to what SentencePiece itself gives it (Tokenizer::encode, not the
  // StatsTokenizer path under test), and "vs 1st" is the ratio of those totals.
  const std::string tiny_path = test::fixture("hf_tiny/tokenizer.model");
  const Tokenizer tiny = Tokenizer::from_file(tiny_path);
  const StatsTokenizer tiny_stats(tiny.model_bytes(), tiny_path);
  TextStats two;
  add_document_stats(text, {stats_tok_.get(), &tiny_stats}, two);
  const int64_t want[2] = {static_cast<int64_t>(tok_->encode(text).size()),
                           static_cast<int64_t>(tiny.encode(text).size())};
  for (size_t t = 0; t < 2; ++t) {
    int64_t sum = 0;
    for (const ScriptStats& sc : two.scripts) sum += sc.per_tokenizer[t].tokens;
    EXPECT_EQ(sum, want[t]) << "tokenizer " << t + 1;
    EXPECT_EQ(two.total.per_tokenizer[t].tokens, want[t]) << "tokenizer " << t + 1;
  }
  char ratio[32];
  std::snprintf(ratio, sizeof ratio, "%.3fx", static_cast<double>(want[1]) / static_cast<double>(want[0]));
  ASSERT_STRNE(ratio, "1.000x") << "the two tokenizers must differ on this text for the check to mean anything";
  const std::vector<TokenizerInfo> infos = {
      {"llama2.model", tok_->checksum(), tok_->vocab_size(), stats_tok_->byte_pieces()},
      {"tiny.model", tiny.checksum(), tiny.vocab_size(), tiny_stats.byte_pieces()}};
  std::istringstream table(stats_table(infos, {two}));
  std::string line, total_row;
  while (std::getline(table, line))
    if (line.rfind("total ", 0) == 0) total_row = line;
  ASSERT_FALSE(total_row.empty()) << stats_table(infos, {two});
  EXPECT_TRUE(total_row.ends_with(std::string(" ") + ratio)) << total_row << "\nwant " << ratio;
  const auto j = nlohmann::json::parse(stats_json(infos, {two}));
  EXPECT_EQ(j["inputs"][0]["scripts"]["Han"]["tokenizers"][1]["tokens"].get<int64_t>(),
            two.scripts[static_cast<size_t>(Script::han)].per_tokenizer[1].tokens);
  EXPECT_TRUE(j["inputs"][0]["scripts"]["Han"]["tokenizers"][0]["tokens_per_word"].is_null());
  EXPECT_EQ(stats_tok_->byte_pieces(), 256);
}

TEST_F(Llama2Stats, KnownFertilityOnRealText) {
  const std::string zh = test::shared_data("corpora/zh/chinese-poetry_lunyu.txt");
  const std::string en = test::shared_data("corpora/en/tinyshakespeare_input.txt");
  if (zh.empty() || en.empty()) GTEST_SKIP() << "no ../shared/data/corpora";
  auto stats_of = [&](const std::string& path) {
    std::ifstream f(path);
    std::stringstream ss;
    ss << f.rdbuf();
    TextStats s;
    add_document_stats(ss.str(), {stats_tok_.get()}, s);
    return s;
  };
  const TextStats z = stats_of(zh), e = stats_of(en);
  const ScriptStats& han = z.scripts[static_cast<size_t>(Script::han)];
  const double han_per_char = static_cast<double>(han.per_tokenizer[0].tokens) / static_cast<double>(han.chars);
  EXPECT_GT(han_per_char, 1.2);  // LLaMA 2 spells many Chinese characters in bytes
  EXPECT_GT(han.per_tokenizer[0].byte_tokens, han.per_tokenizer[0].tokens / 3);
  const ScriptStats& latin = e.scripts[static_cast<size_t>(Script::latin)];
  const double per_word = static_cast<double>(latin.per_tokenizer[0].tokens) / static_cast<double>(latin.words);
  EXPECT_GT(per_word, 1.1);
  EXPECT_LT(per_word, 1.6);
  EXPECT_EQ(latin.per_tokenizer[0].byte_tokens, 0);
}

}  // namespace
}  // namespace polyllama
