#include "polyllama/backend/backend_factory.hpp"

#include "polyllama/backend/cpu/cpu_backend.hpp"
#ifdef POLYLLAMA_HAVE_CUDA
#include "polyllama/backend/cuda/cuda_backend.hpp"
#endif

namespace polyllama {

bool cuda_available(std::string* why) {
#ifdef POLYLLAMA_HAVE_CUDA
  return cuda_device_usable(why);
#else
  if (why) *why = "this polyllama was built without CUDA (configure with a CUDA toolkit and -DPOLYLLAMA_CUDA=ON)";
  return false;
#endif
}

std::unique_ptr<Backend> make_backend(const std::string& device, int threads) {
  if (device == "cpu") return std::make_unique<CpuBackend>(threads);
  if (device == "cuda") {
    std::string why;
    if (!cuda_available(&why)) fail_input("--device cuda: " + why);
#ifdef POLYLLAMA_HAVE_CUDA
    return std::make_unique<CudaBackend>(0);
#endif
  }
  fail_input("unknown device '" + device + "' (expected cpu or cuda)");
}

}  // namespace polyllama
