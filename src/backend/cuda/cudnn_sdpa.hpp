#pragma once
// Causal grouped-query attention through cuDNN's fused flash attention, beside the backend's own kernels
// (attention.cuh), for the training case: bf16, plain causal (no kv_start, Tq == Tk == kv_len), 16-byte aligned
// tensors, a head dim cuDNN takes. Anything else, and any shape cuDNN refuses, returns false and the caller runs
// its own kernels; a refusal is logged once per shape with cuDNN's reason and remembered.
//
// The graph is cuDNN's classic fused-attention pattern (what cudnn-frontend builds for cuDNN < 9.21): cuDNN
// 9.19's single SDPA operation descriptor has no attribute for an element-wise causal mask (only a block mask of
// whole tiles; its mask subgraph arrives in 9.21), so the causal mask is expressed as generated row/column indices,
// a comparison and a select, which the fused engines recognise. See cudnn_sdpa.cpp for both graphs (and the two
// spellings of the mask that the frontend has used, tried in turn).
//
// The saved state is interchangeable with the own kernels': cuDNN's softmax Stats tensor is max + log(sum exp) of
// the scaled, masked scores, natural log, one float per (b, h, t) in (B, H, Tq, 1) with strides (H Tq, Tq, 1, 1):
// exactly the (B, H, Tq) log-sum-exp the own forward writes and the own backward reads. So a cuDNN forward may be
// followed by the own backward and vice versa (a shape cuDNN takes forward but refuses backward still trains).
//
// Plans are built once per shape and cached; the workspace grows (cudaMalloc) only while a plan is built, never
// in a later call. Host code; the class exists only where cuDNN was found (POLYLLAMA_HAVE_CUDNN).
#include <cuda_runtime.h>

#include <cstdint>
#include <memory>
#include <string>

#include "attention.cuh"

namespace polyllama::cuda {

class CudnnSdpa {
 public:
  // Creates the cuDNN handle on `stream` (the caller's; may be the default stream, nullptr). When that fails
  // (library missing its sub-libraries, version mismatch) every call refuses and summary() says why.
  explicit CudnnSdpa(cudaStream_t stream);
  ~CudnnSdpa();
  CudnnSdpa(const CudnnSdpa&) = delete;
  CudnnSdpa& operator=(const CudnnSdpa&) = delete;

  // "" when this call is the case the graphs express; else why not (the caller's own kernels run it).
  static std::string ineligible(const AttnArgs& a);

  // Same contract as attention_forward / attention_backward (attention.cuh) with a.out the forward's output.
  // True: cuDNN ran it. False: nothing was written; run the own kernels.
  bool forward(const AttnArgs& a);
  bool backward(const AttnArgs& a, const void* dout, void* dq, void* dk, void* dv);

  // Builds and finalizes this shape's operation graph without a device (every tensor and operation descriptor
  // is checked by cuDNN; no engine is asked): "" when cuDNN accepts them, else its reason. For checks on
  // machines without a GPU.
  static std::string check_graph(int64_t B, int64_t H, int64_t KV, int64_t T, int64_t D, bool backward);

  struct Counts {
    int64_t fwd = 0, bwd = 0;            // calls cuDNN ran
    int64_t fwd_other = 0, bwd_other = 0;  // calls left to the own kernels (ineligible or refused)
  };
  Counts counts() const;
  // One line: the counts, and each refused shape with cuDNN's reason (first 2).
  std::string summary() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// cuDNN's version as "9.19.0" (cudnnGetVersion of the loaded library).
std::string cudnn_version_string();

}  // namespace polyllama::cuda
