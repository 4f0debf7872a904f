#pragma once
// The protobuf wire format, read and written by hand for SentencePiece .model files (a ModelProto): Debian's
// libsentencepiece bundles its own protobuf, so polyllama must never link libprotobuf. Private to the
// tokenizer area: SpModel (sp_model.cpp) decodes and rewrites models with it, FastBpe reads their settings.
#include <cstdint>
#include <string>
#include <string_view>

namespace polyllama::wire {

// Wire types; 3 and 4 (groups) are deprecated, never occur in a .model, and are rejected.
inline constexpr uint32_t kVarint = 0, kFixed64 = 1, kLengthDelimited = 2, kFixed32 = 5;

// One field as it sits in the bytes: number, wire type, the value of that wire type, and the whole encoding
// (tag through payload) so a rewrite can copy a field it does not change back untouched.
struct Field {
  uint32_t number = 0, wire = 0;
  uint64_t varint = 0;       // kVarint
  uint32_t fixed32 = 0;      // kFixed32 (a float's bits for `float` fields)
  uint64_t fixed64 = 0;      // kFixed64
  std::string_view payload;  // kLengthDelimited: a string, bytes or a nested message
  std::string_view all;      // tag through payload

  float as_float() const;  // fixed32 as the float it encodes
};

// Reads a message's fields in order. A caller skips a field by ignoring what next() returns: next() consumes
// any supported wire type whole.
class Reader {
 public:
  explicit Reader(std::string_view message) : s_(message) {}
  bool done() const { return pos_ >= s_.size(); }
  // Throws std::runtime_error naming the byte offset in this message on truncation, a varint over 10 bytes,
  // field number 0 or an unsupported wire type; callers add which file it was.
  Field next();

 private:
  uint64_t varint(const char* what);
  std::string_view take(uint64_t n, const Field& f);
  std::string_view s_;
  size_t pos_ = 0;
};

// Writers, appending one field to `out`.
void put_varint(std::string& out, uint64_t v);
void put_tag(std::string& out, uint32_t number, uint32_t wire);
void put_bytes(std::string& out, uint32_t number, std::string_view bytes);
void put_float(std::string& out, uint32_t number, float f);
// int32/int64 fields: two's complement in a 64-bit varint (protobuf's rule, so pad_id -1 takes 10 bytes).
void put_int(std::string& out, uint32_t number, int64_t v);

}  // namespace polyllama::wire
