// The Unicode script table and the lenient UTF-8 decoder. Expected scripts were looked up independently: each code
// point's name and general category from Python's unicodedata, its script from the Scripts.txt line that covers it
// (quoted beside each check). The decoder's expectations are Python's bytes.decode("utf-8", "replace"), which
// substitutes maximal subparts as Unicode chapter 3 (table 3-8) recommends. Where Debian's unicode-data is
// installed, every code point is also checked against Scripts.txt and DerivedGeneralCategory.txt read here.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <vector>

#include "polyllama/core/unicode_script.hpp"

using namespace polyllama::unicode;

TEST(UnicodeScript, KnownCodePoints) {
  EXPECT_EQ(script_of(0x4E2D), Script::Han);         // 4E00..9FFF ; Han # Lo CJK UNIFIED IDEOGRAPH
  EXPECT_EQ(script_of(0x20000), Script::Han);        // 20000..2A6DF ; Han # Lo
  EXPECT_EQ(script_of(0x3007), Script::Han);         // 3007 ; Han # Nl IDEOGRAPHIC NUMBER ZERO
  EXPECT_EQ(script_of(0x0627), Script::Arabic);      // 0620..063F ; Arabic # Lo ARABIC LETTER ALEF
  EXPECT_EQ(script_of(0x0660), Script::Arabic);      // 0660..0669 ; Arabic # Nd ARABIC-INDIC DIGIT ZERO
  EXPECT_EQ(script_of(0x060C), Script::Common);      // 060C ; Common # Po ARABIC COMMA
  EXPECT_EQ(script_of(0x064E), Script::Inherited);   // 064B..0655 ; Inherited # Mn ARABIC FATHA
  EXPECT_EQ(script_of(0x0915), Script::Devanagari);  // 0904..0939 ; Devanagari # Lo DEVANAGARI LETTER KA
  EXPECT_EQ(script_of(0x093F), Script::Devanagari);  // 093E..0940 ; Devanagari # Mc VOWEL SIGN I
  EXPECT_EQ(script_of(0x0964), Script::Common);      // 0964..0965 ; Common # Po DEVANAGARI DANDA
  EXPECT_EQ(script_of(0x0B95), Script::Tamil);       // 0B92..0B95 ; Tamil # Lo TAMIL LETTER KA
  EXPECT_EQ(script_of(0x0BCD), Script::Tamil);       // 0BCD ; Tamil # Mn TAMIL SIGN VIRAMA
  EXPECT_EQ(script_of(0x0995), Script::Bengali);     // 0993..09A8 ; Bengali # Lo
  EXPECT_EQ(script_of(0x0A95), Script::Gujarati);    // 0A93..0AA8 ; Gujarati # Lo
  EXPECT_EQ(script_of(0x0C15), Script::Telugu);      // 0C12..0C28 ; Telugu # Lo
  EXPECT_EQ(script_of(0x0D15), Script::Malayalam);   // 0D12..0D3A ; Malayalam # Lo
  EXPECT_EQ(script_of(0x3042), Script::Hiragana);    // 3041..3096 ; Hiragana # Lo
  EXPECT_EQ(script_of(0x30A2), Script::Katakana);    // 30A1..30FA ; Katakana # Lo
  EXPECT_EQ(script_of(0x30FC), Script::Common);      // 30FC ; Common # Lm PROLONGED SOUND MARK
  EXPECT_EQ(script_of(0xAC00), Script::Hangul);      // AC00..D7A3 ; Hangul # Lo
  EXPECT_EQ(script_of(0x3105), Script::Bopomofo);    // 3105..312F ; Bopomofo # Lo
  EXPECT_EQ(script_of(0x0E01), Script::Thai);        // 0E01..0E30 ; Thai # Lo
  EXPECT_EQ(script_of(0x0410), Script::Cyrillic);    // 0400..0481 ; Cyrillic # L&
  EXPECT_EQ(script_of(0x0041), Script::Latin);       // 0041..005A ; Latin # L&
  EXPECT_EQ(script_of(0x00E9), Script::Latin);       // 00D8..00F6 ; Latin # L&
  EXPECT_EQ(script_of(0xFF21), Script::Latin);       // FF21..FF3A ; Latin # L& FULLWIDTH LATIN CAPITAL A
  EXPECT_EQ(script_of(0x3002), Script::Common);      // 3001..3003 ; Common # Po IDEOGRAPHIC FULL STOP
  EXPECT_EQ(script_of(0xFF0C), Script::Common);      // FF0C ; Common # Po FULLWIDTH COMMA
  EXPECT_EQ(script_of(0x0030), Script::Common);      // 0030..0039 ; Common # Nd
  EXPECT_EQ(script_of(0x0020), Script::Common);      // 0020 ; Common # Zs
  EXPECT_EQ(script_of(0x00B5), Script::Common);      // 00B5 ; Common # L& MICRO SIGN
  EXPECT_EQ(script_of(0x1F600), Script::Common);     // 1F400..1F6D7 ; Common # So GRINNING FACE
  EXPECT_EQ(script_of(0xFFFD), Script::Common);      // FFFC..FFFD ; Common # So
  EXPECT_EQ(script_of(0x0301), Script::Inherited);   // 0300..036F ; Inherited # Mn COMBINING ACUTE ACCENT
  EXPECT_EQ(script_of(0x200D), Script::Inherited);   // 200C..200D ; Inherited # Cf ZERO WIDTH JOINER
  EXPECT_EQ(script_of(0x0378), Script::Unknown);     // unassigned (no line)
  EXPECT_EQ(script_of(0xE000), Script::Unknown);     // private use (no line)
  EXPECT_EQ(script_of(0x10FFFF), Script::Unknown);
  EXPECT_EQ(script_of(0x110000), Script::Unknown);   // not a code point
}

TEST(UnicodeScript, Letters) {
  EXPECT_TRUE(is_letter(0x0041));    // Lu
  EXPECT_TRUE(is_letter(0x4E2D));    // Lo
  EXPECT_TRUE(is_letter(0x093F));    // Mc: a vowel sign is a letter of its script for runs
  EXPECT_TRUE(is_letter(0x0BCD));    // Mn
  EXPECT_TRUE(is_letter(0x0301));    // Mn, Inherited
  EXPECT_TRUE(is_letter(0x30FC));    // Lm, Common
  EXPECT_FALSE(is_letter(0x3007));   // Nl
  EXPECT_FALSE(is_letter(0x0966));   // Nd DEVANAGARI DIGIT ZERO
  EXPECT_FALSE(is_letter(0x3002));   // Po
  EXPECT_FALSE(is_letter(0x0020));   // Zs
  EXPECT_FALSE(is_letter(0x200D));   // Cf
  EXPECT_FALSE(is_letter(0x1F600));  // So
  EXPECT_FALSE(is_letter(0x0378));   // Cn
  EXPECT_FALSE(is_letter(0x110000));
}

TEST(UnicodeScript, Names) {
  EXPECT_EQ(kUnicodeVersion, "15.0.0");
  EXPECT_EQ(kScriptCount, 164);  // Scripts.txt 15.0 names 163 scripts (Common and Inherited included) + Unknown
  EXPECT_EQ(script_name(Script::Han), "Han");
  EXPECT_EQ(script_code(Script::Han), "Hani");
  EXPECT_EQ(script_name(Script::Old_Italic), "Old_Italic");
  EXPECT_EQ(script_code(Script::Common), "Zyyy");
  EXPECT_EQ(script_code(Script::Inherited), "Zinh");
  EXPECT_EQ(script_code(Script::Unknown), "Zzzz");
  EXPECT_EQ(script_from_name("Devanagari"), Script::Devanagari);
  EXPECT_EQ(script_from_name("deva"), Script::Devanagari);
  EXPECT_EQ(script_from_name("HAN"), Script::Han);
  EXPECT_EQ(script_from_name("Latn"), Script::Latin);
  EXPECT_EQ(script_from_name("Klingon"), std::nullopt);
  EXPECT_EQ(script_from_name(""), std::nullopt);
  for (int i = 0; i < kScriptCount; ++i) {
    const Script s = static_cast<Script>(i);
    EXPECT_EQ(script_from_name(script_name(s)), s) << script_name(s);
    EXPECT_EQ(script_from_name(script_code(s)), s) << script_code(s);
  }
  EXPECT_NE(script_names_list().find("Tamil, Tangsa"), std::string::npos);
}

// Every code point against the UCD files themselves, parsed here rather than by the generator.
TEST(UnicodeScript, WholeTableAgainstUcd) {
  std::ifstream scripts("/usr/share/unicode/Scripts.txt");
  std::ifstream gc("/usr/share/unicode/extracted/DerivedGeneralCategory.txt");
  if (!scripts || !gc) GTEST_SKIP() << "no /usr/share/unicode (Debian package unicode-data)";
  std::string first_line;
  std::getline(scripts, first_line);
  if (first_line.find(std::string(kUnicodeVersion)) == std::string::npos)
    GTEST_SKIP() << "installed Scripts.txt is not Unicode " << kUnicodeVersion << ": " << first_line;
  const auto each = [](std::istream& in, auto&& fn) {
    std::string line;
    while (std::getline(in, line)) {
      line = line.substr(0, line.find('#'));
      const size_t semi = line.find(';');
      if (semi == std::string::npos) continue;
      const std::string cps = line.substr(0, semi);
      std::istringstream value(line.substr(semi + 1));
      std::string v;
      value >> v;
      const size_t dots = cps.find("..");
      const auto hex = [](const std::string& h) { return static_cast<char32_t>(std::stoul(h, nullptr, 16)); };
      const char32_t lo = hex(cps.substr(0, dots));
      const char32_t hi = dots == std::string::npos ? lo : hex(cps.substr(dots + 2));
      fn(lo, hi, v);
    }
  };
  std::vector<Script> want(0x110000, Script::Unknown);
  each(scripts, [&](char32_t lo, char32_t hi, const std::string& v) {
    const std::optional<Script> s = script_from_name(v);
    ASSERT_TRUE(s) << v;
    for (char32_t c = lo; c <= hi; ++c) want[c] = *s;
  });
  std::vector<bool> letter(0x110000, false);
  each(gc, [&](char32_t lo, char32_t hi, const std::string& v) {
    for (char32_t c = lo; c <= hi; ++c) letter[c] = v[0] == 'L' || v[0] == 'M';
  });
  int64_t bad = 0;
  for (char32_t c = 0; c < 0x110000; ++c)
    if (script_of(c) != want[c] || is_letter(c) != letter[c]) {
      if (++bad <= 5) ADD_FAILURE() << "U+" << std::hex << static_cast<uint32_t>(c);
    }
  EXPECT_EQ(bad, 0);
}

TEST(UnicodeScript, DecodeUtf8) {
  EXPECT_EQ(decode_utf8("a\xE4\xB8\xAD\xF0\xA0\x80\x80"), (std::u32string{0x61, 0x4E2D, 0x20000}));
  EXPECT_EQ(decode_utf8("\xF0\x9F\x98\x80"), std::u32string{0x1F600});
  EXPECT_EQ(decode_utf8(""), std::u32string{});
  // Python: b'...'.decode('utf-8', 'replace')
  EXPECT_EQ(decode_utf8("\x80"), std::u32string{0xFFFD});                                    // stray continuation
  EXPECT_EQ(decode_utf8("\xE4\xB8" "a"), (std::u32string{0xFFFD, 0x61}));                    // truncated
  EXPECT_EQ(decode_utf8("\xC0\xAF"), (std::u32string{0xFFFD, 0xFFFD}));                      // overlong '/'
  EXPECT_EQ(decode_utf8("\xE0\x80\xAF"), (std::u32string{0xFFFD, 0xFFFD, 0xFFFD}));          // overlong
  EXPECT_EQ(decode_utf8("\xED\xA0\x80"), (std::u32string{0xFFFD, 0xFFFD, 0xFFFD}));          // surrogate
  EXPECT_EQ(decode_utf8("\xF4\x90\x80\x80"), std::u32string(4, 0xFFFD));                     // > U+10FFFF
  EXPECT_EQ(decode_utf8("\xF0\x9F\x98"), std::u32string{0xFFFD});                            // truncated at end
  EXPECT_EQ(decode_utf8("a\xF1\x80\x80\xE1\x80\xC2" "b"),                                    // Unicode table 3-8
            (std::u32string{0x61, 0xFFFD, 0xFFFD, 0xFFFD, 0x62}));
  EXPECT_EQ(decode_utf8("\xFE\xFF"), (std::u32string{0xFFFD, 0xFFFD}));
  size_t pos = 0;
  const std::string s = "\xE4\xB8\xAD!";
  EXPECT_EQ(next_code_point(s, &pos), U'\u4E2D');
  EXPECT_EQ(pos, 3u);
  EXPECT_EQ(next_code_point(s, &pos), U'!');
  EXPECT_EQ(pos, 4u);
  // decode_code_point tells a literal U+FFFD (EF BF BD, well-formed) from ill-formed bytes, which next_code_point
  // maps to the same U+FFFD; both advance by the same lengths.
  const std::string t = "\xEF\xBF\xBD\xE4\xB8" "a";
  char32_t cp = 0;
  pos = 0;
  EXPECT_TRUE(decode_code_point(t, &pos, &cp));
  EXPECT_EQ(cp, 0xFFFDu);
  EXPECT_EQ(pos, 3u);
  EXPECT_FALSE(decode_code_point(t, &pos, &cp));
  EXPECT_EQ(pos, 5u);  // the maximal subpart E4 B8
  EXPECT_TRUE(decode_code_point(t, &pos, &cp));
  EXPECT_EQ(cp, U'a');
}

TEST(UnicodeScript, EncodeUtf8) {
  for (char32_t c : {0x0u, 0x7Fu, 0x80u, 0x7FFu, 0x800u, 0x4E2Du, 0xFFFFu, 0x10000u, 0x1F600u, 0x10FFFFu})
    EXPECT_EQ(decode_utf8(encode_utf8(c)), std::u32string(1, c)) << static_cast<uint32_t>(c);
  EXPECT_EQ(encode_utf8(0x4E2D), "\xE4\xB8\xAD");
  EXPECT_EQ(encode_utf8(0xD800), "\xEF\xBF\xBD");  // surrogates have no UTF-8 form
  EXPECT_EQ(encode_utf8(0x110000), "\xEF\xBF\xBD");
}
