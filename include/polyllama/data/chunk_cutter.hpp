#pragma once
// Where a long document may be cut so that encoding the pieces separately gives exactly SentencePiece's ids
// for the whole document (issue 16: `data` and plain-text `pretrain` in bounded memory).
//
// Why a cut is exact. For the models accepted here (identity normalisation: no precompiled charsmap, no
// removal of extra whitespace, spaces escaped as U+2581, whitespace as prefix) SentencePiece normalises a
// text character by character: normalize(A + B) = normalize(A) + normalize'(B), where normalize' is the same
// without the dummy-prefix "▁" (DocumentEncoder encodes every chunk after the first with a copy of the model
// whose add_dummy_prefix is off). A cut between characters x and y is taken only when
//   (1) the pair x y occurs inside no piece of the vocabulary (of any type, user-defined included), and
//   (2) x and y are each a one-character piece (so neither is an unknown character).
// Then no piece can span the cut, and:
//   - BPE (bpe_model.cc): a symbol is only ever a piece (or a single character), so no merge joins symbols
//     across the cut; the merges on either side never compete for a symbol, and the greedy order restricted to
//     one side is the order SentencePiece follows on that side alone, so each side ends as it would alone.
//     Re-splitting unused pieces acts on one symbol at a time.
//   - Unigram (unigram_model.cc), on paper (create() refuses unigram models all the same, see there): every lattice path passes through the cut, so the best path is a best path
//     of the left side followed by one of the right. Consecutive unknown characters are merged into one <unk>
//     there, which (2) rules out across the cut. (SentencePiece sums path scores in float, so on a document of
//     megabytes two near-equal paths may be ranked by rounding; chunking cannot reproduce rounding noise. The
//     tests compare whole-document encodings where that noise cannot matter.)
//   - Byte fallback turns an unknown character into its bytes, a per-character step.
// Cuts are only made between two complete, valid UTF-8 characters: an invalid byte becomes U+FFFD in
// SentencePiece's normaliser, so no cut is placed next to one.
//
// Where no cut exists (a run in which every adjacent pair occurs in some piece: long runs of spaces or of one
// letter, or text in a script the vocabulary does not split) the chunk grows until the next cut. Re-encoding
// an overlap and keeping the tokens before a point where two encodings agree is not exact for BPE (which merge
// wins depends on scores arbitrarily far to the right in such a run), so it is not done.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

namespace polyllama {

class ChunkCutter {
 public:
  // Parses SentencePiece .model bytes; nullptr, and the reason in *why, when the model's settings make cuts
  // unsafe (then documents are encoded whole).
  static std::unique_ptr<ChunkCutter> create(const std::string& model_bytes, std::string* why);

  // A byte offset p with from < p < text.size() where text may be cut (see above): the last such p <= target
  // when there is one, else the first one after target; 0 when text[from..] has none. `from` need not be a
  // character boundary (the scan resynchronises), so a caller can resume a scan near where the last one ended.
  size_t find_cut(std::string_view text, size_t from, size_t target) const;

 private:
  ChunkCutter() = default;
  bool may_cut(uint32_t x, uint32_t y) const;

  std::unordered_set<uint64_t> pairs_;    // adjacent code point pairs inside any piece
  std::unordered_set<uint32_t> singles_;  // code points that are a piece by themselves
  std::vector<uint8_t> ascii_single_;     // singles_ for code points < 128
  std::vector<uint64_t> ascii_pairs_;     // pairs_ for two code points < 128, as a 128 x 128 bitmap
};

// One document's text as it arrives in parts, handed out as chunks cut by a ChunkCutter: what a reader of an
// arbitrarily long document holds is the chunk size plus the longest stretch without a cut.
class DocumentChunks {
 public:
  // cutter null: never cut (the whole document is one chunk).
  DocumentChunks(const ChunkCutter* cutter, size_t chunk_bytes) : cutter_(cutter), chunk_(chunk_bytes) {}
  // Starts a new document (whatever is pending is dropped).
  void start();
  void add(std::string_view part) { buf_.append(part); }
  // Moves the next chunk into *out and sets *first for the document's first chunk; false when no chunk is ready.
  // With at_end (the document's last part was added) the rest comes out as the last chunk.
  bool next(std::string& out, bool& first, bool at_end);
  size_t pending() const { return buf_.size(); }  // bytes held

 private:
  const ChunkCutter* cutter_;
  size_t chunk_;
  std::string buf_;
  size_t scan_from_ = 0;  // where the next cut search starts (the text before it has no cut)
  bool first_ = true;
};

// How the `data` pipeline and `pretrain`'s text reader encode: `encode(text, first, ids)` encodes one chunk
// of a document (first: its first chunk); documents are cut by `cutter` into chunks of about chunk_bytes
// (cutter null: encoded whole).
struct ChunkedEncode {
  std::function<void(const std::string& text, bool first, std::vector<int32_t>& ids)> encode;
  const ChunkCutter* cutter = nullptr;
  size_t chunk_bytes = size_t{256} << 10;
};

// The chunk size documents are encoded in: POLYLLAMA_ENCODE_CHUNK_BYTES when set (tests force small chunks with
// it), else 256 KiB. Fails (exit 1) naming the variable on a value that is not a positive integer.
size_t encode_chunk_bytes();

}  // namespace polyllama
