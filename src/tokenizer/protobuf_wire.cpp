#include "protobuf_wire.hpp"

#include <cstring>
#include <stdexcept>

namespace polyllama::wire {

float Field::as_float() const {
  float f;
  std::memcpy(&f, &fixed32, 4);
  return f;
}

Field Reader::next() {
  Field f;
  const size_t begin = pos_;
  const uint64_t tag = varint("tag");
  f.number = static_cast<uint32_t>(tag >> 3);
  f.wire = static_cast<uint32_t>(tag & 7);
  if (f.number == 0) throw std::runtime_error("field number 0 at byte " + std::to_string(begin));
  switch (f.wire) {
    case kVarint: f.varint = varint("varint"); break;
    case kFixed64: std::memcpy(&f.fixed64, take(8, f).data(), 8); break;
    case kLengthDelimited: f.payload = take(varint("length"), f); break;
    case kFixed32: std::memcpy(&f.fixed32, take(4, f).data(), 4); break;
    default:
      throw std::runtime_error("unsupported wire type " + std::to_string(f.wire) + " (field " +
                               std::to_string(f.number) + " at byte " + std::to_string(begin) + ")");
  }
  f.all = s_.substr(begin, pos_ - begin);
  return f;
}

uint64_t Reader::varint(const char* what) {
  const size_t begin = pos_;
  uint64_t v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (pos_ >= s_.size()) throw std::runtime_error(std::string("truncated ") + what + " at byte " +
                                                    std::to_string(begin));
    const auto b = static_cast<uint8_t>(s_[pos_++]);
    v |= static_cast<uint64_t>(b & 0x7f) << shift;
    if (!(b & 0x80)) return v;
  }
  throw std::runtime_error(std::string(what) + " longer than 10 bytes at byte " + std::to_string(begin));
}

std::string_view Reader::take(uint64_t n, const Field& f) {
  if (n > s_.size() - pos_)
    throw std::runtime_error("field " + std::to_string(f.number) + " (wire type " + std::to_string(f.wire) +
                             ") at byte " + std::to_string(pos_) + " needs " + std::to_string(n) +
                             " bytes, " + std::to_string(s_.size() - pos_) + " left");
  const std::string_view r = s_.substr(pos_, static_cast<size_t>(n));
  pos_ += static_cast<size_t>(n);
  return r;
}

void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

void put_tag(std::string& out, uint32_t number, uint32_t wire) { put_varint(out, (uint64_t{number} << 3) | wire); }

void put_bytes(std::string& out, uint32_t number, std::string_view bytes) {
  put_tag(out, number, kLengthDelimited);
  put_varint(out, bytes.size());
  out.append(bytes);
}

void put_float(std::string& out, uint32_t number, float f) {
  put_tag(out, number, kFixed32);
  char b[4];
  std::memcpy(b, &f, 4);
  out.append(b, 4);
}

void put_int(std::string& out, uint32_t number, int64_t v) {
  put_tag(out, number, kVarint);
  put_varint(out, static_cast<uint64_t>(v));
}

}  // namespace polyllama::wire
