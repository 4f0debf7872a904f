#include "polyllama/data/chunk_cutter.hpp"

#include <cstdlib>
#include <optional>
#include <stdexcept>

#include "polyllama/core/error.hpp"
#include "polyllama/core/unicode_script.hpp"
#include "polyllama/tokenizer/sp_model.hpp"

namespace polyllama {

namespace {

constexpr uint32_t kInvalid = 0xFFFFFFFFu;
constexpr uint32_t kSpaceMark = 0x2581;  // SentencePiece's escaped space, "▁"

// The code point at s[i] and its length; kInvalid for bytes that do not start a complete, well-formed UTF-8
// character (what SentencePiece's normaliser replaces by U+FFFD, or a character cut off at the end of the buffer,
// which a later scan sees whole) and for a literal U+FFFD, which text and replaced bytes share: no cut next to
// either.
uint32_t decode(std::string_view s, size_t i, size_t& len) {
  size_t pos = i;
  char32_t cp = 0;
  const bool ok = unicode::decode_code_point(s, &pos, &cp);
  len = pos - i;
  return ok && cp != 0xFFFD ? static_cast<uint32_t>(cp) : kInvalid;
}

uint64_t pair_key(uint32_t x, uint32_t y) { return (uint64_t{x} << 32) | y; }

}  // namespace

std::unique_ptr<ChunkCutter> ChunkCutter::create(const std::string& model_bytes, std::string* why) {
  auto fail = [&](const std::string& reason) {
    if (why) *why = reason;
    return std::unique_ptr<ChunkCutter>();
  };
  std::string reason;
  std::optional<SpModel> sp = SpModel::try_parse(model_bytes, &reason);
  if (!sp) return fail("cannot parse the model: " + reason);
  const auto flags = sp->segmentation_flags();
  // Unigram models are encoded whole: the argument below holds for them on paper, but SentencePiece's lattice
  // scores in float and its unknown-run handling made chunked ids differ from whole-document ids on whitespace
  // runs and invalid bytes in tests/data/test_chunked_encode.cpp, and an id that differs is worse than memory.
  if (flags.at("model_type") != "bpe") return fail("the model is " + flags.at("model_type") + ", not BPE");
  if (flags.at("treat_whitespace_as_suffix") == "true") return fail("treat_whitespace_as_suffix is on");
  if (flags.at("remove_extra_whitespaces") == "true")
    return fail("remove_extra_whitespaces is on (a chunk's leading and trailing spaces would be dropped)");
  // The normaliser must work character by character: no precompiled charsmap (NFKC and the like rewrite
  // sequences) and spaces escaped as U+2581 (which the pieces below are written in).
  SpModel::NormalizerInfo norm;
  try {
    norm = sp->normalizer_info();
  } catch (const std::runtime_error& e) {
    return fail(std::string("cannot parse the normalizer spec: ") + e.what());
  }
  if (norm.has_charsmap) return fail("the normalizer is not identity (it has a precompiled charsmap)");
  if (!norm.escape_whitespaces) return fail("escape_whitespaces is off");

  std::unique_ptr<ChunkCutter> c(new ChunkCutter());
  c->ascii_single_.assign(128, 0);
  c->ascii_pairs_.assign(128 * 128 / 64, 0);
  for (const SpPiece& p : sp->pieces) {
    std::vector<uint32_t> cps;
    for (size_t i = 0, len = 0; i < p.piece.size(); i += len) cps.push_back(decode(p.piece, i, len));
    // Every type counts for pairs (more pairs only means fewer cuts); only pieces the segmenters can produce
    // from text count as known single characters.
    for (size_t k = 1; k < cps.size(); ++k) {
      const uint32_t x = cps[k - 1], y = cps[k];
      c->pairs_.insert(pair_key(x, y));
      if (x < 128 && y < 128) c->ascii_pairs_[(x * 128 + y) / 64] |= uint64_t{1} << ((x * 128 + y) % 64);
    }
    if (cps.size() == 1 && cps[0] != kInvalid &&
        (p.type == PieceType::normal || p.type == PieceType::user_defined)) {
      c->singles_.insert(cps[0]);
      if (cps[0] < 128) c->ascii_single_[cps[0]] = 1;
    }
  }
  return c;
}

bool ChunkCutter::may_cut(uint32_t x, uint32_t y) const {
  if (x < 128 && y < 128)
    return ascii_single_[x] && ascii_single_[y] && !((ascii_pairs_[(x * 128 + y) / 64] >> ((x * 128 + y) % 64)) & 1);
  const bool known_x = x < 128 ? ascii_single_[x] != 0 : singles_.count(x) > 0;
  const bool known_y = y < 128 ? ascii_single_[y] != 0 : singles_.count(y) > 0;
  return known_x && known_y && !pairs_.count(pair_key(x, y));
}

size_t ChunkCutter::find_cut(std::string_view text, size_t from, size_t target) const {
  size_t i = from;
  while (i < text.size() && (static_cast<unsigned char>(text[i]) & 0xC0) == 0x80) ++i;  // resynchronise
  uint32_t prev = kInvalid;
  size_t best = 0;
  for (size_t len = 0; i < text.size(); i += len) {
    uint32_t cp = decode(text, i, len);
    if (cp == ' ') cp = kSpaceMark;
    if (prev != kInvalid && cp != kInvalid && may_cut(prev, cp)) {
      if (i <= target) best = i;
      else return best ? best : i;
    }
    prev = cp;
  }
  return best;
}

void DocumentChunks::start() {
  buf_.clear();
  scan_from_ = 0;
  first_ = true;
}

bool DocumentChunks::next(std::string& out, bool& first, bool at_end) {
  size_t cut = 0;
  if (at_end) {
    if (buf_.empty()) return false;
    cut = buf_.size();
  } else {
    if (!cutter_ || buf_.size() <= chunk_) return false;
    cut = cutter_->find_cut(buf_, scan_from_, chunk_);
    if (cut == 0) {  // no cut yet: read on, and resume the search just before the end (a character may be split)
      scan_from_ = buf_.size() > 8 ? buf_.size() - 8 : 0;
      return false;
    }
  }
  out.assign(buf_, 0, cut);
  buf_.erase(0, cut);
  scan_from_ = 0;
  first = first_;
  first_ = false;
  return true;
}

size_t encode_chunk_bytes() {
  const char* v = std::getenv("POLYLLAMA_ENCODE_CHUNK_BYTES");
  if (!v || !*v) return size_t{256} << 10;
  char* end = nullptr;
  const unsigned long long n = std::strtoull(v, &end, 10);
  if (*end || n == 0 || v[0] == '-')
    fail_input(std::string("POLYLLAMA_ENCODE_CHUNK_BYTES=") + v + ": expected a positive number of bytes");
  return static_cast<size_t>(n);
}

}  // namespace polyllama
