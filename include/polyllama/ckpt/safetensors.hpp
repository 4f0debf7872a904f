#pragma once
// safetensors files (Hugging Face's weight format), read and written without the safetensors library.
//
// Layout: 8 bytes N (unsigned little-endian), N bytes of UTF-8 JSON, then the data area. The JSON object maps
// each tensor name to {"dtype", "shape", "data_offsets": [begin, end]} (offsets relative to the data area) and
// may hold "__metadata__", an object of string -> string. Values are little-endian and row-major.
//
// A header is untrusted input. The reader accepts a file only when: N is at most kMaxHeaderBytes and fits in
// the file; the header starts with '{' and is one valid JSON object with no duplicate keys; every tensor's dtype
// is F32, F16 or BF16 (others fail with the tensor's name and dtype); every dim is a non-negative integer; the
// element count times the dtype size neither overflows nor differs from end - begin; and the tensors, sorted by
// offset, tile the data area exactly: no overlap, no gap, no trailing bytes (what the reference implementation
// requires). Every error names the file, and the tensor when there is one.
//
// The writer produces what the reference implementation (safetensors' Rust `serialize`) produces byte for
// byte: tensors ordered by descending dtype size then by name, compact JSON with `__metadata__` first and keys
// dtype, shape, data_offsets, the header padded with spaces to a multiple of 8 so that every tensor's data is
// aligned.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "polyllama/core/tensor.hpp"

namespace polyllama {

enum class StDType : int { F16 = 0, BF16 = 1, F32 = 2 };  // ordered by size, as the reference sorts them

size_t st_dtype_size(StDType t);
const char* st_dtype_name(StDType t);  // "F16", "BF16", "F32"
// Parses "F32", "F16", "BF16"; false for anything else.
bool st_dtype_parse(const std::string& name, StDType* out);

// The reference implementation's header size limit (100 MB).
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

struct StTensorInfo {
  std::string name;
  StDType dtype = StDType::F32;
  std::vector<int64_t> shape;  // may be empty (a scalar)
  uint64_t begin = 0, end = 0;  // bytes, relative to the data area
  int64_t numel() const;
  uint64_t bytes() const { return end - begin; }
  std::string shape_str() const;  // "(4, 8)"
};

// Validates a header's JSON text against a data area of `data_bytes` bytes, as described above. Returns the
// tensors sorted by name; fills `metadata` when given. `where` (the file's path) starts every error message.
std::vector<StTensorInfo> parse_safetensors_header(const std::string& json_text, uint64_t data_bytes,
                                                   const std::string& where,
                                                   std::map<std::string, std::string>* metadata = nullptr);

class SafetensorsReader {
 public:
  // Opens and validates `path`; reads tensor data on demand.
  explicit SafetensorsReader(const std::string& path);
  SafetensorsReader(SafetensorsReader&& o) noexcept;
  SafetensorsReader& operator=(SafetensorsReader&&) = delete;
  SafetensorsReader(const SafetensorsReader&) = delete;
  ~SafetensorsReader();

  const std::string& path() const { return path_; }
  const std::vector<StTensorInfo>& tensors() const { return tensors_; }  // sorted by name
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const StTensorInfo* find(const std::string& name) const;  // nullptr when absent

  // The stored bytes of a tensor (bytes() of them).
  void read_raw(const StTensorInfo& t, void* dst) const;
  // The tensor's values into dst, whose shape must equal the stored one (f32 or f64; F16/BF16 widen exactly).
  void read_into(const StTensorInfo& t, const Tensor& dst) const;

 private:
  std::string path_;
  int fd_ = -1;
  uint64_t data_start_ = 0;
  std::vector<StTensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
};

// One tensor to write: `data` holds numel values of `src_dtype`; they are stored as `dtype`.
struct StWriteTensor {
  std::string name;
  std::vector<int64_t> shape;
  StDType dtype = StDType::F32;
  const void* data = nullptr;
  StDType src_dtype = StDType::F32;
};

// Writes `path` (through path.tmp and a rename, so a failed write leaves no file under the final name).
// Narrowing conversions round to nearest even; a finite value that becomes infinite (|x| >= 65520 for F16) is
// an error naming the tensor, the element and the value. Duplicate or empty names are errors.
void write_safetensors(const std::string& path, const std::vector<StWriteTensor>& tensors,
                       const std::map<std::string, std::string>& metadata = {});
// The exact file size write_safetensors would produce.
uint64_t safetensors_file_size(const std::vector<StWriteTensor>& tensors,
                               const std::map<std::string, std::string>& metadata = {});

// ---- scalar conversions (IEEE 754 binary16 and bfloat16, as bit patterns) ----
float bf16_to_f32(uint16_t h);  // exact
float f16_to_f32(uint16_t h);   // exact
// Round to nearest, ties to even. NaN stays NaN (quiet, sign kept); infinities stay infinite; values beyond the
// largest finite number round to infinity (the caller decides whether that is an error).
uint16_t f32_to_bf16(float x);
uint16_t f32_to_f16(float x);
// Converts n values from one dtype to another (through f32). Returns the index of the first finite input
// that became infinite, or -1.
int64_t st_convert(StDType from, const void* src, StDType to, void* dst, int64_t n);

}  // namespace polyllama
