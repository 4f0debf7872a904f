#include "polyllama/tokenizer/extend.hpp"

#include <sentencepiece_processor.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <unordered_set>

#include "polyllama/core/error.hpp"
#include "polyllama/tokenizer/sp_model.hpp"

namespace polyllama {

namespace {

constexpr std::string_view kSpace = "\xE2\x96\x81";  // U+2581, SentencePiece's escaped space

}  // namespace

void ExtendOptions::validate() const {
  if (max_new < 0) fail_input("--max-new must be >= 0 (0: no cap), got " + std::to_string(max_new));
  if (pad_to_multiple < 1)
    fail_input("--pad-to-multiple must be >= 1 (1: no padding), got " + std::to_string(pad_to_multiple));
}

bool piece_is_ascii_like(const std::string& piece) {
  bool only_ascii = true;
  for (size_t i = 0; i < piece.size(); ++i) {
    const auto c = static_cast<unsigned char>(piece[i]);
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return true;
    if (c >= 0x80) {
      if (piece.compare(i, kSpace.size(), kSpace) == 0) {
        i += kSpace.size() - 1;
        continue;
      }
      only_ascii = false;
    }
  }
  return only_ascii;
}

ExtendResult extend_vocabulary(const std::string& base, const std::string& base_name, const std::string& add,
                               const std::string& add_name, const ExtendOptions& opt) {
  opt.validate();
  SpModel merged = SpModel::parse(base, base_name);
  const SpModel other = SpModel::parse(add, add_name);
  ExtendResult r;
  r.base_pieces = static_cast<int64_t>(merged.pieces.size());
  std::unordered_set<std::string> have;
  float lowest = 0;
  bool any_normal = false;
  for (const SpPiece& p : merged.pieces) {
    have.insert(p.piece);
    if (p.type == PieceType::normal) lowest = any_normal ? std::min(lowest, p.score) : p.score, any_normal = true;
  }
  // Candidates in the new model's order: for BPE that is its merge order (best first).
  float score = lowest;  // the last score given: each new piece ranks strictly below the one before
  for (const SpPiece& p : other.pieces) {
    if (p.type != PieceType::normal) continue;
    ++r.candidates;
    if (have.count(p.piece)) {
      ++r.skipped_present;
      continue;
    }
    if (!opt.keep_ascii && piece_is_ascii_like(p.piece)) {
      ++r.skipped_ascii;
      continue;
    }
    if (opt.max_new > 0 && r.added >= opt.max_new) {
      ++r.skipped_cap;
      continue;
    }
    SpPiece n;
    n.piece = p.piece;
    n.type = PieceType::normal;
    // Whole steps below the lowest score, or one float step where a whole step is lost to rounding (LLaMA 2's
    // lowest normal pieces score -1e9, where floats are 64 apart): tied scores would leave SentencePiece's merge
    // order to position, which no merge list (tokenizer.json) reproduces.
    if (opt.scores != NewPieceScores::zero) {
      const float step = score - 1.0f;
      score = step < score ? step : std::nextafter(score, -std::numeric_limits<float>::infinity());
    }
    n.score = opt.scores == NewPieceScores::zero ? 0.0f : score;
    merged.pieces.push_back(std::move(n));
    have.insert(p.piece);
    ++r.added;
  }
  // Padding: unused pieces that BPE can never form, so they never appear in an encoding.
  const int64_t m = opt.pad_to_multiple;
  const int64_t want = (static_cast<int64_t>(merged.pieces.size()) + m - 1) / m * m;
  for (int64_t k = 0; static_cast<int64_t>(merged.pieces.size()) < want; ++k) {
    const std::string name = "<unused_" + std::to_string(k) + ">";
    if (have.count(name) ||
        bpe_can_form(name, [&](std::string_view x) { return have.count(std::string(x)) > 0; }))
      continue;
    SpPiece n;
    n.piece = name;
    n.type = PieceType::unused;
    merged.pieces.push_back(n);
    have.insert(name);
    ++r.padding;
  }
  merged.set_trainer_vocab_size(static_cast<int64_t>(merged.pieces.size()));
  r.model_bytes = merged.serialize();
  // The merged model must load in SentencePiece itself.
  sentencepiece::SentencePieceProcessor sp;
  const auto st = sp.LoadFromSerializedProto(r.model_bytes);
  if (!st.ok()) fail_runtime("the merged model does not load in SentencePiece: " + st.ToString(), __FILE__, __LINE__);
  PL_CHECK(sp.GetPieceSize() == static_cast<int>(merged.pieces.size()), "merged piece count");
  return r;
}

std::vector<std::vector<int32_t>> subword_recipes(const std::string& base, const std::string& merged,
                                                  int64_t first_new, const std::string& where) {
  const SpModel b = SpModel::parse(base, where + " (base tokenizer)");
  const SpModel m = SpModel::parse(merged, where);
  const auto nb = static_cast<int64_t>(b.pieces.size()), nm = static_cast<int64_t>(m.pieces.size());
  if (nm < nb) fail_input(where + ": the new tokenizer has " + std::to_string(nm) + " pieces, fewer than the base's " +
                          std::to_string(nb));
  for (int64_t i = 0; i < nb; ++i) {
    const SpPiece &x = b.pieces[static_cast<size_t>(i)], &y = m.pieces[static_cast<size_t>(i)];
    if (x.piece != y.piece || x.type != y.type)
      fail_input(where + ": piece " + std::to_string(i) + " is '" + y.piece + "', the checkpoint's tokenizer has '" +
                 x.piece + "' there: the new tokenizer must extend the checkpoint's (polyllama tokenizer extend)");
  }
  sentencepiece::SentencePieceProcessor sp;
  const auto st = sp.LoadFromSerializedProto(b.without_dummy_prefix().serialize());
  if (!st.ok()) fail_input(where + ": the base tokenizer does not load (" + st.ToString() + ")");
  std::vector<std::vector<int32_t>> out;
  for (int64_t i = std::max(first_new, int64_t{0}); i < nm; ++i) {
    const SpPiece& p = m.pieces[static_cast<size_t>(i)];
    std::vector<int32_t> ids;
    if (p.type == PieceType::normal || p.type == PieceType::user_defined) {
      std::string text;  // back from "▁" to the space it stands for
      for (size_t k = 0; k < p.piece.size(); ++k) {
        if (p.piece.compare(k, kSpace.size(), kSpace) == 0) {
          text += ' ';
          k += kSpace.size() - 1;
        } else {
          text += p.piece[k];
        }
      }
      std::vector<int> v;
      const auto e = sp.Encode(text, &v);
      if (!e.ok()) fail_runtime("SentencePiece encode failed: " + e.ToString(), __FILE__, __LINE__);
      ids.assign(v.begin(), v.end());
    }
    out.push_back(std::move(ids));
  }
  return out;
}

}  // namespace polyllama
