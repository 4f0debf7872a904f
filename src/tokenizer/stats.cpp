#include "polyllama/tokenizer/stats.hpp"

#include <sentencepiece_processor.h>

#include <cstdio>

#include <nlohmann/json.hpp>

#include "polyllama/core/error.hpp"

namespace polyllama {

namespace {

using unicode::CharKind;
using unicode::Script;

bool is_script_bucket(int b) { return b < kDigitBucket; }

// Scripts whose writing separates words with spaces: tokens per word is meaningful for them. Scripts written
// without spaces between words (Han, Hiragana, Katakana, Thai, Lao, Khmer, Myanmar, Tibetan, Javanese, Balinese,
// Yi, ...) are not listed.
constexpr Script kSpacedScripts[] = {
    Script::Latin,   Script::Cyrillic,  Script::Greek,     Script::Armenian, Script::Georgian, Script::Hebrew,
    Script::Arabic,  Script::Syriac,    Script::Thaana,    Script::Nko,      Script::Devanagari, Script::Bengali,
    Script::Gurmukhi, Script::Gujarati, Script::Oriya,     Script::Tamil,    Script::Telugu,   Script::Kannada,
    Script::Malayalam, Script::Sinhala, Script::Hangul,    Script::Ethiopic, Script::Mongolian, Script::Tifinagh,
    Script::Cherokee, Script::Canadian_Aboriginal, Script::Ol_Chiki, Script::Adlam, Script::Vai,
};

std::string fixed(double v, int digits) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

}  // namespace

std::string bucket_name(int bucket) {
  if (bucket == kDigitBucket) return "digits";
  if (bucket == kPunctBucket) return "punct";
  if (bucket == kSpaceBucket) return "space";
  return std::string(unicode::script_name(static_cast<Script>(bucket)));
}

int bucket_of(char32_t cp) {
  switch (unicode::char_kind(cp)) {
    case CharKind::letter: return script_bucket(unicode::script_of(cp));
    case CharKind::digit: return kDigitBucket;
    case CharKind::space: return kSpaceBucket;
    case CharKind::other: break;
  }
  return kPunctBucket;
}

bool bucket_uses_spaces(int bucket) {
  for (Script s : kSpacedScripts)
    if (script_bucket(s) == bucket) return true;
  return false;
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
  for (int s = 0; s < kBuckets; ++s) add(scripts[static_cast<size_t>(s)], o.scripts[static_cast<size_t>(s)]);
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
  // Characters and words. cls[b]: the bucket of the character starting at byte b, -1 inside a character.
  std::vector<int16_t> cls(text.size(), -1);
  static_assert(kBuckets <= 32767, "cls holds a bucket in int16_t");
  bool in_word = false, word_pending = false;
  int word_first = kPunctBucket, last_letter = -1;  // last_letter: the bucket of the word's previous letter
  auto count_word = [&](int b) {
    ++stats.scripts[static_cast<size_t>(b)].words;
    ++stats.total.words;
  };
  const std::string_view view(text);
  for (size_t i = 0; i < text.size();) {
    const size_t start = i;
    const char32_t cp = unicode::next_code_point(view, &i);
    int b = bucket_of(cp);
    const bool letter = is_script_bucket(b);
    if (letter && (b == script_bucket(Script::Common) || b == script_bucket(Script::Inherited)) && last_letter >= 0)
      b = last_letter;
    cls[start] = static_cast<int16_t>(b);
    ScriptStats& ss = stats.scripts[static_cast<size_t>(b)];
    ++ss.chars;
    ++stats.total.chars;
    ss.bytes += static_cast<int64_t>(i - start);
    if (b == kSpaceBucket) {
      if (in_word && word_pending) count_word(word_first);
      in_word = word_pending = false;
      last_letter = -1;
      continue;
    }
    if (!in_word) {
      in_word = word_pending = true;
      word_first = b;
    }
    if (letter) {
      last_letter = b;
      if (word_pending) {
        count_word(b);
        word_pending = false;
      }
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
      int s = kSpaceBucket;
      if (p.begin < p.end) {  // the first non-whitespace character it covers
        for (size_t b = p.begin; b < p.end && b < text.size(); ++b)
          if (cls[b] >= 0 && cls[b] != kSpaceBucket) {
            s = cls[b];
            break;
          }
      } else if (is_byte && p.begin < text.size()) {
        // A byte piece before the last of its character covers no text; the character starts at `begin`.
        size_t b = p.begin;
        while (b > 0 && cls[b] < 0) --b;
        if (cls[b] >= 0) s = cls[b];
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
  for (int b = 0; b < kDigitBucket; ++b) {
    letters += in.scripts[static_cast<size_t>(b)].chars;
    if (bucket_uses_spaces(b)) spaced += in.scripts[static_cast<size_t>(b)].chars;
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
    for (int b = 0; b < kBuckets; ++b)
      if (occurs(in.scripts[static_cast<size_t>(b)]))
        scripts[bucket_name(b)] = script_json(in.scripts[static_cast<size_t>(b)], bucket_uses_spaces(b));
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
    auto row = [&](const std::string& name, const ScriptStats& s, bool per_word) {
      std::snprintf(line, sizeof line, "%-17s %9lld %9s", name.c_str(), static_cast<long long>(s.chars),
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
    for (int b = 0; b < kBuckets; ++b)
      if (occurs(in.scripts[static_cast<size_t>(b)]))
        row(bucket_name(b), in.scripts[static_cast<size_t>(b)], bucket_uses_spaces(b));
    row("total", in.total, mostly_spaced(in));
  }
  return out;
}

}  // namespace polyllama
