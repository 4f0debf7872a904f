// Placeholder until the tensor-core kernels land: every shape takes the plain kernels.
#include "attention_flash.cuh"

namespace polyllama::cuda::attn {

bool flash_supports(int64_t) { return false; }

void flash_forward(cudaStream_t, const Geo&, const __nv_bfloat16*, const __nv_bfloat16*, const __nv_bfloat16*,
                   __nv_bfloat16*, float*) {
  PL_CHECK(false, "flash attention is not built yet");
}

void flash_backward(cudaStream_t, const Geo&, const __nv_bfloat16*, const __nv_bfloat16*, const __nv_bfloat16*,
                    const __nv_bfloat16*, const float*, const __nv_bfloat16*, __nv_bfloat16*, __nv_bfloat16*,
                    __nv_bfloat16*, float*, float*) {
  PL_CHECK(false, "flash attention is not built yet");
}

}  // namespace polyllama::cuda::attn
