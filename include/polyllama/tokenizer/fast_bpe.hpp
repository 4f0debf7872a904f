#pragma once
// A faster encoder for SentencePiece BPE models of LLaMA's kind, giving exactly SentencePiece's ids.
//
// SentencePiece (0.1.97) encodes a whole document as one BPE problem, with a string-hash lookup for every
// candidate merge; tokenizing a corpus spends nearly all its time there. This encoder reproduces the same
// algorithm (normalisation, greedy highest-score-leftmost merges, byte fallback) and adds one observation:
// a merge can only join characters x y that occur next to each other inside some vocabulary piece. Where the
// normalised text has a pair x y that occurs in no piece, no piece can ever span it, so the text splits into
// independent chunks there (before most "▁word" starts, and between most Han characters), and chunks repeat:
// each thread caches the ids of the chunks it has seen. The result is identical to SentencePiece's by
// construction, and tests/tokenizer/test_fast_bpe.cpp compares the two on real corpora and random text.
//
// Supported models (create() says why not otherwise, and callers fall back to SentencePiece): BPE with byte
// fallback; identity normalisation (no precompiled charsmap) without removing extra whitespace, escaping
// spaces as U+2581, whitespace as prefix; pieces only of the types normal, unknown, control and byte, plus
// unused pieces that no merge can form (the padding of `tokenizer extend`).
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace polyllama {

class FastBpe {
 public:
  // Parses SentencePiece .model bytes; nullptr (and the reason in *why) when the model is not supported.
  static std::unique_ptr<FastBpe> create(const std::string& model_bytes, std::string* why);
  // The ids SentencePiece gives `text` (no BOS/EOS). Thread-safe; each thread keeps its own chunk cache.
  void encode(std::string_view text, std::vector<int32_t>& ids) const;
  int64_t vocab_size() const { return static_cast<int64_t>(pieces_.size()); }

 private:
  FastBpe() = default;
  void encode_chunk(std::string_view chunk, std::vector<int32_t>& ids) const;
  bool may_join(uint32_t a, uint32_t b) const;

  // Names this model to the per-thread chunk caches: unlike its address, never reused by a later model (a
  // cache keyed by address gave a new model at a freed one's address the old model's ids).
  uint64_t instance_ = 0;
  std::vector<std::string> pieces_;
  std::vector<float> scores_;
  std::unordered_map<std::string_view, int32_t> normal_;    // NORMAL pieces: the merge candidates
  std::unordered_map<std::string_view, int32_t> reserved_;  // UNKNOWN, CONTROL, BYTE
  int32_t unk_id_ = 0;
  int32_t byte_ids_[256] = {};
  bool add_dummy_prefix_ = true;
  std::vector<uint64_t> small_pairs_;            // bitmap over (small(a), small(b)) for ASCII and U+2581
  std::unordered_set<uint64_t> pairs_;           // every adjacent code point pair inside a normal piece
};

}  // namespace polyllama
