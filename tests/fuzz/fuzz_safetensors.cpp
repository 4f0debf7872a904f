// libFuzzer target: a whole safetensors file (8-byte header length, JSON header, data area) through
// SafetensorsReader, the path every Hugging Face weight file takes (`convert`). An accepted file must satisfy what
// the header comment of safetensors.hpp promises: tensors sorted by name, bytes == numel * dtype size, and the
// tensors tiling the data area exactly; then every tensor is read and widened to f32 and f64.
#include <algorithm>
#include <vector>

#include "fuzz_support.hpp"
#include "polyllama/ckpt/safetensors.hpp"

using namespace polyllama;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static fuzz::MemFile file("fuzz.safetensors");
  file.set(std::string_view(reinterpret_cast<const char*>(data), size));
  fuzz::expect_clean([&] {
    const SafetensorsReader r(file.path());
    uint64_t header = 0;
    for (int i = 7; i >= 0; --i) header = (header << 8) | data[i];
    const uint64_t data_bytes = size - 8 - header;
    uint64_t total = 0;
    std::vector<std::pair<uint64_t, uint64_t>> spans;
    for (size_t i = 0; i < r.tensors().size(); ++i) {
      const StTensorInfo& t = r.tensors()[i];
      fuzz::require(i == 0 || r.tensors()[i - 1].name < t.name, "tensors sorted by name, no duplicates");
      fuzz::require(t.begin <= t.end && t.end <= data_bytes, "tensor inside the data area");
      fuzz::require(t.bytes() == static_cast<uint64_t>(t.numel()) * st_dtype_size(t.dtype), "bytes == numel * size");
      fuzz::require(r.find(t.name) == &t, "find() returns the tensor");
      total += t.bytes();
      spans.emplace_back(t.begin, t.end);
    }
    std::sort(spans.begin(), spans.end());
    for (size_t i = 1; i < spans.size(); ++i) fuzz::require(spans[i - 1].second == spans[i].first, "no gap, no overlap");
    fuzz::require(total == data_bytes, "the tensors tile the data area");
    for (const StTensorInfo& t : r.tensors()) {
      // Tensor holds 1 to 4 dims (a scalar or a rank above 4 is the bytes' business only, as above)
      if (t.shape.empty() || t.shape.size() > 4) continue;
      std::vector<char> raw(t.bytes());
      r.read_raw(t, raw.data());
      std::vector<float> f32(static_cast<size_t>(t.numel()));
      std::vector<double> f64(static_cast<size_t>(t.numel()));
      Tensor a(f32.data(), DType::f32, {1}), b(f64.data(), DType::f64, {1});  // the shape is set just below
      a.ndim = b.ndim = static_cast<int>(t.shape.size());
      for (size_t d = 0; d < t.shape.size(); ++d) a.shape[d] = b.shape[d] = t.shape[d];
      r.read_into(t, a);
      r.read_into(t, b);
    }
  });
  return 0;
}
