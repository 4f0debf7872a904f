#include "polyllama/tokenizer/stats.hpp"

#include <sentencepiece_processor.h>

#include <cstdio>

#include <nlohmann/json.hpp>

#include "polyllama/core/error.hpp"

namespace polyllama {

namespace {

struct Range {
  uint32_t lo, hi;  // inclusive
  Script script;
};

// Checked in order: the exceptions inside a block (digits, punctuation of a script) come before the block.
constexpr Range kRanges[] = {
    // whitespace
    {0x09, 0x0D, Script::space}, {0x20, 0x20, Script::space}, {0x85, 0x85, Script::space},
    {0xA0, 0xA0, Script::space}, {0x1680, 0x1680, Script::space}, {0x2000, 0x200A, Script::space},
    {0x2028, 0x2029, Script::space}, {0x202F, 0x202F, Script::space}, {0x205F, 0x205F, Script::space},
    {0x3000, 0x3000, Script::space},
    // digits: ASCII, Arabic-Indic, extended Arabic-Indic, Devanagari, Thai, fullwidth
    {0x30, 0x39, Script::digit}, {0x660, 0x669, Script::digit}, {0x6F0, 0x6F9, Script::digit},
    {0x966, 0x96F, Script::digit}, {0xE50, 0xE59, Script::digit}, {0xFF10, 0xFF19, Script::digit},
    // Latin letters
    {0x41, 0x5A, Script::latin}, {0x61, 0x7A, Script::latin}, {0xAA, 0xAA, Script::latin},
    {0xBA, 0xBA, Script::latin}, {0xD7, 0xD7, Script::punct}, {0xF7, 0xF7, Script::punct},
    {0xC0, 0x24F, Script::latin}, {0x250, 0x2AF, Script::latin}, {0x1E00, 0x1EFF, Script::latin},
    {0x2C60, 0x2C7F, Script::latin}, {0xA720, 0xA7FF, Script::latin}, {0xAB30, 0xAB6F, Script::latin},
    {0xFB00, 0xFB06, Script::latin}, {0xFF21, 0xFF3A, Script::latin}, {0xFF41, 0xFF5A, Script::latin},
    // Greek, Cyrillic
    {0x37E, 0x37E, Script::punct}, {0x387, 0x387, Script::punct}, {0x370, 0x3FF, Script::greek},
    {0x1F00, 0x1FFF, Script::greek}, {0x400, 0x52F, Script::cyrillic}, {0x1C80, 0x1C8F, Script::cyrillic},
    {0x2DE0, 0x2DFF, Script::cyrillic}, {0xA640, 0xA69F, Script::cyrillic},
    // Arabic (its comma, semicolon, question mark and full stop are punctuation)
    {0x60C, 0x60D, Script::punct}, {0x61B, 0x61B, Script::punct}, {0x61F, 0x61F, Script::punct},
    {0x6D4, 0x6D4, Script::punct}, {0x600, 0x6FF, Script::arabic}, {0x750, 0x77F, Script::arabic},
    {0x8A0, 0x8FF, Script::arabic}, {0xFB50, 0xFDFF, Script::arabic}, {0xFE70, 0xFEFF, Script::arabic},
    // Devanagari (danda, double danda: punctuation), Thai
    {0x964, 0x965, Script::punct}, {0x900, 0x97F, Script::devanagari}, {0xA8E0, 0xA8FF, Script::devanagari},
    {0xE00, 0xE7F, Script::thai},
    // Kana, Hangul
    {0x3040, 0x309F, Script::kana}, {0x30A0, 0x30FF, Script::kana}, {0x31F0, 0x31FF, Script::kana},
    {0xFF66, 0xFF9F, Script::kana}, {0xAC00, 0xD7AF, Script::hangul}, {0x1100, 0x11FF, Script::hangul},
    {0x3130, 0x318F, Script::hangul}, {0xA960, 0xA97F, Script::hangul}, {0xD7B0, 0xD7FF, Script::hangul},
    // Han: unified ideographs and extensions, compatibility ideographs, radicals, iteration mark, zero
    {0x4E00, 0x9FFF, Script::han}, {0x3400, 0x4DBF, Script::han}, {0x20000, 0x2A6DF, Script::han},
    {0x2A700, 0x2EBEF, Script::han}, {0x30000, 0x3134F, Script::han}, {0xF900, 0xFAFF, Script::han},
    {0x2F800, 0x2FA1F, Script::han}, {0x2E80, 0x2FDF, Script::han}, {0x3005, 0x3005, Script::han},
    {0x3007, 0x3007, Script::han},
    // punctuation and symbols: ASCII, Latin-1, general punctuation, currency, letterlike/arrows/math/technical/
    // box drawing/shapes/dingbats, CJK symbols and punctuation, vertical and compatibility forms, fullwidth
    {0x21, 0x2F, Script::punct}, {0x3A, 0x40, Script::punct}, {0x5B, 0x60, Script::punct},
    {0x7B, 0x7E, Script::punct}, {0xA1, 0xBF, Script::punct}, {0x2010, 0x205E, Script::punct},
    {0x20A0, 0x20CF, Script::punct}, {0x2100, 0x2BFF, Script::punct}, {0x3001, 0x303F, Script::punct},
    {0xFE10, 0xFE1F, Script::punct}, {0xFE30, 0xFE4F, Script::punct}, {0xFF01, 0xFF0F, Script::punct},
    {0xFF1A, 0xFF20, Script::punct}, {0xFF3B, 0xFF40, Script::punct}, {0xFF5B, 0xFF65, Script::punct},
};

// Decodes the UTF-8 character at s[i] (advancing i); an invalid byte is one U+FFFD.
uint32_t next_code_point(const std::string& s, size_t& i) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  int len = 0;
  uint32_t cp = 0;
  if (b0 < 0x80) {
    ++i;
    return b0;
  }
  if ((b0 & 0xE0) == 0xC0) len = 2, cp = b0 & 0x1Fu;
  else if ((b0 & 0xF0) == 0xE0) len = 3, cp = b0 & 0x0Fu;
  else if ((b0 & 0xF8) == 0xF0) len = 4, cp = b0 & 0x07u;
  if (len == 0 || i + static_cast<size_t>(len) > s.size()) {
    ++i;
    return 0xFFFD;
  }
  for (int k = 1; k < len; ++k) {
    const auto b = static_cast<unsigned char>(s[i + static_cast<size_t>(k)]);
    if ((b & 0xC0) != 0x80) {
      ++i;
      return 0xFFFD;
    }
    cp = (cp << 6) | (b & 0x3Fu);
  }
  i += static_cast<size_t>(len);
  return cp;
}

bool is_letter_script(Script s) { return s != Script::digit && s != Script::punct && s != Script::space; }

std::string fixed(double v, int digits) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

}  // namespace

const char* script_name(Script s) {
  static const char* names[kScripts] = {"Han", "Latin", "Cyrillic", "Arabic", "Devanagari", "Hiragana/Katakana",
                                        "Hangul", "Thai", "Greek", "digits", "punct", "other", "space"};
  return names[static_cast<int>(s)];
}

Script classify_code_point(uint32_t cp) {
  for (const Range& r : kRanges)
    if (cp >= r.lo && cp <= r.hi) return r.script;
  return Script::other;
}

bool script_uses_spaces(Script s) {
  switch (s) {
    case Script::latin: case Script::cyrillic: case Script::arabic: case Script::devanagari:
    case Script::hangul: case Script::greek:
      return true;
    default:
      return false;
  }
}

void TextStats::merge(const TextStats& o) {
  documents += o.documents;
  auto add = [](ScriptStats& a, const ScriptStats& b) {
    a.chars += b.chars;
    a.bytes += b.bytes;
    a.words += b.words;
    if (a.per_tokenizer.size() < b.per_tokenizer.size()) a.per_tokenizer.resize(b.per_tokenizer.size());
    for (size_t t = 0; t < b.per_tokenizer.size(); ++t) {
      a.per_tokenizer[t].tokens += b.per_tokenizer[t].tokens;
      a.per_tokenizer[t].byte_tokens += b.per_tokenizer[t].byte_tokens;
    }
  };
  for (int s = 0; s < kScripts; ++s) add(scripts[static_cast<size_t>(s)], o.scripts[static_cast<size_t>(s)]);
  add(total, o.total);
}

// ---- tokenizer ----

StatsTokenizer::StatsTokenizer(const std::string& model_bytes, const std::string& path)
    : sp_(std::make_unique<sentencepiece::SentencePieceProcessor>()), path_(path) {
  const auto st = sp_->LoadFromSerializedProto(model_bytes);
  if (!st.ok()) fail_input(path + ": not a SentencePiece model (" + st.ToString() + ")");
}
StatsTokenizer::~StatsTokenizer() = default;
StatsTokenizer::StatsTokenizer(StatsTokenizer&&) noexcept = default;

int64_t StatsTokenizer::vocab_size() const { return sp_->GetPieceSize(); }
bool StatsTokenizer::is_byte(int id) const { return sp_->IsByte(id); }
int64_t StatsTokenizer::byte_pieces() const {
  int64_t n = 0;
  for (int id = 0; id < sp_->GetPieceSize(); ++id) n += sp_->IsByte(id) ? 1 : 0;
  return n;
}

void StatsTokenizer::encode(const std::string& text, std::vector<Piece>& out) const {
  sentencepiece::ImmutableSentencePieceText spt;
  const auto st = sp_->Encode(text, spt.mutable_proto());
  if (!st.ok()) fail_runtime(path_ + ": SentencePiece encode failed: " + st.ToString(), __FILE__, __LINE__);
  out.clear();
  const size_t n = spt.pieces_size();
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    const auto p = spt.pieces(static_cast<int>(i));
    out.push_back({static_cast<int>(p.id()), p.begin(), p.end()});
  }
}

// ---- counting ----

void add_document_stats(const std::string& text, const std::vector<const StatsTokenizer*>& tokenizers,
                        TextStats& stats) {
  const size_t T = tokenizers.size();
  for (ScriptStats& s : stats.scripts) s.per_tokenizer.resize(T);
  stats.total.per_tokenizer.resize(T);
  ++stats.documents;
  // Characters and words. cls[b]: the script of the character starting at byte b, -1 inside a character.
  std::vector<int8_t> cls(text.size(), -1);
  bool in_word = false, word_pending = false;
  Script word_first = Script::other;
  auto count_word = [&](Script s) {
    ++stats.scripts[static_cast<size_t>(s)].words;
    ++stats.total.words;
  };
  for (size_t i = 0; i < text.size();) {
    const size_t start = i;
    const Script s = classify_code_point(next_code_point(text, i));
    cls[start] = static_cast<int8_t>(s);
    ScriptStats& ss = stats.scripts[static_cast<size_t>(s)];
    ++ss.chars;
    ++stats.total.chars;
    ss.bytes += static_cast<int64_t>(i - start);
    if (s == Script::space) {
      if (in_word && word_pending) count_word(word_first);
      in_word = word_pending = false;
      continue;
    }
    if (!in_word) {
      in_word = word_pending = true;
      word_first = s;
    }
    if (word_pending && is_letter_script(s)) {
      count_word(s);
      word_pending = false;
    }
  }
  if (in_word && word_pending) count_word(word_first);
  stats.total.bytes += static_cast<int64_t>(text.size());

  // Tokens.
  std::vector<StatsTokenizer::Piece> pieces;
  for (size_t t = 0; t < T; ++t) {
    tokenizers[t]->encode(text, pieces);
    for (const StatsTokenizer::Piece& p : pieces) {
      const bool is_byte = tokenizers[t]->is_byte(p.id);
      Script s = Script::space;
      if (p.begin < p.end) {  // the first non-whitespace character it covers
        for (size_t b = p.begin; b < p.end && b < text.size(); ++b)
          if (cls[b] >= 0 && static_cast<Script>(cls[b]) != Script::space) {
            s = static_cast<Script>(cls[b]);
            break;
          }
      } else if (is_byte && p.begin < text.size()) {
        // A byte piece before the last of its character covers no text; the character starts at `begin`.
        size_t b = p.begin;
        while (b > 0 && cls[b] < 0) --b;
        if (cls[b] >= 0) s = static_cast<Script>(cls[b]);
      }
      ScriptTokens& st = stats.scripts[static_cast<size_t>(s)].per_tokenizer[t];
      ++st.tokens;
      st.byte_tokens += is_byte ? 1 : 0;
      ++stats.total.per_tokenizer[t].tokens;
      stats.total.per_tokenizer[t].byte_tokens += is_byte ? 1 : 0;
    }
  }
}

// ---- reports ----

namespace {

double ratio(int64_t a, int64_t b) { return b > 0 ? static_cast<double>(a) / static_cast<double>(b) : 0.0; }

bool occurs(const ScriptStats& s) {
  if (s.chars > 0) return true;
  for (const ScriptTokens& t : s.per_tokenizer)
    if (t.tokens > 0) return true;
  return false;
}

// Whether tokens per word means something for a whole input: most of its letters are in scripts with spaces.
bool mostly_spaced(const TextStats& in) {
  int64_t spaced = 0, letters = 0;
  for (int s = 0; s < kScripts; ++s) {
    const auto script = static_cast<Script>(s);
    if (!is_letter_script(script)) continue;
    letters += in.scripts[static_cast<size_t>(s)].chars;
    if (script_uses_spaces(script)) spaced += in.scripts[static_cast<size_t>(s)].chars;
  }
  return letters > 0 && 2 * spaced >= letters;
}

nlohmann::json script_json(const ScriptStats& s, bool per_word) {
  nlohmann::json toks = nlohmann::json::array();
  for (const ScriptTokens& t : s.per_tokenizer)
    toks.push_back({{"tokens", t.tokens},
                    {"byte_tokens", t.byte_tokens},
                    {"tokens_per_char", s.chars > 0 ? nlohmann::json(ratio(t.tokens, s.chars)) : nlohmann::json()},
                    {"tokens_per_word",
                     per_word && s.words > 0 ? nlohmann::json(ratio(t.tokens, s.words)) : nlohmann::json()},
                    {"byte_fallback_share", ratio(t.byte_tokens, t.tokens)}});
  return {{"chars", s.chars}, {"bytes", s.bytes}, {"words", s.words}, {"tokenizers", toks}};
}

}  // namespace

std::string stats_json(const std::vector<TokenizerInfo>& tokenizers, const std::vector<TextStats>& inputs) {
  nlohmann::json toks = nlohmann::json::array(), files = nlohmann::json::array();
  for (const TokenizerInfo& t : tokenizers)
    toks.push_back({{"path", t.path}, {"checksum", t.checksum}, {"vocab_size", t.vocab_size},
                    {"byte_pieces", t.byte_pieces}});
  for (const TextStats& in : inputs) {
    nlohmann::json scripts = nlohmann::json::object();
    for (int s = 0; s < kScripts; ++s)
      if (occurs(in.scripts[static_cast<size_t>(s)]))
        scripts[script_name(static_cast<Script>(s))] =
            script_json(in.scripts[static_cast<size_t>(s)], script_uses_spaces(static_cast<Script>(s)));
    files.push_back({{"path", in.name}, {"documents", in.documents}, {"scripts", scripts},
                     {"total", script_json(in.total, mostly_spaced(in))}});
  }
  return nlohmann::json{{"tokenizers", toks}, {"inputs", files}}.dump();
}

std::string stats_table(const std::vector<TokenizerInfo>& tokenizers, const std::vector<TextStats>& inputs) {
  std::string out;
  char line[512];
  for (size_t t = 0; t < tokenizers.size(); ++t) {
    std::snprintf(line, sizeof line, "tokenizer %zu: %s (%lld pieces, %lld byte pieces, checksum %s)\n", t + 1,
                  tokenizers[t].path.c_str(), static_cast<long long>(tokenizers[t].vocab_size),
                  static_cast<long long>(tokenizers[t].byte_pieces), tokenizers[t].checksum.c_str());
    out += line;
  }
  for (const TextStats& in : inputs) {
    std::snprintf(line, sizeof line, "\n%s: %lld documents, %lld characters, %lld bytes\n", in.name.c_str(),
                  static_cast<long long>(in.documents), static_cast<long long>(in.total.chars),
                  static_cast<long long>(in.total.bytes));
    out += line;
    std::snprintf(line, sizeof line, "%-17s %9s %9s", "script", "chars", "words");
    std::string head = line;
    for (size_t t = 0; t < tokenizers.size(); ++t) {
      std::snprintf(line, sizeof line, " |%2zu:   tokens tok/char tok/word  byte%%%s", t + 1, t > 0 ? "  vs 1st" : "");
      head += line;
    }
    out += head + "\n";
    auto row = [&](const char* name, const ScriptStats& s, bool per_word) {
      std::snprintf(line, sizeof line, "%-17s %9lld %9s", name, static_cast<long long>(s.chars),
                    per_word ? std::to_string(s.words).c_str() : "-");
      out += line;
      for (size_t t = 0; t < tokenizers.size(); ++t) {
        const ScriptTokens& k = t < s.per_tokenizer.size() ? s.per_tokenizer[t] : ScriptTokens{};
        const std::string per_char = s.chars > 0 ? fixed(ratio(k.tokens, s.chars), 3) : "-";
        const std::string word = per_word && s.words > 0 ? fixed(ratio(k.tokens, s.words), 3) : "-";
        std::snprintf(line, sizeof line, " | %11lld %8s %8s %5.1f%%", static_cast<long long>(k.tokens),
                      per_char.c_str(), word.c_str(), 100.0 * ratio(k.byte_tokens, k.tokens));
        out += line;
        if (t > 0) {
          const int64_t first = s.per_tokenizer.empty() ? 0 : s.per_tokenizer[0].tokens;
          out += first > 0 ? "  " + fixed(ratio(k.tokens, first), 3) + "x" : std::string("      -");
        }
      }
      out += "\n";
    };
    for (int sc = 0; sc < kScripts; ++sc) {
      const auto script = static_cast<Script>(sc);
      if (occurs(in.scripts[static_cast<size_t>(sc)]))
        row(script_name(script), in.scripts[static_cast<size_t>(sc)], script_uses_spaces(script));
    }
    row("total", in.total, mostly_spaced(in));
  }
  return out;
}

}  // namespace polyllama
