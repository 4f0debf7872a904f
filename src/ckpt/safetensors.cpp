#include "polyllama/ckpt/safetensors.hpp"
#include "polyllama/core/atomic_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <set>

#include <nlohmann/json.hpp>

namespace polyllama {

static_assert(std::endian::native == std::endian::little, "safetensors data is little-endian; so must the host be");

namespace {

using json = nlohmann::json;

// A name as it appears in an error: quoted, control characters escaped, cut at 120 characters (a hostile header
// can hold names of any length).
std::string quoted(const std::string& s) {
  std::string out = "'";
  for (size_t i = 0; i < s.size() && i < 120; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  if (s.size() > 120) out += "...";
  return out + "'";
}

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + ")";
}

std::string u64(uint64_t v) { return std::to_string(v); }

}  // namespace

// ---------------------------------------------------------------------------------------------------------
// dtypes and scalar conversions

size_t st_dtype_size(StDType t) { return t == StDType::F32 ? 4 : 2; }

const char* st_dtype_name(StDType t) {
  switch (t) {
    case StDType::F16: return "F16";
    case StDType::BF16: return "BF16";
    case StDType::F32: return "F32";
  }
  return "?";
}

bool st_dtype_parse(const std::string& name, StDType* out) {
  if (name == "F32") *out = StDType::F32;
  else if (name == "F16") *out = StDType::F16;
  else if (name == "BF16") *out = StDType::BF16;
  else return false;
  return true;
}

float bf16_to_f32(uint16_t h) { return std::bit_cast<float>(static_cast<uint32_t>(h) << 16); }

float f16_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
  if (exp == 0x1f) return std::bit_cast<float>(sign | 0x7f800000u | (mant << 13));  // inf, NaN (payload kept)
  if (exp != 0) return std::bit_cast<float>(sign | ((exp + 112) << 23) | (mant << 13));  // rebias 15 -> 127
  // Zero or subnormal: mant * 2^-24, exact in fp32.
  const float v = static_cast<float>(mant) * 0x1p-24f;
  return std::bit_cast<float>(sign | std::bit_cast<uint32_t>(v));
}

uint16_t f32_to_bf16(float x) {
  const uint32_t u = std::bit_cast<uint32_t>(x);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);  // quiet NaN
  // Adding 0x7fff plus the lowest kept bit rounds the upper half to nearest, ties to even; a carry out of the
  // mantissa moves into the exponent, which is the correctly rounded result (and infinity past the largest).
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

uint16_t f32_to_f16(float x) {
  uint32_t u = std::bit_cast<uint32_t>(x);
  const auto sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  u &= 0x7fffffffu;
  if (u >= 0x47800000u) {  // |x| >= 2^16 (or inf/NaN): beyond every finite half
    if (u > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u);  // NaN -> quiet NaN
    return static_cast<uint16_t>(sign | 0x7c00u);
  }
  if (u < 0x38800000u) {  // |x| < 2^-14: a half subnormal (or zero)
    // Adding 0.5 puts the half-subnormal unit 2^-24 in the last place of an fp32 mantissa, so the FPU's own
    // round-to-nearest-even does the rounding; the mantissa bits are then the half's.
    const float y = std::bit_cast<float>(u) + 0.5f;
    return static_cast<uint16_t>(sign | (std::bit_cast<uint32_t>(y) - 0x3f000000u));
  }
  // Normal: rebias the exponent (127 -> 15) and round away the low 13 bits to nearest even. A carry may reach
  // exponent 31, which is infinity: |x| >= 65520 overflows.
  const uint32_t odd = (u >> 13) & 1u;
  u += (static_cast<uint32_t>(15 - 127) << 23) + 0xfffu + odd;
  return static_cast<uint16_t>(sign | (u >> 13));
}

int64_t st_convert(StDType from, const void* src, StDType to, void* dst, int64_t n) {
  if (n <= 0) return -1;
  if (from == to) {
    std::memcpy(dst, src, static_cast<size_t>(n) * st_dtype_size(from));
    return -1;
  }
  auto load = [from, src](int64_t i) -> float {
    if (from == StDType::F32) return static_cast<const float*>(src)[i];
    const uint16_t h = static_cast<const uint16_t*>(src)[i];
    return from == StDType::BF16 ? bf16_to_f32(h) : f16_to_f32(h);
  };
  if (to == StDType::F32) {  // widening is exact and cannot overflow
    auto* d = static_cast<float*>(dst);
    for (int64_t i = 0; i < n; ++i) d[i] = load(i);
    return -1;
  }
  auto* d = static_cast<uint16_t*>(dst);
  int64_t first_overflow = -1;
  const uint16_t inf_bits = to == StDType::BF16 ? 0x7f80u : 0x7c00u;
  for (int64_t i = 0; i < n; ++i) {
    const float v = load(i);
    const uint16_t h = to == StDType::BF16 ? f32_to_bf16(v) : f32_to_f16(v);
    d[i] = h;
    if ((h & 0x7fffu) == inf_bits && std::isfinite(v) && first_overflow < 0) first_overflow = i;
  }
  return first_overflow;
}

// ---------------------------------------------------------------------------------------------------------
// header validation

int64_t StTensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string StTensorInfo::shape_str() const { return shape_string(shape); }

std::vector<StTensorInfo> parse_safetensors_header(const std::string& json_text, uint64_t data_bytes,
                                                   const std::string& where,
                                                   std::map<std::string, std::string>* metadata) {
  auto bad = [&](const std::string& what) -> void { fail_input(where + ": " + what); };
  if (json_text.empty() || json_text[0] != '{')
    bad("the safetensors header does not start with '{' (not a safetensors file, or a corrupt one)");

  // nlohmann stops at a NUL byte as if the input ended there; JSON has no raw NULs, so any is an error.
  if (json_text.find('\0') != std::string::npos)
    bad("the safetensors header holds a NUL byte at offset " + u64(json_text.find('\0')) + " (corrupt file?)");
  // Duplicate keys would let two readers see different tensors; nlohmann keeps the last silently, so they are
  // detected while parsing: one set of keys per open object.
  std::vector<std::set<std::string>> open_objects;
  json h;
  try {
    h = json::parse(json_text, [&](int, json::parse_event_t ev, json& parsed) {
      if (ev == json::parse_event_t::object_start) open_objects.emplace_back();
      else if (ev == json::parse_event_t::object_end && !open_objects.empty()) open_objects.pop_back();
      else if (ev == json::parse_event_t::key && !open_objects.empty()) {
        const std::string& k = parsed.get_ref<const std::string&>();
        if (!open_objects.back().insert(k).second) bad("the header repeats the key " + quoted(k));
      }
      return true;
    });
  } catch (const json::exception& e) {
    bad(std::string("the safetensors header is not valid JSON: ") + e.what());
  }
  if (!h.is_object()) bad("the safetensors header is not a JSON object");

  std::vector<StTensorInfo> out;
  out.reserve(h.size());
  for (auto it = h.begin(); it != h.end(); ++it) {
    const std::string& name = it.key();
    const json& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) bad("__metadata__ is not an object of strings");
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string()) bad("__metadata__ value for " + quoted(m.key()) + " is not a string");
        if (metadata) (*metadata)[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string tw = where + ": tensor " + quoted(name) + ": ";
    if (!v.is_object()) fail_input(tw + "its entry is not an object");
    for (const char* key : {"dtype", "shape", "data_offsets"})
      if (!v.contains(key)) fail_input(tw + "no '" + key + "' field");
    StTensorInfo t;
    t.name = name;
    if (!v["dtype"].is_string()) fail_input(tw + "dtype is not a string");
    const std::string dt = v["dtype"].get<std::string>();
    if (!st_dtype_parse(dt, &t.dtype)) {
      static const std::set<std::string> known = {"BOOL", "U8",  "I8",  "F8_E5M2", "F8_E4M3", "I16", "U16",
                                                  "I32",  "U32", "I64", "U64",     "F64"};
      fail_input(tw + (known.count(dt) ? "dtype " + dt + " is not supported" : "unknown dtype " + quoted(dt)) +
                 " (polyllama reads F32, F16 and BF16)");
    }
    if (!v["shape"].is_array()) fail_input(tw + "shape is not an array");
    uint64_t numel = 1;
    bool overflow = false;
    for (const json& d : v["shape"]) {
      if (!d.is_number_unsigned())
        fail_input(tw + "shape " + v["shape"].dump() + " holds " + d.dump() + ", not a non-negative integer");
      const uint64_t dim = d.get<uint64_t>();
      if (dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        fail_input(tw + "dimension " + u64(dim) + " is too large");
      t.shape.push_back(static_cast<int64_t>(dim));
      overflow = overflow || __builtin_mul_overflow(numel, dim, &numel);
    }
    uint64_t nbytes = 0;
    overflow = overflow || __builtin_mul_overflow(numel, uint64_t{st_dtype_size(t.dtype)}, &nbytes) ||
               nbytes > static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
    if (overflow) fail_input(tw + "the size of shape " + v["shape"].dump() + " overflows 64 bits");
    const json& off = v["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
      fail_input(tw + "data_offsets " + off.dump() + " is not a pair of non-negative integers");
    t.begin = off[0].get<uint64_t>();
    t.end = off[1].get<uint64_t>();
    if (t.end < t.begin) fail_input(tw + "data_offsets " + off.dump() + " run backwards");
    if (t.end > data_bytes)
      fail_input(tw + "data_offsets " + off.dump() + " reach past the data area, which holds " + u64(data_bytes) +
                 " bytes (truncated file?)");
    if (t.end - t.begin != nbytes)
      fail_input(tw + "shape " + t.shape_str() + " of " + dt + " needs " + u64(nbytes) + " bytes, but data_offsets " +
                 off.dump() + " span " + u64(t.end - t.begin));
    out.push_back(std::move(t));
  }

  // The tensors must tile the data area: sorted by offset, each starts where the previous one ends.
  std::vector<const StTensorInfo*> by_offset;
  for (const StTensorInfo& t : out) by_offset.push_back(&t);
  std::sort(by_offset.begin(), by_offset.end(), [](const StTensorInfo* a, const StTensorInfo* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  uint64_t cursor = 0;
  const StTensorInfo* prev = nullptr;
  for (const StTensorInfo* t : by_offset) {
    const std::string tw = where + ": tensor " + quoted(t->name) + ": ";
    if (t->begin < cursor)
      fail_input(tw + "bytes [" + u64(t->begin) + ", " + u64(t->end) + ") overlap tensor " + quoted(prev->name) +
                 " at [" + u64(prev->begin) + ", " + u64(prev->end) + ")");
    if (t->begin > cursor)
      fail_input(tw + "starts at byte " + u64(t->begin) + " of the data area, leaving " + u64(t->begin - cursor) +
                 " unused bytes before it (after " + (prev ? "tensor " + quoted(prev->name) : "the header") +
                 "); the format allows no gaps");
    cursor = t->end;
    prev = t;
  }
  if (cursor != data_bytes)
    bad("the tensors end at byte " + u64(cursor) + " of the data area, but it holds " + u64(data_bytes) +
        " bytes (trailing bytes or a truncated header)");
  std::sort(out.begin(), out.end(), [](const StTensorInfo& a, const StTensorInfo& b) { return a.name < b.name; });
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// reader

namespace {

void pread_all(int fd, void* dst, size_t n, uint64_t offset, const std::string& where) {
  auto* p = static_cast<char*>(dst);
  while (n > 0) {
    const ssize_t r = ::pread(fd, p, std::min(n, size_t{1} << 30), static_cast<off_t>(offset));
    if (r < 0) {
      if (errno == EINTR) continue;
      fail_runtime(where + ": read failed: " + std::strerror(errno), __FILE__, __LINE__);
    }
    if (r == 0) fail_input(where + ": the file ends early (truncated while being read?)");
    p += r;
    n -= static_cast<size_t>(r);
    offset += static_cast<uint64_t>(r);
  }
}

}  // namespace

SafetensorsReader::SafetensorsReader(const std::string& path) : path_(path) {
  fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) fail_input("cannot open " + path + ": " + std::strerror(errno));
  try {
    struct stat st {};
    if (::fstat(fd_, &st) != 0 || !S_ISREG(st.st_mode)) fail_input(path + ": not a regular file");
    const auto file_size = static_cast<uint64_t>(st.st_size);
    if (file_size < 8) fail_input(path + ": " + u64(file_size) + " bytes is too short for a safetensors file");
    unsigned char len_bytes[8];
    pread_all(fd_, len_bytes, 8, 0, path);
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | len_bytes[i];
    if (n > kMaxHeaderBytes)
      fail_input(path + ": the header length field says " + u64(n) + " bytes, over the " + u64(kMaxHeaderBytes) +
                 "-byte limit (not a safetensors file, or a corrupt one)");
    if (n > file_size - 8)
      fail_input(path + ": the header length field says " + u64(n) + " bytes, but the file has only " +
                 u64(file_size - 8) + " after it (truncated or not a safetensors file)");
    std::string header(static_cast<size_t>(n), '\0');
    pread_all(fd_, header.data(), header.size(), 8, path);
    data_start_ = 8 + n;
    tensors_ = parse_safetensors_header(header, file_size - data_start_, path, &metadata_);
  } catch (...) {
    ::close(fd_);
    throw;
  }
}

SafetensorsReader::SafetensorsReader(SafetensorsReader&& o) noexcept
    : path_(std::move(o.path_)), fd_(o.fd_), data_start_(o.data_start_), tensors_(std::move(o.tensors_)),
      metadata_(std::move(o.metadata_)) {
  o.fd_ = -1;
}

SafetensorsReader::~SafetensorsReader() {
  if (fd_ >= 0) ::close(fd_);
}

const StTensorInfo* SafetensorsReader::find(const std::string& name) const {
  auto it = std::lower_bound(tensors_.begin(), tensors_.end(), name,
                             [](const StTensorInfo& t, const std::string& n) { return t.name < n; });
  return it != tensors_.end() && it->name == name ? &*it : nullptr;
}

void SafetensorsReader::read_raw(const StTensorInfo& t, void* dst) const {
  pread_all(fd_, dst, static_cast<size_t>(t.bytes()), data_start_ + t.begin, path_ + ": tensor " + quoted(t.name));
}

void SafetensorsReader::read_into(const StTensorInfo& t, const Tensor& dst) const {
  bool match = static_cast<int>(t.shape.size()) == dst.ndim;
  for (int i = 0; match && i < dst.ndim; ++i) match = t.shape[static_cast<size_t>(i)] == dst.dim(i);
  if (!match)
    fail_input(path_ + ": tensor " + quoted(t.name) + " has shape " + t.shape_str() + ", expected " + dst.shape_str());
  const int64_t n = t.numel();
  if (dst.dtype == DType::f32 && t.dtype == StDType::F32) {
    read_raw(t, dst.data);
    return;
  }
  // Converted in chunks so that no second copy of a large tensor is ever held.
  const int64_t chunk = int64_t{1} << 22;
  const size_t esize = st_dtype_size(t.dtype);
  std::vector<char> raw(static_cast<size_t>(std::min(n, chunk)) * esize);
  std::vector<float> f32(dst.dtype == DType::f64 ? static_cast<size_t>(std::min(n, chunk)) : 0);
  for (int64_t i0 = 0; i0 < n; i0 += chunk) {
    const int64_t m = std::min(chunk, n - i0);
    const uint64_t at = data_start_ + t.begin + static_cast<uint64_t>(i0) * esize;
    pread_all(fd_, raw.data(), static_cast<size_t>(m) * esize, at, path_ + ": tensor " + quoted(t.name));
    if (dst.dtype == DType::f32) {
      st_convert(t.dtype, raw.data(), StDType::F32, dst.ptr<float>() + i0, m);
    } else {
      st_convert(t.dtype, raw.data(), StDType::F32, f32.data(), m);
      std::copy(f32.begin(), f32.begin() + m, dst.ptr<double>() + i0);  // widening f32 -> f64 is exact
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// writer

namespace {

struct Layout {
  std::vector<const StWriteTensor*> order;  // file order
  std::vector<uint64_t> begin;              // per file-order tensor
  std::string header;                       // padded to a multiple of 8
  uint64_t data_bytes = 0;
};

uint64_t checked_bytes(const StWriteTensor& t, const std::string& where) {
  uint64_t n = st_dtype_size(t.dtype);
  for (int64_t d : t.shape) {
    if (d < 0) fail_input(where + ": tensor " + quoted(t.name) + ": negative dimension in " + shape_string(t.shape));
    if (__builtin_mul_overflow(n, static_cast<uint64_t>(d), &n))
      fail_input(where + ": tensor " + quoted(t.name) + ": shape " + shape_string(t.shape) + " overflows");
  }
  return n;
}

Layout plan(const std::vector<StWriteTensor>& tensors, const std::map<std::string, std::string>& metadata,
            const std::string& where) {
  Layout L;
  std::set<std::string> names;
  for (const StWriteTensor& t : tensors) {
    if (t.name.empty() || t.name == "__metadata__") fail_input(where + ": invalid tensor name " + quoted(t.name));
    if (!names.insert(t.name).second) fail_input(where + ": tensor " + quoted(t.name) + " given twice");
    if (!t.data && checked_bytes(t, where) > 0) fail_input(where + ": tensor " + quoted(t.name) + " has no data");
    L.order.push_back(&t);
  }
  // The reference's order: larger dtypes first (keeps every tensor aligned), then by name.
  std::sort(L.order.begin(), L.order.end(), [](const StWriteTensor* a, const StWriteTensor* b) {
    return a->dtype != b->dtype ? a->dtype > b->dtype : a->name < b->name;
  });
  // serde_json's compact form; nlohmann escapes strings the same way (", \, control characters as \uXXXX in
  // lower-case hex or their short forms; other UTF-8 verbatim) and rejects invalid UTF-8.
  auto str = [&](const std::string& s) {
    try {
      return json(s).dump();
    } catch (const json::exception& e) {
      fail_input(where + ": name " + quoted(s) + " is not valid UTF-8");
    }
  };
  std::string h = "{";
  if (!metadata.empty()) {
    h += "\"__metadata__\":{";
    for (const auto& [k, v] : metadata) {
      if (h.back() != '{') h += ',';
      h += str(k);
      h += ':';
      h += str(v);
    }
    h += '}';
  }
  uint64_t offset = 0;
  for (const StWriteTensor* t : L.order) {
    const uint64_t nbytes = checked_bytes(*t, where);
    if (h.size() > 1) h += ",";
    h += str(t->name) + ":{\"dtype\":\"" + st_dtype_name(t->dtype) + "\",\"shape\":[";
    for (size_t i = 0; i < t->shape.size(); ++i) {
      if (i) h += ',';
      h += std::to_string(t->shape[i]);
    }
    h += "],\"data_offsets\":[" + u64(offset) + "," + u64(offset + nbytes) + "]}";
    L.begin.push_back(offset);
    offset += nbytes;
  }
  h += "}";
  h.append((8 - h.size() % 8) % 8, ' ');
  L.header = std::move(h);
  L.data_bytes = offset;
  return L;
}

}  // namespace

uint64_t safetensors_file_size(const std::vector<StWriteTensor>& tensors,
                               const std::map<std::string, std::string>& metadata) {
  const Layout L = plan(tensors, metadata, "safetensors");
  return 8 + L.header.size() + L.data_bytes;
}

void write_safetensors(const std::string& path, const std::vector<StWriteTensor>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  const Layout L = plan(tensors, metadata, path);
  AtomicFile f(path);
  auto put = [&](const void* p, size_t n) { f.write(p, n); };
  unsigned char len_bytes[8];
  const uint64_t header_len = L.header.size();
  for (int i = 0; i < 8; ++i) len_bytes[i] = static_cast<unsigned char>(header_len >> (8 * i));
  put(len_bytes, 8);
  put(L.header.data(), L.header.size());
  const int64_t chunk = int64_t{1} << 20;
  std::vector<char> buf;
  for (const StWriteTensor* t : L.order) {
    int64_t n = 1;
    for (int64_t d : t->shape) n *= d;
    if (t->src_dtype == t->dtype) {
      put(t->data, static_cast<size_t>(n) * st_dtype_size(t->dtype));
      continue;
    }
    buf.resize(static_cast<size_t>(std::min(n, chunk)) * st_dtype_size(t->dtype));
    const auto* src = static_cast<const char*>(t->data);
    for (int64_t i0 = 0; i0 < n; i0 += chunk) {
      const int64_t m = std::min(chunk, n - i0);
      const int64_t bad = st_convert(t->src_dtype, src + static_cast<size_t>(i0) * st_dtype_size(t->src_dtype),
                                     t->dtype, buf.data(), m);
      if (bad >= 0) {
        const char* src_at = src + static_cast<size_t>(i0 + bad) * st_dtype_size(t->src_dtype);
        float v = 0;
        st_convert(t->src_dtype, src_at, StDType::F32, &v, 1);
        f.abandon();
        fail_input(path + ": tensor " + quoted(t->name) + " element " + std::to_string(i0 + bad) + " = " +
                   std::to_string(v) + " overflows " + st_dtype_name(t->dtype) +
                   (t->dtype == StDType::F16 ? " (largest finite 65504); export as bf16 or f32 instead" : ""));
      }
      put(buf.data(), static_cast<size_t>(m) * st_dtype_size(t->dtype));
    }
  }
  f.commit();
}

}  // namespace polyllama
