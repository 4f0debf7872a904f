// The CUDA driver, runtime, cuBLASLt and cuDNN versions and the devices, for `polyllama doctor`
// (cuda_stack_info in cuda_backend.hpp).
#include <cublasLt.h>
#include <cuda_runtime.h>

#include <string>

#include "polyllama/backend/cuda/cuda_backend.hpp"
#ifdef POLYLLAMA_HAVE_CUDNN
#include <cudnn.h>
#endif

namespace polyllama {

namespace {

// CUDART_VERSION style: 12040 = 12.4.
std::string major_minor(int v) { return std::to_string(v / 1000) + "." + std::to_string(v % 1000 / 10); }

// major * base + minor * 100 + patch (cuBLASLt: base 10000; cuDNN: 10000 from 9.0, 1000 before).
std::string major_minor_patch(size_t v, size_t base) {
  return std::to_string(v / base) + "." + std::to_string(v % base / 100) + "." + std::to_string(v % 100);
}

}  // namespace

CudaStackInfo cuda_stack_info() {
  CudaStackInfo info;
  int v = 0;
  if (cudaDriverGetVersion(&v) == cudaSuccess && v > 0) info.driver = major_minor(v);
  if (cudaRuntimeGetVersion(&v) == cudaSuccess && v > 0) info.runtime = major_minor(v);
  cudaGetLastError();
  info.cublaslt = major_minor_patch(cublasLtGetVersion(), 10000);
#ifdef POLYLLAMA_HAVE_CUDNN
  const size_t dnn = cudnnGetVersion();
  info.cudnn = major_minor_patch(dnn, dnn >= 90000 ? 10000 : 1000);
#endif
  if (!cuda_device_usable(&info.error)) return info;
  const int n = cuda_visible_devices();
  for (int d = 0; d < n; ++d) {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, d) != cudaSuccess) {
      cudaGetLastError();
      info.devices.push_back("device " + std::to_string(d) + " (properties unreadable)");
      continue;
    }
    info.devices.push_back(std::string(prop.name) + " (sm_" + std::to_string(prop.major * 10 + prop.minor) + ", " +
                           std::to_string(prop.totalGlobalMem >> 20) + " MiB)");
  }
  return info;
}

}  // namespace polyllama
