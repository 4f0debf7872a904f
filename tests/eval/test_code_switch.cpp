// Code-switching verdicts on hand-labelled answers in Han, Latin, Arabic, Devanagari, Tamil and a few more scripts:
// Common punctuation (ASCII and full-width), digits, emoji, Inherited combining marks and joiners, invalid bytes.
// Each expected run was written out by hand from the rules in eval/code_switch.hpp and the scripts of
// Scripts.txt (checked per code point in tests/core/test_unicode_script.cpp).
#include <gtest/gtest.h>

#include "polyllama/eval/code_switch.hpp"
#include "test_support.hpp"

using namespace polyllama;

namespace {

using Runs = std::vector<std::pair<std::string, std::string>>;

CodeSwitchConfig cfg(const std::string& language, int min_run = 2) {
  CodeSwitchConfig c;
  c.language = language;
  c.min_run = min_run;
  return c;
}
CodeSwitchConfig strict(const std::string& language) {  // nothing allowed beyond the target's scripts
  CodeSwitchConfig c = cfg(language);
  c.allow_given = true;
  return c;
}
Runs runs(const CodeSwitchConfig& c, const std::string& s) { return detect_code_switch(c, s).runs; }

}  // namespace

TEST(CodeSwitch, ChineseTarget) {
  // Latin terms are allowed by default in a Chinese answer, flagged when nothing is allowed.
  const std::string pytorch = "我们使用PyTorch训练模型。";
  EXPECT_FALSE(detect_code_switch(cfg("zh"), pytorch).switched);
  EXPECT_EQ(runs(strict("zh"), pytorch), (Runs{{"Latin", "PyTorch"}}));
  // Full-width punctuation, ASCII digits and an emoji are Common: never a run, never a switch.
  const CodeSwitchVerdict plain = detect_code_switch(strict("zh"), "你好！今天是2024年1月1日😀，天气很好。");
  EXPECT_FALSE(plain.switched);
  EXPECT_TRUE(plain.runs.empty());
  // Bopomofo is one of Chinese's scripts.
  EXPECT_FALSE(detect_code_switch(strict("zh"), "注音ㄅㄆㄇ符号").switched);
  // Cyrillic: one run per word (the space is Common and ends the run).
  const CodeSwitchVerdict ru = detect_code_switch(cfg("zh"), "这是一个例子，другой язык。");
  EXPECT_TRUE(ru.switched);
  EXPECT_EQ(ru.runs, (Runs{{"Cyrillic", "другой"}, {"Cyrillic", "язык"}}));
  // One foreign letter is below min_run 2; min_run 1 counts it.
  EXPECT_FALSE(detect_code_switch(cfg("zh"), "维生素Д很重要").switched);
  EXPECT_EQ(runs(cfg("zh", 1), "维生素Д很重要"), (Runs{{"Cyrillic", "Д"}}));
  // Kana in a Chinese answer: の alone is too short; テキスト and です are runs of their own scripts.
  EXPECT_EQ(runs(cfg("zh"), "这是日本語のテキストです"), (Runs{{"Katakana", "テキスト"}, {"Hiragana", "です"}}));
  // Full-width Latin letters are Latin.
  EXPECT_EQ(runs(strict("zh"), "型号ＡＢＣ。"), (Runs{{"Latin", "ＡＢＣ"}}));
}

TEST(CodeSwitch, RunBoundaries) {
  // Two scripts back to back are two runs; a digit ends a run.
  EXPECT_EQ(runs(strict("zh"), "abcабв"), (Runs{{"Latin", "abc"}, {"Cyrillic", "абв"}}));
  EXPECT_EQ(runs(strict("zh"), "中abc123def中"), (Runs{{"Latin", "abc"}, {"Latin", "def"}}));
  // Inherited marks continue the run and are part of its text but not of its length: "é" spelt e + U+0301 twice
  // is one letter; a leading mark with no run open is ignored.
  EXPECT_FALSE(detect_code_switch(strict("zh"), "中e\u0301\u0301中").switched);
  EXPECT_EQ(runs(strict("zh"), "中ne\u0301e中"), (Runs{{"Latin", "ne\u0301e"}}));
  EXPECT_EQ(runs(strict("zh"), " \u0301abc"), (Runs{{"Latin", "abc"}}));
  // Arabic with its Inherited fathas (U+064E): one run of three letters, marks included in the text.
  EXPECT_EQ(runs(cfg("zh"), "他写了كَتَبَ。"), (Runs{{"Arabic", "كَتَبَ"}}));
  // An undecodable byte reads as U+FFFD (Common) and ends the run; it never appears in a run's text.
  EXPECT_EQ(runs(strict("zh"), "ab\xFF" "cd"), (Runs{{"Latin", "ab"}, {"Latin", "cd"}}));
  // An emoji ZWJ sequence is Common throughout.
  EXPECT_FALSE(detect_code_switch(strict("zh"), "家庭👨\u200D👩\u200D👧").switched);
  EXPECT_FALSE(detect_code_switch(strict("zh"), "").switched);
}

TEST(CodeSwitch, DevanagariTarget) {
  // Vowel signs (Mc/Mn), the virama and the anusvara are Devanagari letters; the danda and '?' are Common.
  EXPECT_FALSE(detect_code_switch(strict("hi"), "नमस्ते, आप कैसे हैं? 123 ठीक।").switched);
  // A ZWJ (Inherited) inside a conjunct continues the run.
  EXPECT_FALSE(detect_code_switch(strict("hi"), "क्\u200Dष").switched);
  // English words: allowed by default (Hindi is not Latin-script), flagged with nothing allowed.
  const std::string mixed = "मुझे machine learning पसंद है";
  EXPECT_FALSE(detect_code_switch(cfg("hi"), mixed).switched);
  EXPECT_EQ(runs(strict("hi"), mixed), (Runs{{"Latin", "machine"}, {"Latin", "learning"}}));
  // Urdu inside Hindi is Arabic script; Marathi and Nepali share Devanagari and are never told apart.
  EXPECT_EQ(runs(cfg("hi"), "यह اردو है"), (Runs{{"Arabic", "اردو"}}));
  EXPECT_FALSE(detect_code_switch(strict("mr"), "मी घरी जातो").switched);
  EXPECT_FALSE(detect_code_switch(strict("ne"), "म घर जान्छु").switched);
}

TEST(CodeSwitch, ArabicAndTamilTargets) {
  // Arabic text with harakat (Inherited) and the Arabic comma (Common).
  EXPECT_FALSE(detect_code_switch(strict("ar"), "كَتَبَ الوَلَدُ، مرحبا بكم في العالم ٢٠٢٤").switched);
  EXPECT_EQ(runs(cfg("ar"), "هذا 中文 نص"), (Runs{{"Han", "中文"}}));
  EXPECT_EQ(runs(cfg("ur"), "یہ 中文 ہے"), (Runs{{"Han", "中文"}}));
  // Tamil: pulli (virama, Mn) and vowel signs are Tamil letters.
  EXPECT_FALSE(detect_code_switch(strict("ta"), "வணக்கம் உலகம்!").switched);
  EXPECT_EQ(runs(strict("ta"), "வணக்கம் hello"), (Runs{{"Latin", "hello"}}));
  EXPECT_EQ(runs(cfg("ta"), "தமிழ் हिन्दी"), (Runs{{"Devanagari", "हिन्दी"}}));
  // The other Indic targets of the study, each with a Devanagari intrusion.
  EXPECT_EQ(runs(cfg("bn"), "বাংলা ভাষা हिन्दी"), (Runs{{"Devanagari", "हिन्दी"}}));
  EXPECT_EQ(runs(cfg("gu"), "ગુજરાતી हिन्दी"), (Runs{{"Devanagari", "हिन्दी"}}));
  EXPECT_EQ(runs(cfg("te"), "తెలుగు हिन्दी"), (Runs{{"Devanagari", "हिन्दी"}}));
  EXPECT_EQ(runs(cfg("ml"), "മലയാളം हिन्दी"), (Runs{{"Devanagari", "हिन्दी"}}));
}

TEST(CodeSwitch, LatinCjkAndScriptTargets) {
  // A Latin-script target cannot see English drift (the measure is script-based), only other scripts.
  EXPECT_FALSE(detect_code_switch(cfg("vi"), "Xin chào, this is English now").switched);
  EXPECT_EQ(runs(cfg("vi"), "Xin chào 你好"), (Runs{{"Han", "你好"}}));
  EXPECT_EQ(runs(cfg("en"), "Hello 世界!"), (Runs{{"Han", "世界"}}));
  EXPECT_EQ(runs(cfg("sw"), "Habari дня"), (Runs{{"Cyrillic", "дня"}}));
  EXPECT_FALSE(detect_code_switch(cfg("id"), "Selamat pagi").switched);
  // Japanese and Korean.
  EXPECT_FALSE(detect_code_switch(strict("ja"), "日本語のテキストです。ー").switched);
  EXPECT_EQ(runs(cfg("ko"), "안녕하세요 韓國語 テスト"), (Runs{{"Katakana", "テスト"}}));
  // A script name (or ISO code) as the target, with the default Latin allowance.
  EXPECT_FALSE(detect_code_switch(cfg("Cyrillic"), "Привет world").switched);
  EXPECT_EQ(runs(cfg("cyrl"), "Привет 世界"), (Runs{{"Han", "世界"}}));
  // An explicit allow list replaces the default.
  CodeSwitchConfig c = cfg("zh");
  c.allow = {"Cyrl"};
  EXPECT_EQ(runs(c, "привет hello"), (Runs{{"Latin", "hello"}}));
}

TEST(CodeSwitch, ResolvedScriptsAndErrors) {
  CodeSwitchScripts zh = resolve_code_switch_scripts(cfg("zh"));
  EXPECT_EQ(zh.target, (std::vector<std::string>{"Han", "Bopomofo"}));
  EXPECT_EQ(zh.allow, (std::vector<std::string>{"Latin"}));
  CodeSwitchScripts vi = resolve_code_switch_scripts(cfg("VI"));
  EXPECT_EQ(vi.target, (std::vector<std::string>{"Latin"}));
  EXPECT_TRUE(vi.allow.empty());
  EXPECT_TRUE(resolve_code_switch_scripts(strict("hi")).allow.empty());
  EXPECT_EQ(resolve_code_switch_scripts(cfg("ja")).target, (std::vector<std::string>{"Han", "Hiragana", "Katakana"}));
  EXPECT_EQ(code_switch_languages(), (std::vector<std::string>{"ar", "bn", "en", "gu", "hi", "id", "ja", "ko", "ml",
                                                               "mr", "ne", "sw", "ta", "te", "ur", "vi", "zh"}));

  auto [code, msg] = test::error_of([] { cfg("xx").validate(); });
  EXPECT_EQ(code, kExitBadInput);
  EXPECT_NE(msg.find("'xx'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("ar, bn, en"), std::string::npos) << msg;
  std::tie(code, msg) = test::error_of([] { cfg("").validate(); });
  EXPECT_EQ(code, kExitBadInput);
  std::tie(code, msg) = test::error_of([] { detect_code_switch(cfg("zh", 0), "x"); });
  EXPECT_EQ(code, kExitBadInput);
  EXPECT_NE(msg.find("min_run"), std::string::npos) << msg;
  std::tie(code, msg) = test::error_of([] {
    CodeSwitchConfig c = cfg("zh");
    c.allow = {"Klingon"};
    c.validate();
  });
  EXPECT_EQ(code, kExitBadInput);
  EXPECT_NE(msg.find("'Klingon'"), std::string::npos) << msg;
  std::tie(code, msg) = test::error_of([] {
    CodeSwitchConfig c = cfg("zh");
    c.allow = {"Common"};
    c.validate();
  });
  EXPECT_EQ(code, kExitBadInput);
  EXPECT_NE(msg.find("'Common'"), std::string::npos) << msg;
}

TEST(CodeSwitch, Tally) {
  CodeSwitchTally t;
  const CodeSwitchVerdict clean{false, {}};
  const CodeSwitchVerdict one{true, {{"Latin", "hello"}}};
  Runs many;
  for (int i = 0; i < 7; ++i) many.emplace_back("Cyrillic", "да" + std::to_string(i));
  const CodeSwitchVerdict lots{true, many};
  t.add("zh", "math", "m1", one);
  t.add("zh", "math", "m2", clean);
  t.add("zh", "poetry", "p1", lots);
  for (int i = 0; i < 4; ++i) t.add("zh", "math", "m" + std::to_string(3 + i), one);
  t.add("hi", "math", "h1", clean);

  const std::vector<CodeSwitchGroup>& g = t.groups();
  ASSERT_EQ(g.size(), 3u);
  EXPECT_EQ(g[0].language, "zh");
  EXPECT_EQ(g[0].category, "math");
  EXPECT_EQ(g[0].answers, 6);
  EXPECT_EQ(g[0].switched, 5);
  EXPECT_DOUBLE_EQ(g[0].rate(), 5.0 / 6.0);
  ASSERT_EQ(g[0].examples.size(), kCodeSwitchExamples);  // m1, m3, m4: the first three switched
  EXPECT_EQ(g[0].examples[0].id, "m1");
  EXPECT_EQ(g[0].examples[1].id, "m3");
  EXPECT_EQ(g[0].examples[2].id, "m4");
  EXPECT_EQ(g[0].examples[0].runs, (Runs{{"Latin", "hello"}}));
  EXPECT_EQ(g[1].category, "poetry");
  ASSERT_EQ(g[1].examples.size(), 1u);
  EXPECT_EQ(g[1].examples[0].runs.size(), kCodeSwitchExampleRuns);
  EXPECT_EQ(g[1].examples[0].runs[4].second, "да4");
  EXPECT_EQ(g[2].language, "hi");
  EXPECT_EQ(g[2].switched, 0);
  EXPECT_EQ(g[2].rate(), 0.0);
  EXPECT_TRUE(g[2].examples.empty());

  const std::vector<CodeSwitchGroup> langs = t.languages();
  ASSERT_EQ(langs.size(), 2u);
  EXPECT_EQ(langs[0].language, "zh");
  EXPECT_EQ(langs[0].category, "all");
  EXPECT_EQ(langs[0].answers, 7);
  EXPECT_EQ(langs[0].switched, 6);
  ASSERT_EQ(langs[0].examples.size(), 3u);  // m1, p1, m3 in arrival order
  EXPECT_EQ(langs[0].examples[1].id, "p1");
  EXPECT_EQ(langs[1].answers, 1);
  EXPECT_EQ(CodeSwitchGroup{}.rate(), 0.0);
}
