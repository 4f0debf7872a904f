#include "polyllama/tokenizer/sp_model.hpp"

#include <stdexcept>

#include "polyllama/core/error.hpp"
#include "protobuf_wire.hpp"

namespace polyllama {

namespace {

using wire::put_bytes;
using wire::put_float;
using wire::put_int;

const SpModel::Field* find_field(const std::vector<SpModel::Field>& fields, uint32_t number) {
  for (const auto& f : fields)
    if (f.number == number) return &f;
  return nullptr;
}

// The payload of a top-level message field (the bytes after tag and length).
std::string_view payload_of(const SpModel::Field& f) { return wire::Reader(f.bytes).next().payload; }

// Rewrites the payload of message `msg` with `set` replacing (or appending) the given scalar fields.
std::string rewrite_message(std::string_view msg, const std::map<uint32_t, std::string>& set) {
  std::string out;
  std::map<uint32_t, bool> written;
  wire::Reader r(msg);
  while (!r.done()) {
    const wire::Field f = r.next();
    auto it = set.find(f.number);
    if (it == set.end()) {
      out.append(f.all);
    } else if (!written[f.number]) {
      out.append(it->second);
      written[f.number] = true;
    }
  }
  for (const auto& [number, bytes] : set)
    if (!written[number]) out.append(bytes);
  return out;
}

// The pieces decoded, every other field kept as bytes; throws std::runtime_error saying what is wrong.
SpModel decode(const std::string& model_bytes) {
  SpModel m;
  wire::Reader r(model_bytes);
  while (!r.done()) {
    const wire::Field f = r.next();
    if (f.number != 1 || f.wire != wire::kLengthDelimited) {
      // trainer_spec and normalizer_spec are read later (segmentation_flags, the vocab size, the normalizer
      // rewrite): check now that they are messages, so a broken one fails here naming the file rather than as a
      // raw wire error later (found by tests/fuzz/fuzz_sp_model).
      if (f.number == 2 || f.number == 3) {
        if (f.wire != wire::kLengthDelimited)
          throw std::runtime_error(std::string(f.number == 2 ? "trainer_spec" : "normalizer_spec") +
                                   " is not a message");
        for (wire::Reader nested(f.payload); !nested.done();) nested.next();
      }
      m.fields.push_back({f.number, std::string(f.all)});
      continue;
    }
    SpPiece p;  // SentencePiece { piece = 1, score = 2, type = 3 }
    p.raw = std::string(f.all);
    wire::Reader pr(f.payload);
    while (!pr.done()) {
      const wire::Field g = pr.next();
      if (g.number == 1 && g.wire == wire::kLengthDelimited) p.piece = std::string(g.payload);
      else if (g.number == 2 && g.wire == wire::kFixed32) p.score = g.as_float();
      else if (g.number == 3 && g.wire == wire::kVarint) p.type = static_cast<PieceType>(g.varint);
    }
    m.pieces.push_back(std::move(p));
  }
  if (m.pieces.empty()) throw std::runtime_error("no pieces");
  return m;
}

}  // namespace

SpModel SpModel::parse(const std::string& model_bytes, const std::string& where) {
  try {
    return decode(model_bytes);
  } catch (const std::runtime_error& e) {
    fail_input(where + ": not a SentencePiece model (" + e.what() + ")");
  }
}

std::optional<SpModel> SpModel::try_parse(const std::string& model_bytes, std::string* why) {
  try {
    return decode(model_bytes);
  } catch (const std::runtime_error& e) {
    if (why) *why = e.what();
    return std::nullopt;
  }
}

std::string_view SpModel::message(uint32_t number) const {
  const Field* f = find_field(fields, number);
  return f ? payload_of(*f) : std::string_view();
}

std::string SpModel::serialize() const {
  std::string out;
  for (const SpPiece& p : pieces) {
    if (!p.raw.empty()) {
      out += p.raw;
      continue;
    }
    std::string msg;
    put_bytes(msg, 1, p.piece);
    put_float(msg, 2, p.score);
    if (p.type != PieceType::normal) put_int(msg, 3, static_cast<int>(p.type));
    put_bytes(out, 1, msg);
  }
  for (const Field& f : fields) out += f.bytes;
  return out;
}

int64_t SpModel::trainer_vocab_size() const {
  wire::Reader r(message(2));
  int64_t v = 0;
  while (!r.done()) {
    const wire::Field f = r.next();
    if (f.number == 4 && f.wire == wire::kVarint) v = static_cast<int64_t>(f.varint);
  }
  return v;
}

void SpModel::set_trainer_vocab_size(int64_t n) {
  std::string field4;
  put_int(field4, 4, n);
  for (Field& f : fields) {
    if (f.number != 2) continue;
    std::string bytes;
    put_bytes(bytes, 2, rewrite_message(payload_of(f), {{4, field4}}));
    f.bytes = std::move(bytes);
    return;
  }
  // No trainer_spec at all: add one holding just the size, before the normalizer as SentencePiece orders it.
  std::string bytes;
  put_bytes(bytes, 2, field4);
  fields.insert(fields.begin(), Field{2, bytes});
}

std::map<std::string, std::string> SpModel::segmentation_flags() const {
  // Proto defaults (sentencepiece_model.proto, 0.1.97) for fields the file leaves out.
  std::map<std::string, std::string> flags = {{"model_type", "unigram"},
                                              {"character_coverage", "0.9995"},
                                              {"byte_fallback", "false"},
                                              {"split_digits", "false"},
                                              {"split_by_unicode_script", "true"},
                                              {"split_by_number", "true"},
                                              {"split_by_whitespace", "true"},
                                              {"treat_whitespace_as_suffix", "false"},
                                              {"allow_whitespace_only_pieces", "false"},
                                              {"max_sentencepiece_length", "16"},
                                              {"max_sentence_length", "4192"},
                                              {"unk_id", "0"},
                                              {"bos_id", "1"},
                                              {"eos_id", "2"},
                                              {"pad_id", "-1"},
                                              {"normalization_rule_name", "nmt_nfkc"},
                                              {"add_dummy_prefix", "true"},
                                              {"remove_extra_whitespaces", "true"}};
  auto b = [](uint64_t v) { return std::string(v ? "true" : "false"); };
  // TrainerSpec fields by number, besides model_type (3) and character_coverage (10).
  static const std::map<uint32_t, const char*> kBools = {
      {35, "byte_fallback"},       {25, "split_digits"},        {21, "split_by_unicode_script"},
      {23, "split_by_number"},     {22, "split_by_whitespace"}, {24, "treat_whitespace_as_suffix"},
      {26, "allow_whitespace_only_pieces"}};
  static const std::map<uint32_t, const char*> kInt32s = {
      {20, "max_sentencepiece_length"}, {18, "max_sentence_length"}, {40, "unk_id"}, {41, "bos_id"},
      {42, "eos_id"},                   {43, "pad_id"}};
  static const char* kTypes[] = {"", "unigram", "bpe", "word", "char"};
  for (wire::Reader r(message(2)); !r.done();) {  // TrainerSpec
    const wire::Field f = r.next();
    if (const auto it = kBools.find(f.number); it != kBools.end())
      flags[it->second] = b(f.varint);
    else if (const auto it32 = kInt32s.find(f.number); it32 != kInt32s.end())
      flags[it32->second] = std::to_string(static_cast<int32_t>(static_cast<uint32_t>(f.varint)));
    else if (f.number == 3 && f.varint >= 1 && f.varint <= 4)
      flags["model_type"] = kTypes[f.varint];
    else if (f.number == 10)
      flags["character_coverage"] = std::to_string(f.as_float());
  }
  for (wire::Reader r(message(3)); !r.done();) {  // NormalizerSpec
    const wire::Field f = r.next();
    if (f.number == 1 && f.wire == wire::kLengthDelimited && !f.payload.empty())
      flags["normalization_rule_name"] = std::string(f.payload);
    if (f.number == 3) flags["add_dummy_prefix"] = b(f.varint);
    if (f.number == 4) flags["remove_extra_whitespaces"] = b(f.varint);
  }
  return flags;
}

SpModel::NormalizerInfo SpModel::normalizer_info() const {
  NormalizerInfo info;
  for (wire::Reader r(message(3)); !r.done();) {
    const wire::Field f = r.next();
    if (f.number == 2 && f.wire == wire::kLengthDelimited) info.has_charsmap = !f.payload.empty();
    if (f.number == 5) info.escape_whitespaces = f.varint != 0;
  }
  return info;
}

bool bpe_can_form(std::string_view p, const std::function<bool(std::string_view)>& is_piece) {
  auto available = [&](std::string_view s) {
    const auto c = static_cast<unsigned char>(s[0]);
    const size_t len = c < 0x80 ? 1 : c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
    return s.size() == len || is_piece(s);
  };
  for (size_t i = 1; i < p.size(); ++i) {
    if ((static_cast<unsigned char>(p[i]) & 0xC0) == 0x80) continue;  // not a character boundary
    if (available(p.substr(0, i)) && available(p.substr(i))) return true;
  }
  return false;
}

SpModel SpModel::without_dummy_prefix() const {
  SpModel m = *this;
  std::string off3, off4;
  put_int(off3, 3, 0);
  put_int(off4, 4, 0);
  for (Field& f : m.fields) {
    if (f.number != 3) continue;
    std::string bytes;
    put_bytes(bytes, 3, rewrite_message(payload_of(f), {{3, off3}, {4, off4}}));
    f.bytes = std::move(bytes);
    return m;
  }
  std::string bytes;
  put_bytes(bytes, 3, off3 + off4);
  m.fields.push_back({3, bytes});
  return m;
}

}  // namespace polyllama
