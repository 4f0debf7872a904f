#include "polyllama/core/backend.hpp"

#include <cstdlib>
#include <cstring>
#include <string>

namespace polyllama {

// Host memory: what every backend whose ops run on the CPU uses.
void* Backend::device_alloc(size_t bytes) {
  void* p = std::aligned_alloc(256, (bytes + 255) / 256 * 256);
  if (!p) fail_runtime("out of memory allocating " + std::to_string(bytes >> 20) + " MiB", __FILE__, __LINE__);
  return p;
}
void Backend::device_free(void* p) { std::free(p); }
void Backend::upload(Tensor dst, const void* host_src) { std::memcpy(dst.data, host_src, dst.bytes()); }
void Backend::download(void* host_dst, Tensor src) { std::memcpy(host_dst, src.data, src.bytes()); }
double Backend::sum_squares_all(const std::vector<Tensor>& xs) {
  double total = 0;
  for (const Tensor& x : xs) total += sum_squares(x);
  return total;
}

}  // namespace polyllama
