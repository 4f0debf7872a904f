#include "polyllama/core/unicode_script.hpp"

#include <algorithm>
#include <iterator>

namespace polyllama::unicode {

namespace {

struct ScriptRange {
  uint32_t first;  // the range ends where the next one starts
  uint8_t script;  // a Script value
  uint8_t kind;    // a CharKind value
};
struct ScriptNames {
  std::string_view name, code;
};

#include "unicode_scripts_table.inc"

static_assert(std::size(kScriptNames) == static_cast<size_t>(kScriptCount), "regenerate the table and the header");

const ScriptRange* range_of(char32_t c) {
  if (c > 0x10FFFF) return nullptr;
  const auto* end = std::end(kScriptRanges);
  const auto* it = std::upper_bound(std::begin(kScriptRanges), end, static_cast<uint32_t>(c),
                                    [](uint32_t v, const ScriptRange& r) { return v < r.first; });
  return it - 1;  // kScriptRanges[0].first == 0
}

bool iequal(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    const auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; };
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

}  // namespace

Script script_of(char32_t c) {
  const ScriptRange* r = range_of(c);
  return r ? static_cast<Script>(r->script) : Script::Unknown;
}

CharKind char_kind(char32_t c) {
  const ScriptRange* r = range_of(c);
  return r ? static_cast<CharKind>(r->kind) : CharKind::other;
}

std::string_view script_name(Script s) { return kScriptNames[static_cast<size_t>(s)].name; }
std::string_view script_code(Script s) { return kScriptNames[static_cast<size_t>(s)].code; }

std::optional<Script> script_from_name(std::string_view name) {
  for (size_t i = 0; i < std::size(kScriptNames); ++i)
    if (iequal(name, kScriptNames[i].name) || iequal(name, kScriptNames[i].code))
      return static_cast<Script>(static_cast<uint8_t>(i));
  return std::nullopt;
}

std::string script_names_list() {
  std::string out;
  for (const ScriptNames& n : kScriptNames) {
    if (!out.empty()) out += ", ";
    out += n.name;
  }
  return out;
}

char32_t next_code_point(std::string_view s, size_t* pos) {
  char32_t cp = 0;
  return decode_code_point(s, pos, &cp) ? cp : 0xFFFD;
}

bool decode_code_point(std::string_view s, size_t* pos, char32_t* out) {
  const auto byte = [&](size_t i) { return static_cast<uint8_t>(s[i]); };
  const uint8_t b0 = byte(*pos);
  ++*pos;
  if (b0 < 0x80) {
    *out = b0;
    return true;
  }
  // Unicode's table 3-7 of well-formed sequences: the lead byte fixes the length and the second byte's range.
  int more = 0;
  uint8_t lo = 0x80, hi = 0xBF;
  char32_t cp = 0;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    more = 1, cp = b0 & 0x1Fu;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    more = 2, cp = b0 & 0x0Fu;
    if (b0 == 0xE0) lo = 0xA0;  // overlong
    if (b0 == 0xED) hi = 0x9F;  // surrogates
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    more = 3, cp = b0 & 0x07u;
    if (b0 == 0xF0) lo = 0x90;  // overlong
    if (b0 == 0xF4) hi = 0x8F;  // above U+10FFFF
  } else {
    return false;  // a continuation byte without a lead, C0, C1, F5..FF
  }
  for (int k = 0; k < more; ++k) {
    if (*pos >= s.size()) return false;
    const uint8_t b = byte(*pos);
    if (b < lo || b > hi) return false;  // this byte starts the next sequence
    cp = (cp << 6) | (b & 0x3Fu);
    ++*pos;
    lo = 0x80, hi = 0xBF;
  }
  *out = cp;
  return true;
}

std::u32string decode_utf8(std::string_view s) {
  std::u32string out;
  out.reserve(s.size());
  size_t pos = 0;
  while (pos < s.size()) out.push_back(next_code_point(s, &pos));
  return out;
}

std::string encode_utf8(char32_t c) {
  if ((c >= 0xD800 && c <= 0xDFFF) || c > 0x10FFFF) c = 0xFFFD;
  std::string out;
  const auto put = [&](uint32_t v) { out.push_back(static_cast<char>(static_cast<uint8_t>(v))); };
  const uint32_t v = c;
  if (v < 0x80) {
    put(v);
  } else if (v < 0x800) {
    put(0xC0 | (v >> 6)), put(0x80 | (v & 0x3F));
  } else if (v < 0x10000) {
    put(0xE0 | (v >> 12)), put(0x80 | ((v >> 6) & 0x3F)), put(0x80 | (v & 0x3F));
  } else {
    put(0xF0 | (v >> 18)), put(0x80 | ((v >> 12) & 0x3F)), put(0x80 | ((v >> 6) & 0x3F)), put(0x80 | (v & 0x3F));
  }
  return out;
}

}  // namespace polyllama::unicode
