#pragma once
// The device context every launcher receives (STYLE.md practice 2): stream, cuBLASLt handle, its workspace and
// cached plans, device properties, a scratch buffer for deterministic reductions, and device buffers for the
// host-side integer inputs (token ids, positions, spans). Owned by one CudaBackend; no globals.
#include <cublasLt.h>
#include <cuda_runtime.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <tuple>

#include "polyllama/backend/cuda/cuda_backend.hpp"
#include "check.hpp"
#ifdef POLYLLAMA_HAVE_CUDNN
#include "cudnn_sdpa.hpp"
#endif

namespace polyllama {

// One cuBLASLt plan: descriptors and the heuristic's algorithm for one problem, built on first use and reused
// (llm.c rebuilds them per call, STYLE.md pitfall 3).
struct LtPlan {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo{};
};
// M, N, K, trans_a, trans_b, dtype of a/b, dtype of c, alignment (bytes) of a, b, c pointers.
using LtKey = std::tuple<int64_t, int64_t, int64_t, bool, bool, int, int, int, int, int>;

struct CudaBackend::Context {
  enum Stage : int { kIds, kTargets, kPositions, kSpans, kEmbedPlan, kStages };

  int device = 0;
  cudaDeviceProp prop{};
  cudaStream_t stream = nullptr;
  cublasLtHandle_t lt = nullptr;
  void* lt_workspace = nullptr;
  size_t lt_workspace_bytes = size_t{32} << 20;  // what NVIDIA recommends for Hopper
  std::map<LtKey, LtPlan> plans;

  // Partial sums of deterministic reductions (rmsnorm dw, sum_squares, loss totals): fixed grid shapes, summed
  // in a fixed order, so results are the same bits on every run.
  float* reduce = nullptr;
  size_t reduce_bytes = size_t{32} << 20;
  double* host_result = nullptr;  // pinned: the value an op returns to the host
  double* dev_result = nullptr;

  std::array<int32_t*, kStages> stage{};
  std::array<int64_t, kStages> stage_cap{};  // int32 elements

  cudaEvent_t t0 = nullptr, t1 = nullptr;

  AttentionImpl attention = AttentionImpl::own;
#ifdef POLYLLAMA_HAVE_CUDNN
  std::unique_ptr<cuda::CudnnSdpa> sdpa;  // created by set_attention(cudnn), on `stream`
#endif

  explicit Context(int dev);
  ~Context();
  // Copies n host ints into the device buffer of `which` (grown, once, when too small) on the stream.
  const int32_t* stage_ints(Stage which, const int32_t* host, int64_t n);
  // Waits for the stream and returns *dev_result.
  double fetch_result();
};

}  // namespace polyllama
