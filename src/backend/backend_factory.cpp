#include "polyllama/backend/backend_factory.hpp"

#include <utility>

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

int cuda_device_count() {
#ifdef POLYLLAMA_HAVE_CUDA
  return cuda_device_usable(nullptr) ? cuda_visible_devices() : 0;
#else
  return 0;
#endif
}

CudaInfo cuda_info() {
  CudaInfo info;
#ifdef POLYLLAMA_HAVE_CUDA
  CudaStackInfo s = cuda_stack_info();
  info.built = true;
  info.driver = std::move(s.driver);
  info.runtime = std::move(s.runtime);
  info.cublaslt = std::move(s.cublaslt);
  info.cudnn = std::move(s.cudnn);
  info.devices = std::move(s.devices);
  info.error = std::move(s.error);
#else
  cuda_available(&info.error);
#endif
  return info;
}

std::unique_ptr<Backend> make_backend(const std::string& device, int threads, int gpu) {
  if (device == "cpu") return std::make_unique<CpuBackend>(threads);
  if (device == "cuda") {
    std::string why;
    if (!cuda_available(&why)) fail_input("--device cuda: " + why);
#ifdef POLYLLAMA_HAVE_CUDA
    const int count = cuda_device_count();
    if (gpu < 0 || gpu >= count)
      fail_input("--device cuda: GPU " + std::to_string(gpu) + " asked for, but this process sees " +
                 std::to_string(count) + " (CUDA_VISIBLE_DEVICES applies)");
    return std::make_unique<CudaBackend>(gpu);
#endif
  }
  fail_input("unknown device '" + device + "' (expected cpu or cuda)");
}

}  // namespace polyllama
