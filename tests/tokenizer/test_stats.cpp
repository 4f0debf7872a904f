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

using unicode::Script;
constexpr size_t B(Script s) { return static_cast<size_t>(script_bucket(s)); }

// Expected values from the Unicode 15.0 code charts and Scripts.txt, written by hand (the code reads the
// generated table, so these are an independent check of the generator too).
TEST(TokenizerStats, ClassifiesCodePoints) {
  const std::pair<char32_t, int> cases[] = {
      {'a', script_bucket(Script::Latin)},     {0x1EBF, script_bucket(Script::Latin)},  // Vietnamese ế
      {0x4E2D, script_bucket(Script::Han)},    {0x20000, script_bucket(Script::Han)},
      {0x3042, script_bucket(Script::Hiragana)}, {0x30AB, script_bucket(Script::Katakana)},
      {0xD55C, script_bucket(Script::Hangul)}, {0x0416, script_bucket(Script::Cyrillic)},
      {0x0645, script_bucket(Script::Arabic)}, {0x0928, script_bucket(Script::Devanagari)},
      {0x0E01, script_bucket(Script::Thai)},   {0x05D0, script_bucket(Script::Hebrew)},
      // the study's languages that fell under "other" before
      {0x0995, script_bucket(Script::Bengali)}, {0x09BE, script_bucket(Script::Bengali)},  // ক, vowel sign aa (Mc)
      {0x0A95, script_bucket(Script::Gujarati)}, {0x0B95, script_bucket(Script::Tamil)},
      {0x0C15, script_bucket(Script::Telugu)}, {0x0D15, script_bucket(Script::Malayalam)},
      // Common and Inherited letters on their own
      {0x30FC, script_bucket(Script::Common)}, {0x0301, script_bucket(Script::Inherited)},
      // digits of any script (Nd), punctuation and symbols, whitespace
      {'7', kDigitBucket}, {0xFF17, kDigitBucket}, {0x0663, kDigitBucket}, {0x09E6, kDigitBucket},
      {',', kPunctBucket}, {0x3002, kPunctBucket}, {0xFF0C, kPunctBucket}, {0x201C, kPunctBucket},
      {0xD7, kPunctBucket}, {0x0964, kPunctBucket}, {0x1F600, kPunctBucket}, {0x0378, kPunctBucket},  // unassigned
      {' ', kSpaceBucket}, {'\n', kSpaceBucket}, {0xA0, kSpaceBucket}, {0x3000, kSpaceBucket}};
  for (const auto& [cp, want] : cases)
    EXPECT_EQ(bucket_name(bucket_of(cp)), bucket_name(want)) << std::hex << static_cast<uint32_t>(cp);
  EXPECT_EQ(bucket_name(script_bucket(Script::Bengali)), "Bengali");
  EXPECT_EQ(bucket_name(kDigitBucket), "digits");
  EXPECT_TRUE(bucket_uses_spaces(script_bucket(Script::Latin)));
  EXPECT_TRUE(bucket_uses_spaces(script_bucket(Script::Tamil)));
  EXPECT_FALSE(bucket_uses_spaces(script_bucket(Script::Han)));
  EXPECT_FALSE(bucket_uses_spaces(script_bucket(Script::Thai)));
  EXPECT_FALSE(bucket_uses_spaces(kPunctBucket));
}

// Common and Inherited letters join the script of the letter before them in the same word (UAX #24's runs).
TEST(TokenizerStats, CommonAndInheritedLettersJoinTheWord) {
  TextStats s;
  // ラーメン: U+30FC is Common; "cafe\u0301": the combining acute is Inherited; "ーx": nothing before it.
  add_document_stats("\u30E9\u30FC\u30E1\u30F3 cafe\u0301 \u30FCx", {}, s);
  EXPECT_EQ(s.scripts[B(Script::Katakana)].chars, 4);
  EXPECT_EQ(s.scripts[B(Script::Latin)].chars, 6);  // c a f e U+0301 x
  EXPECT_EQ(s.scripts[B(Script::Inherited)].chars, 0);
  EXPECT_EQ(s.scripts[B(Script::Common)].chars, 1);
  EXPECT_EQ(s.scripts[B(Script::Common)].words, 1);  // the third word starts with the Common letter
  EXPECT_EQ(s.scripts[B(Script::Latin)].words, 1);
  EXPECT_EQ(s.scripts[kSpaceBucket].chars, 2);
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
  EXPECT_EQ(s.scripts[B(Script::Han)].chars, 5);  // 你好世界龘
  EXPECT_EQ(s.scripts[B(Script::Latin)].words, 5);  // Hello world, new line x
  EXPECT_EQ(s.scripts[B(Script::Cyrillic)].words, 2);
  // 龘 and the emoji are not in LLaMA 2's vocabulary: 3 and 4 byte pieces, all counted for their bucket.
  EXPECT_GE(s.scripts[B(Script::Han)].per_tokenizer[0].byte_tokens, 3);
  EXPECT_EQ(s.scripts[kPunctBucket].per_tokenizer[0].byte_tokens, 4);  // the emoji; ',' and '！' are pieces
  EXPECT_EQ(s.scripts[B(Script::Hiragana)].chars, 5);
  EXPECT_EQ(s.scripts[kDigitBucket].chars, 4);
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
            two.scripts[B(Script::Han)].per_tokenizer[1].tokens);
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
  const ScriptStats& han = z.scripts[B(Script::Han)];
  const double han_per_char = static_cast<double>(han.per_tokenizer[0].tokens) / static_cast<double>(han.chars);
  EXPECT_GT(han_per_char, 1.2);  // LLaMA 2 spells many Chinese characters in bytes
  EXPECT_GT(han.per_tokenizer[0].byte_tokens, han.per_tokenizer[0].tokens / 3);
  const ScriptStats& latin = e.scripts[B(Script::Latin)];
  const double per_word = static_cast<double>(latin.per_tokenizer[0].tokens) / static_cast<double>(latin.words);
  EXPECT_GT(per_word, 1.1);
  EXPECT_LT(per_word, 1.6);
  EXPECT_EQ(latin.per_tokenizer[0].byte_tokens, 0);
}

}  // namespace
}  // namespace polyllama
