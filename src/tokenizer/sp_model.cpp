#include "polyllama/tokenizer/sp_model.hpp"

#include <cstring>
#include <stdexcept>

#include "polyllama/core/error.hpp"

namespace polyllama {

namespace {

// One protobuf field as it sits in the bytes: number, wire type, payload (varint value or length-delimited
// bytes) and the whole encoding [begin, end) so it can be copied back untouched.
struct WireField {
  uint32_t number = 0, wire = 0;
  uint64_t varint = 0;
  uint32_t fixed32 = 0;
  std::string_view payload;  // wire type 2
  std::string_view all;      // tag through payload
};

class WireReader {
 public:
  explicit WireReader(std::string_view s) : s_(s) {}
  bool done() const { return pos_ >= s_.size(); }
  WireField next() {
    WireField f;
    const size_t begin = pos_;
    const uint64_t tag = varint();
    f.number = static_cast<uint32_t>(tag >> 3);
    f.wire = static_cast<uint32_t>(tag & 7);
    switch (f.wire) {
      case 0: f.varint = varint(); break;
      case 1: take(8); break;
      case 2: {
        const uint64_t n = varint();
        if (n > s_.size() - pos_) throw std::runtime_error("a length-delimited field runs past the end");
        f.payload = s_.substr(pos_, static_cast<size_t>(n));
        pos_ += static_cast<size_t>(n);
        break;
      }
      case 5: {
        const std::string_view b = take(4);
        std::memcpy(&f.fixed32, b.data(), 4);
        break;
      }
      default: throw std::runtime_error("unsupported wire type " + std::to_string(f.wire));
    }
    if (f.number == 0) throw std::runtime_error("field number 0");
    f.all = s_.substr(begin, pos_ - begin);
    return f;
  }

 private:
  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (pos_ >= s_.size()) throw std::runtime_error("truncated varint");
      const auto b = static_cast<uint8_t>(s_[pos_++]);
      v |= static_cast<uint64_t>(b & 0x7f) << shift;
      if (!(b & 0x80)) return v;
    }
    throw std::runtime_error("varint longer than 10 bytes");
  }
  std::string_view take(size_t n) {
    if (n > s_.size() - pos_) throw std::runtime_error("truncated field");
    const std::string_view r = s_.substr(pos_, n);
    pos_ += n;
    return r;
  }
  std::string_view s_;
  size_t pos_ = 0;
};

void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}
void put_tag(std::string& out, uint32_t number, uint32_t wire) { put_varint(out, (uint64_t{number} << 3) | wire); }
void put_bytes(std::string& out, uint32_t number, std::string_view b) {
  put_tag(out, number, 2);
  put_varint(out, b.size());
  out.append(b);
}
void put_float(std::string& out, uint32_t number, float f) {
  put_tag(out, number, 5);
  char b[4];
  std::memcpy(b, &f, 4);
  out.append(b, 4);
}
// int32 fields are written as 64-bit two's complement varints (protobuf's rule for negatives such as pad_id -1).
void put_int(std::string& out, uint32_t number, int64_t v) {
  put_tag(out, number, 0);
  put_varint(out, static_cast<uint64_t>(v));
}

float as_float(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

const SpModel::Field* find_field(const std::vector<SpModel::Field>& fields, uint32_t number) {
  for (const auto& f : fields)
    if (f.number == number) return &f;
  return nullptr;
}

// The payload of a top-level message field (the bytes after tag and length).
std::string_view payload_of(const SpModel::Field& f) {
  WireReader r(f.bytes);
  return r.next().payload;
}

// Rewrites the payload of message `msg` with `set` replacing (or appending) the given scalar fields.
std::string rewrite_message(std::string_view msg, const std::map<uint32_t, std::string>& set) {
  std::string out;
  std::map<uint32_t, bool> written;
  WireReader r(msg);
  while (!r.done()) {
    const WireField f = r.next();
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

}  // namespace

SpModel SpModel::parse(const std::string& model_bytes, const std::string& where) {
  SpModel m;
  try {
    WireReader r(model_bytes);
    while (!r.done()) {
      const WireField f = r.next();
      if (f.number == 1 && f.wire == 2) {
        SpPiece p;
        p.raw = std::string(f.all);
        WireReader pr(f.payload);
        while (!pr.done()) {
          const WireField g = pr.next();
          if (g.number == 1 && g.wire == 2) p.piece = std::string(g.payload);
          else if (g.number == 2 && g.wire == 5) p.score = as_float(g.fixed32);
          else if (g.number == 3 && g.wire == 0) p.type = static_cast<PieceType>(g.varint);
        }
        m.pieces.push_back(std::move(p));
      } else {
        m.fields.push_back({f.number, std::string(f.all)});
      }
    }
  } catch (const std::runtime_error& e) {
    fail_input(where + ": not a SentencePiece model (" + e.what() + ")");
  }
  if (m.pieces.empty()) fail_input(where + ": not a SentencePiece model (no pieces)");
  return m;
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
  const Field* ts = find_field(fields, 2);
  if (!ts) return 0;
  WireReader r(payload_of(*ts));
  int64_t v = 0;
  while (!r.done()) {
    const WireField f = r.next();
    if (f.number == 4 && f.wire == 0) v = static_cast<int64_t>(f.varint);
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
  auto i32 = [](uint64_t v) { return std::to_string(static_cast<int32_t>(static_cast<uint32_t>(v))); };
  if (const Field* ts = find_field(fields, 2)) {
    WireReader r(payload_of(*ts));
    while (!r.done()) {
      const WireField f = r.next();
      switch (f.number) {
        case 3: {
          static const char* kTypes[] = {"", "unigram", "bpe", "word", "char"};
          if (f.varint >= 1 && f.varint <= 4) flags["model_type"] = kTypes[f.varint];
          break;
        }
        case 10: flags["character_coverage"] = std::to_string(as_float(f.fixed32)); break;
        case 35: flags["byte_fallback"] = b(f.varint); break;
        case 25: flags["split_digits"] = b(f.varint); break;
        case 21: flags["split_by_unicode_script"] = b(f.varint); break;
        case 23: flags["split_by_number"] = b(f.varint); break;
        case 22: flags["split_by_whitespace"] = b(f.varint); break;
        case 24: flags["treat_whitespace_as_suffix"] = b(f.varint); break;
        case 26: flags["allow_whitespace_only_pieces"] = b(f.varint); break;
        case 20: flags["max_sentencepiece_length"] = i32(f.varint); break;
        case 18: flags["max_sentence_length"] = i32(f.varint); break;
        case 40: flags["unk_id"] = i32(f.varint); break;
        case 41: flags["bos_id"] = i32(f.varint); break;
        case 42: flags["eos_id"] = i32(f.varint); break;
        case 43: flags["pad_id"] = i32(f.varint); break;
        default: break;
      }
    }
  }
  if (const Field* ns = find_field(fields, 3)) {
    WireReader r(payload_of(*ns));
    while (!r.done()) {
      const WireField f = r.next();
      if (f.number == 1 && f.wire == 2 && !f.payload.empty()) flags["normalization_rule_name"] = std::string(f.payload);
      if (f.number == 3) flags["add_dummy_prefix"] = b(f.varint);
      if (f.number == 4) flags["remove_extra_whitespaces"] = b(f.varint);
    }
  }
  return flags;
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
