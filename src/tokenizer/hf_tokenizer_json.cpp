#include "polyllama/tokenizer/hf_tokenizer_json.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <map>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "polyllama/tokenizer/sp_model.hpp"
#include "protobuf_wire.hpp"

namespace polyllama {

namespace {

using ojson = nlohmann::ordered_json;  // keys in the order tokenizers writes them; the vocabulary in id order

constexpr const char* kSpace = "\xE2\x96\x81";  // U+2581, SentencePiece's escaped space

// The number of characters (code points) of valid UTF-8 `s`; -1 when it is not valid UTF-8.
int64_t utf8_length(std::string_view s) {
  int64_t n = 0;
  for (size_t i = 0; i < s.size(); ++n) {
    const auto c = static_cast<unsigned char>(s[i]);
    const size_t len = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
    if (len == 0 || i + len > s.size()) return -1;
    uint32_t cp = len == 1 ? c : len == 2 ? (c & 0x1Fu) : len == 3 ? (c & 0x0Fu) : (c & 0x07u);
    for (size_t k = 1; k < len; ++k) {
      const auto t = static_cast<unsigned char>(s[i + k]);
      if ((t & 0xC0) != 0x80) return -1;
      cp = (cp << 6) | (t & 0x3Fu);
    }
    static constexpr uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMin[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp < 0xE000)) return -1;
    i += len;
  }
  return n;
}

bool is_char_boundary(std::string_view s, size_t i) { return (static_cast<unsigned char>(s[i]) & 0xC0) != 0x80; }

// The settings of a .model that decide how text becomes pieces, with the proto's defaults.
struct SpSettings {
  int64_t model_type = 1;  // 1 unigram, 2 bpe, 3 word, 4 char
  bool byte_fallback = false, whitespace_suffix = false;
  bool add_dummy_prefix = true, remove_extra_whitespaces = true, escape_whitespaces = true;
  bool has_charsmap = false;
};

SpSettings read_settings(const SpModel& m) {
  SpSettings s;
  for (wire::Reader r(m.message(2)); !r.done();) {  // TrainerSpec
    const wire::Field f = r.next();
    if (f.wire != wire::kVarint) continue;
    if (f.number == 3) s.model_type = static_cast<int64_t>(f.varint);
    else if (f.number == 24) s.whitespace_suffix = f.varint != 0;
    else if (f.number == 35) s.byte_fallback = f.varint != 0;
  }
  for (wire::Reader r(m.message(3)); !r.done();) {  // NormalizerSpec
    const wire::Field f = r.next();
    if (f.number == 2 && f.wire == wire::kLengthDelimited) s.has_charsmap = !f.payload.empty();
    if (f.wire != wire::kVarint) continue;
    if (f.number == 3) s.add_dummy_prefix = f.varint != 0;
    else if (f.number == 4) s.remove_extra_whitespaces = f.varint != 0;
    else if (f.number == 5) s.escape_whitespaces = f.varint != 0;
  }
  return s;
}

// Why the tokenizers library cannot reproduce this model's ids; empty when it can.
std::string unsupported(const SpModel& m, const SpSettings& s,
                        const std::unordered_map<std::string_view, int64_t>& vocab) {
  if (s.model_type != 1 && s.model_type != 2)
    return "model_type " + std::string(s.model_type == 3 ? "word" : s.model_type == 4 ? "char" : "unknown") +
           " (only bpe and unigram have a tokenizers model)";
  if (!s.byte_fallback) return "byte_fallback is off (LLaMA's converter always turns byte fallback on)";
  if (s.has_charsmap) return "the normalizer is not identity (a precompiled charsmap)";
  if (s.remove_extra_whitespaces) return "remove_extra_whitespaces is on";
  if (!s.escape_whitespaces) return "escape_whitespaces is off";
  if (s.whitespace_suffix) return "treat_whitespace_as_suffix is on";
  if (vocab.size() != m.pieces.size()) return "the model has duplicate pieces";
  int unknowns = 0;
  for (size_t i = 0; i < m.pieces.size(); ++i) {
    const SpPiece& p = m.pieces[i];
    if (p.piece.empty()) return "piece " + std::to_string(i) + " is empty";
    const int64_t chars = utf8_length(p.piece);
    if (chars < 0) return "piece " + std::to_string(i) + " is not valid UTF-8";
    if (!std::isfinite(p.score)) return "piece " + std::to_string(i) + " has a score that is not finite";
    if (p.type == PieceType::unknown) ++unknowns;
    // SentencePiece merges into an unused piece and splits it again; the tokenizers library would keep it. Only
    // unused pieces that nothing can form (the padding of `tokenizer extend`) are safe.
    if (p.type == PieceType::unused &&
        (chars == 1 || (s.model_type == 2 && bpe_can_form(p.piece, [&](std::string_view x) {
                          return vocab.count(x) > 0;
                        }))))
      return "unused piece " + std::to_string(i) + " '" + p.piece + "' could appear in an encoding";
  }
  if (unknowns != 1) return "the model has " + std::to_string(unknowns) + " unknown pieces, not one";
  return "";
}

// SentencePieceExtractor's merges (transformers generate_merges with the pieces' scores): for every piece, each
// split into two pieces, in the order of the parts' ids; then all of them sorted stably by the merged piece's
// score, the left part's length and the right part's length (characters), each descending.
std::vector<std::pair<std::string_view, std::string_view>> bpe_merges(
    const SpModel& m, const std::unordered_map<std::string_view, int64_t>& vocab) {
  struct Merge {
    std::string_view left, right;
    float score;
    int64_t left_chars, right_chars;
  };
  std::vector<Merge> merges;
  std::vector<Merge> local;
  for (const SpPiece& p : m.pieces) {
    const std::string_view piece = p.piece;
    local.clear();
    int64_t left_chars = 0;
    const int64_t chars = utf8_length(piece);
    for (size_t i = 1; i < piece.size(); ++i) {
      if (!is_char_boundary(piece, i)) continue;
      ++left_chars;
      const std::string_view l = piece.substr(0, i), r = piece.substr(i);
      if (vocab.count(l) && vocab.count(r)) local.push_back({l, r, p.score, left_chars, chars - left_chars});
    }
    std::sort(local.begin(), local.end(), [&](const Merge& a, const Merge& b) {
      const int64_t al = vocab.at(a.left), bl = vocab.at(b.left);
      return al != bl ? al < bl : vocab.at(a.right) < vocab.at(b.right);
    });
    merges.insert(merges.end(), local.begin(), local.end());
  }
  // Python's sorted(..., reverse=True) keeps equal keys in their original order: a stable sort, descending.
  std::stable_sort(merges.begin(), merges.end(), [](const Merge& a, const Merge& b) {
    if (a.score != b.score) return a.score > b.score;
    if (a.left_chars != b.left_chars) return a.left_chars > b.left_chars;
    return a.right_chars > b.right_chars;
  });
  std::vector<std::pair<std::string_view, std::string_view>> out;
  out.reserve(merges.size());
  for (const Merge& x : merges) out.emplace_back(x.left, x.right);
  return out;
}

// Normal pieces that share their score with another one, where it matters: SentencePiece merges the leftmost of
// equally scored pairs, tokenizers the pair ranked first, so where such pieces compete the ids can differ. Groups
// made only of "▁" runs are harmless (both merge a run of spaces left to right) and not counted. Empty when none.
std::string tied_scores(const SpModel& m) {
  std::map<float, std::vector<size_t>> by_score;
  for (size_t i = 0; i < m.pieces.size(); ++i)
    if (m.pieces[i].type == PieceType::normal) by_score[m.pieces[i].score].push_back(i);
  auto spaces_only = [&](size_t i) {
    const std::string& p = m.pieces[i].piece;
    for (size_t k = 0; k < p.size(); k += 3)
      if (p.compare(k, 3, kSpace) != 0) return false;
    return true;
  };
  int64_t tied = 0;
  std::string example;
  for (const auto& [score, ids] : by_score) {
    if (ids.size() < 2 || std::all_of(ids.begin(), ids.end(), spaces_only)) continue;
    tied += static_cast<int64_t>(ids.size());
    if (example.empty()) {
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.9g", static_cast<double>(score));
      example = "'" + m.pieces[ids[0]].piece + "' and '" + m.pieces[ids[1]].piece + "' both score " + buf;
    }
  }
  if (tied == 0) return "";
  return std::to_string(tied) + " pieces share their score with another piece (" + example +
         "): SentencePiece merges the leftmost of equally scored pairs, tokenizers the one ranked first, so ids "
         "can differ where such pieces compete; give the pieces distinct scores to make tokenizer.json exact";
}

ojson replace(const std::string& from, const std::string& to) {
  return {{"type", "Replace"}, {"pattern", {{"String", from}}}, {"content", to}};
}

// LlamaTokenizerFast.update_post_processor: "<s>:0 $A:0" and "<s>:0 $A:0 <s>:1 $B:1" (EOS after each when asked).
ojson post_processor(const SpModel& m, const HfTokenizerJsonOptions& o) {
  const std::map<std::string, std::string> flags = m.segmentation_flags();
  auto piece = [&](const char* key) -> const std::string* {
    const int64_t id = std::stoll(flags.at(key));
    return id >= 0 && id < static_cast<int64_t>(m.pieces.size()) ? &m.pieces[static_cast<size_t>(id)].piece : nullptr;
  };
  const std::string* bos = o.add_bos_token ? piece("bos_id") : nullptr;
  const std::string* eos = o.add_eos_token ? piece("eos_id") : nullptr;
  if (!bos && !eos) return nullptr;
  auto special = [](const std::string& name, int type_id) {
    return ojson{{"SpecialToken", {{"id", name}, {"type_id", type_id}}}};
  };
  auto sequence = [](const char* id, int type_id) { return ojson{{"Sequence", {{"id", id}, {"type_id", type_id}}}}; };
  ojson single = ojson::array(), pair = ojson::array();
  for (int type_id = 0; type_id < 2; ++type_id) {
    ojson& t = type_id == 0 ? single : pair;
    if (bos) t.push_back(special(*bos, type_id));
    t.push_back(sequence(type_id == 0 ? "A" : "B", type_id));
    if (eos) t.push_back(special(*eos, type_id));
  }
  pair.insert(pair.begin(), single.begin(), single.end());
  ojson specials = ojson::object();
  for (const auto& [key, name] : {std::pair{"bos_id", bos}, std::pair{"eos_id", eos}})
    if (name) specials[*name] = {{"id", *name}, {"ids", ojson::array({std::stoll(flags.at(key))})}, {"tokens", ojson::array({*name})}};
  return {{"type", "TemplateProcessing"}, {"single", single}, {"pair", pair}, {"special_tokens", specials}};
}

}  // namespace

std::optional<HfTokenizerJson> hf_tokenizer_json(const std::string& model_bytes, const HfTokenizerJsonOptions& opts,
                                                 std::string* why_not) {
  auto refuse = [&](const std::string& why) -> std::optional<HfTokenizerJson> {
    if (why_not) *why_not = why;
    return std::nullopt;
  };
  std::string reason;
  std::optional<SpModel> sp = SpModel::try_parse(model_bytes, &reason);
  if (!sp) return refuse("not a SentencePiece model (" + reason + ")");
  const SpModel& m = *sp;
  SpSettings s;
  try {
    s = read_settings(m);
  } catch (const std::exception& e) {
    return refuse(std::string("not a SentencePiece model (") + e.what() + ")");
  }
  std::unordered_map<std::string_view, int64_t> vocab;  // piece -> id
  for (size_t i = 0; i < m.pieces.size(); ++i) vocab.emplace(m.pieces[i].piece, static_cast<int64_t>(i));
  if (const std::string why = unsupported(m, s, vocab); !why.empty()) return refuse(why);

  ojson added = ojson::array();
  int64_t unk_id = 0;
  for (size_t i = 0; i < m.pieces.size(); ++i) {
    const SpPiece& p = m.pieces[i];
    if (p.type == PieceType::unknown) unk_id = static_cast<int64_t>(i);
    if (p.type != PieceType::unknown && p.type != PieceType::control && p.type != PieceType::user_defined) continue;
    added.push_back({{"id", i},
                     {"content", p.piece},
                     {"single_word", false},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"normalized", false},
                     {"special", p.type != PieceType::user_defined}});
  }

  ojson model;
  if (s.model_type == 2) {
    // Appended to ordered_json's vector directly: its operator[] searches linearly, quadratic over 32000 pieces
    // (the pieces are distinct, checked above).
    ojson v = ojson::object();
    auto& entries = static_cast<ojson::object_t::Container&>(v.get_ref<ojson::object_t&>());
    entries.reserve(m.pieces.size());
    for (size_t i = 0; i < m.pieces.size(); ++i) entries.emplace_back(m.pieces[i].piece, i);
    const auto merges = bpe_merges(m, vocab);
    // "left right" as every tokenizers version reads them; pairs only when a part holds a space.
    const bool as_pairs = std::any_of(merges.begin(), merges.end(), [](const auto& lr) {
      return lr.first.find(' ') != std::string_view::npos || lr.second.find(' ') != std::string_view::npos;
    });
    ojson ml = ojson::array();
    for (const auto& [l, r] : merges) {
      if (as_pairs) ml.push_back(ojson::array({std::string(l), std::string(r)}));
      else ml.push_back(std::string(l) + " " + std::string(r));
    }
    model = {{"type", "BPE"},
             {"dropout", nullptr},
             {"unk_token", m.pieces[static_cast<size_t>(unk_id)].piece},
             {"continuing_subword_prefix", nullptr},
             {"end_of_word_suffix", nullptr},
             {"fuse_unk", true},
             {"byte_fallback", true},
             {"vocab", std::move(v)},
             {"merges", std::move(ml)}};
  } else {
    // LlamaConverter.vocab scores the first three pieces (unk, bos, eos) 0.
    ojson v = ojson::array();
    for (size_t i = 0; i < m.pieces.size(); ++i)
      v.push_back(ojson::array({m.pieces[i].piece, i < 3 ? 0.0 : static_cast<double>(m.pieces[i].score)}));
    model = {{"type", "Unigram"}, {"unk_id", unk_id}, {"vocab", std::move(v)}, {"byte_fallback", true}};
  }

  ojson normalizers = ojson::array();
  if (s.add_dummy_prefix) normalizers.push_back({{"type", "Prepend"}, {"prepend", kSpace}});
  normalizers.push_back(replace(" ", kSpace));
  ojson decoders = {replace(kSpace, " "), {{"type", "ByteFallback"}}, {{"type", "Fuse"}}};
  if (s.add_dummy_prefix) decoders.push_back({{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}});

  const ojson doc = {{"version", "1.0"},
                     {"truncation", nullptr},
                     {"padding", nullptr},
                     {"added_tokens", std::move(added)},
                     {"normalizer", {{"type", "Sequence"}, {"normalizers", std::move(normalizers)}}},
                     {"pre_tokenizer", nullptr},
                     {"post_processor", post_processor(m, opts)},
                     {"decoder", {{"type", "Sequence"}, {"decoders", std::move(decoders)}}},
                     {"model", std::move(model)}};
  return HfTokenizerJson{doc.dump(2) + "\n", s.model_type == 2 ? tied_scores(m) : ""};
}

}  // namespace polyllama
