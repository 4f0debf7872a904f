#include "polyllama/core/backend.hpp"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>

namespace polyllama {

void check_rope_args(Tensor x, Tensor cos, Tensor sin, const int32_t* positions) {
  PL_CHECK(x.ndim == 4 && x.dim(3) % 2 == 0, "rope wants (B, T, H, D) with even D, got " + x.shape_str());
  const int64_t BT = x.dim(0) * x.dim(1);
  int64_t max_pos = x.dim(1) - 1;
  if (positions) {
    max_pos = 0;
    for (int64_t i = 0; i < BT; ++i) {
      PL_CHECK(positions[i] >= 0, "rope position " + std::to_string(positions[i]) + " is negative");
      max_pos = std::max<int64_t>(max_pos, positions[i]);
    }
  }
  PL_CHECK(cos.cols() == x.dim(3) / 2 && sin.numel() == cos.numel() && max_pos < cos.rows(),
           "rope table " + cos.shape_str() + " too small for position " + std::to_string(max_pos) + " of " +
               x.shape_str());
}

void Backend::set_attention(const std::string& impl) {
  if (impl != "own")
    fail_input("--attention " + impl + " selects GPU attention kernels: it needs --device cuda, not the " +
               std::string(name()) + " backend");
}

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
