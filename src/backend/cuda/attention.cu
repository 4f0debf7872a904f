// The attention launchers: check the arguments, pick the kernel (flash for bf16 with a head dim it
// instantiates, the plain kernels otherwise), launch, check the launch.
#include <cstdint>
#include <string>

#include "attention.cuh"
#include "attention_common.cuh"
#include "attention_flash.cuh"
#include "attention_simple.cuh"

namespace polyllama::cuda {
namespace {

constexpr size_t kAlign = 256;
size_t align_up(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

std::string dims_str(const AttnArgs& a) {
  return "B=" + std::to_string(a.B) + " Tq=" + std::to_string(a.Tq) + " Tk=" + std::to_string(a.Tk) +
         " H=" + std::to_string(a.H) + " KV=" + std::to_string(a.KV) + " D=" + std::to_string(a.D) +
         " kv_len=" + std::to_string(a.kv_len) + " dtype=" + dtype_name(a.dtype);
}

attn::Geo check_args(const AttnArgs& a, const char* who) {
  const std::string where = std::string(who) + " (" + dims_str(a) + "): ";
  PL_CHECK(a.dtype == DType::bf16 || a.dtype == DType::f32, where + "dtype must be bf16 or f32");
  PL_CHECK(a.B >= 0 && a.Tq >= 0 && a.Tk >= 0 && a.H > 0 && a.KV > 0 && a.D > 0, where + "bad dims");
  PL_CHECK(a.H % a.KV == 0, where + "H must be a multiple of KV");
  PL_CHECK(a.Tq <= a.kv_len && a.kv_len <= a.Tk, where + "need Tq <= kv_len <= Tk");
  PL_CHECK(a.scale > 0, where + "scale must be positive (1 / sqrt(D))");
  PL_CHECK(a.q && a.k && a.v && a.out && a.lse, where + "null tensor pointer");
  return attn::Geo{a.B, a.Tq, a.Tk, a.H, a.KV, a.D, a.kv_len, a.kv_start, a.scale};
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// The flash kernels move 16-byte chunks with cp.async and keep positions in 32 bits.
bool use_flash(const AttnArgs& a) {
  return a.dtype == DType::bf16 && attn::flash_supports(a.D) && aligned16(a.q) && aligned16(a.k) &&
         aligned16(a.v) && aligned16(a.out) && a.Tk < (int64_t{1} << 30);
}
bool use_flash(const AttnArgs& a, const void* dout, const void* dq, const void* dk, const void* dv) {
  return use_flash(a) && aligned16(dout) && aligned16(dq) && aligned16(dk) && aligned16(dv);
}

}  // namespace

void attention_forward(cudaStream_t stream, const AttnArgs& a) {
  const attn::Geo g = check_args(a, "attention_forward");
  if (a.B == 0 || a.Tq == 0) return;
  if (a.dtype == DType::f32) {
    attn::simple_forward<float>(stream, g, static_cast<const float*>(a.q), static_cast<const float*>(a.k),
                                static_cast<const float*>(a.v), static_cast<float*>(a.out), a.lse);
    return;
  }
  using bf = __nv_bfloat16;
  const bf* q = static_cast<const bf*>(a.q);
  const bf* k = static_cast<const bf*>(a.k);
  const bf* v = static_cast<const bf*>(a.v);
  if (use_flash(a))
    attn::flash_forward(stream, g, q, k, v, static_cast<bf*>(a.out), a.lse);
  else
    attn::simple_forward<bf>(stream, g, q, k, v, static_cast<bf*>(a.out), a.lse);
}

size_t attention_backward_workspace_bytes(const AttnArgs& a) {
  // delta (B, H, Tq) floats; the flash path adds an fp32 dq accumulator (B, Tq, H, D).
  const size_t rows = static_cast<size_t>(a.B * a.H * a.Tq);
  size_t bytes = align_up(rows * sizeof(float));
  if (a.dtype == DType::bf16) bytes += align_up(rows * static_cast<size_t>(a.D) * sizeof(float));
  return bytes;
}

void attention_backward(cudaStream_t stream, const AttnArgs& a, const void* dout, void* dq, void* dk, void* dv,
                        void* workspace) {
  const attn::Geo g = check_args(a, "attention_backward");
  PL_CHECK(dout && dq && dk && dv, "attention_backward (" + dims_str(a) + "): null gradient pointer");
  if (a.B == 0) return;
  PL_CHECK(workspace, "attention_backward (" + dims_str(a) + "): null workspace");
  if (a.Tq == 0) {  // no query sees a key: every key gradient is zero
    const size_t kv_bytes = static_cast<size_t>(a.B * a.Tk * a.KV * a.D) * dtype_size(a.dtype);
    PL_ATTN_CUDA_CHECK(cudaMemsetAsync(dk, 0, kv_bytes, stream));
    PL_ATTN_CUDA_CHECK(cudaMemsetAsync(dv, 0, kv_bytes, stream));
    return;
  }
  float* delta = static_cast<float*>(workspace);
  if (a.dtype == DType::f32) {
    using f = float;
    attn::simple_backward<f>(stream, g, static_cast<const f*>(a.q), static_cast<const f*>(a.k),
                             static_cast<const f*>(a.v), static_cast<const f*>(a.out), a.lse,
                             static_cast<const f*>(dout), static_cast<f*>(dq), static_cast<f*>(dk),
                             static_cast<f*>(dv), delta);
    return;
  }
  using bf = __nv_bfloat16;
  const bf* q = static_cast<const bf*>(a.q);
  const bf* k = static_cast<const bf*>(a.k);
  const bf* v = static_cast<const bf*>(a.v);
  const bf* o = static_cast<const bf*>(a.out);
  const bf* d_o = static_cast<const bf*>(dout);
  if (use_flash(a, dout, dq, dk, dv)) {
    float* dq_acc = reinterpret_cast<float*>(static_cast<char*>(workspace) +
                                             align_up(static_cast<size_t>(a.B * a.H * a.Tq) * sizeof(float)));
    attn::flash_backward(stream, g, q, k, v, o, a.lse, d_o, static_cast<bf*>(dq), static_cast<bf*>(dk),
                         static_cast<bf*>(dv), delta, dq_acc);
  } else {
    attn::simple_backward<bf>(stream, g, q, k, v, o, a.lse, d_o, static_cast<bf*>(dq), static_cast<bf*>(dk),
                              static_cast<bf*>(dv), delta);
  }
}

}  // namespace polyllama::cuda
