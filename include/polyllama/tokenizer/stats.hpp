#pragma once
// Tokenizer fertility per Unicode script (`polyllama tokenizer stats`): how many tokens a tokenizer spends on
// the characters and whitespace-separated words of each script, and how many of them are byte-fallback pieces
// (<0xNN>) -- the numbers that show whether a vocabulary covers a language.
//
// Buckets: every letter (general category L* or M*) is counted under its Unicode script (core/unicode_script.hpp,
// so Bengali, Tamil, Hebrew or Ethiopic each have a row); a Common or Inherited letter (a combining accent, U+30FC
// the kana length mark) goes to the script of the letter before it in the same word, as UAX #24's script runs
// assign them, or stays "Common"/"Inherited" at a word's start. Then "digits" (Nd of any script), "punct"
// (punctuation, symbols, emoji, and whatever is not a letter, digit or space) and "space" (White_Space).
//
// Attribution: a token belongs to the bucket of the first non-whitespace character of its surface (the text it
// covers); all byte-fallback pieces of one character go to that character's bucket (SentencePiece gives the
// surface to the last of them); tokens that cover only whitespace, or nothing (a lone dummy-prefix "▁"), count
// as "space". A word is a maximal run of non-whitespace characters, counted under the bucket of its first letter
// (or, without letters, of its first character). Tokens per word is reported for scripts written with spaces,
// and for a whole input when most of its letters are.
#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "polyllama/core/unicode_script.hpp"

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace polyllama {

// Bucket numbers: 0 .. unicode::kScriptCount - 1 are the scripts (a unicode::Script's value), then these three.
inline constexpr int kDigitBucket = unicode::kScriptCount;
inline constexpr int kPunctBucket = kDigitBucket + 1;
inline constexpr int kSpaceBucket = kDigitBucket + 2;
inline constexpr int kBuckets = kDigitBucket + 3;
inline constexpr int script_bucket(unicode::Script s) { return static_cast<int>(s); }
// "Han", "Latin", "Bengali", ... (Scripts.txt's long names), "digits", "punct", "space".
std::string bucket_name(int bucket);
// The bucket of one code point on its own (before the Common/Inherited rule above).
int bucket_of(char32_t cp);
// Whether tokens per word means something: the script separates words with spaces (Latin, Cyrillic, Arabic,
// the Indic scripts, Hangul, Ethiopic, ...; not Han, kana, Thai, Lao, Khmer, Myanmar, Tibetan).
bool bucket_uses_spaces(int bucket);

struct ScriptTokens {
  int64_t tokens = 0, byte_tokens = 0;
};

struct ScriptStats {
  int64_t chars = 0, bytes = 0, words = 0;  // of the text, whatever the tokenizer
  std::vector<ScriptTokens> per_tokenizer;  // one per tokenizer, in order
};

// One input (a file, or all of them).
struct TextStats {
  std::string name;
  int64_t documents = 0;
  std::array<ScriptStats, kBuckets> scripts;  // by bucket
  ScriptStats total;
  void merge(const TextStats& other);
};

// A SentencePiece model for counting: pieces with their text spans, and which pieces are byte fallback.
class StatsTokenizer {
 public:
  StatsTokenizer(const std::string& model_bytes, const std::string& path);
  ~StatsTokenizer();
  StatsTokenizer(StatsTokenizer&&) noexcept;
  const std::string& path() const { return path_; }
  int64_t vocab_size() const;
  int64_t byte_pieces() const;  // <0xNN> pieces in the vocabulary (256 with byte_fallback, else 0)
  bool is_byte(int id) const;
  // Per piece of `text`: its id and the byte span [begin, end) of text it covers.
  struct Piece {
    int id;
    uint32_t begin, end;
  };
  void encode(const std::string& text, std::vector<Piece>& out) const;

 private:
  std::unique_ptr<sentencepiece::SentencePieceProcessor> sp_;
  std::string path_;
};

// Adds one document's counts to `stats` (which gets one per_tokenizer entry per tokenizer).
void add_document_stats(const std::string& text, const std::vector<const StatsTokenizer*>& tokenizers,
                        TextStats& stats);

struct TokenizerInfo {
  std::string path, checksum;
  int64_t vocab_size = 0, byte_pieces = 0;
};

// A readable table per input (scripts that occur, then the total), tokenizers side by side; from the second
// tokenizer on, "vs 1st" is its token count over the first one's.
std::string stats_table(const std::vector<TokenizerInfo>& tokenizers, const std::vector<TextStats>& inputs);
// The same as one JSON document (one line).
std::string stats_json(const std::vector<TokenizerInfo>& tokenizers, const std::vector<TextStats>& inputs);

}  // namespace polyllama
