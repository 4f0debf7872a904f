#pragma once
// Backends by device name, for the command line: "cpu" always, "cuda" when built with CUDA and a GPU is present.
#include <memory>
#include <string>
#include <vector>

#include "polyllama/core/backend.hpp"

namespace polyllama {

// "cpu" (threads <= 0: OpenMP's default) or "cuda" (device `gpu` of those the process sees). Fails with a
// user-facing message when the build has no CUDA backend or no GPU is usable.
std::unique_ptr<Backend> make_backend(const std::string& device, int threads = 0, int gpu = 0);

// GPUs this process sees (CUDA_VISIBLE_DEVICES applies); 0 without CUDA or a driver.
int cuda_device_count();

// True when this build has the CUDA backend and a GPU is usable; otherwise `why` (when given) says what is
// missing: "built without CUDA" or the CUDA runtime's reason (no driver, no device).
bool cuda_available(std::string* why = nullptr);

// The CUDA stack for `polyllama doctor`, in any build: whether this build has the CUDA backend, then (when it
// has) the driver, runtime, cuBLASLt and cuDNN versions ("12.4", "12.4.2"; "" when absent), the devices
// ("NVIDIA H100 80GB HBM3 (sm_90, 81559 MiB)") and why none is usable ("" when one is).
struct CudaInfo {
  bool built = false;
  std::string driver, runtime, cublaslt, cudnn;
  std::vector<std::string> devices;
  std::string error;
};
CudaInfo cuda_info();

}  // namespace polyllama
