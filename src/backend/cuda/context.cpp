#include <cstring>
#include <string>

#include "context.hpp"
#include "matmul.hpp"

namespace polyllama {

CudaBackend::Context::Context(int dev) : device(dev) {
  PL_CUDA_CHECK(cudaSetDevice(dev));
  PL_CUDA_CHECK(cudaGetDeviceProperties(&prop, dev));
  PL_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  PL_CUBLAS_CHECK(cublasLtCreate(&lt));
  PL_CUDA_CHECK(cudaMalloc(&lt_workspace, lt_workspace_bytes));
  PL_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&reduce), reduce_bytes));
  PL_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&dev_result), sizeof(double)));
  PL_CUDA_CHECK(cudaMallocHost(reinterpret_cast<void**>(&host_result), sizeof(double)));
  PL_CUDA_CHECK(cudaEventCreate(&t0));
  PL_CUDA_CHECK(cudaEventCreate(&t1));
}

// Destructors do not throw: errors while tearing down are ignored (the process is usually exiting on another).
CudaBackend::Context::~Context() {
  cudaStreamSynchronize(stream);
#ifdef POLYLLAMA_HAVE_CUDNN
  sdpa.reset();  // its cuDNN handle is bound to `stream`
#endif
  cuda::destroy_plans(*this);
  for (int32_t* p : stage) cudaFree(p);
  cudaEventDestroy(t0);
  cudaEventDestroy(t1);
  cudaFreeHost(host_result);
  cudaFree(dev_result);
  cudaFree(reduce);
  cudaFree(lt_workspace);
  cublasLtDestroy(lt);
  cudaStreamDestroy(stream);
}

const int32_t* CudaBackend::Context::stage_ints(Stage which, const int32_t* host, int64_t n) {
  auto& buf = stage[static_cast<size_t>(which)];
  auto& cap = stage_cap[static_cast<size_t>(which)];
  if (n > cap) {  // the first call of a shape: later steps of the same shape reuse the buffer
    PL_CUDA_CHECK(cudaStreamSynchronize(stream));
    if (buf) PL_CUDA_CHECK(cudaFree(buf));
    buf = nullptr;
    PL_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&buf), static_cast<size_t>(n) * sizeof(int32_t)));
    cap = n;
  }
  // From pageable memory the copy is staged by the driver before this returns: the caller may reuse `host`.
  if (n > 0)
    PL_CUDA_CHECK(cudaMemcpyAsync(buf, host, static_cast<size_t>(n) * sizeof(int32_t), cudaMemcpyHostToDevice, stream));
  return buf;
}

double CudaBackend::Context::fetch_result() {
  PL_CUDA_CHECK(cudaMemcpyAsync(host_result, dev_result, sizeof(double), cudaMemcpyDeviceToHost, stream));
  PL_CUDA_CHECK(cudaStreamSynchronize(stream));
  return *host_result;
}

}  // namespace polyllama
