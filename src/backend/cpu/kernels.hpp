#pragma once
// Internal to the CPU backend: the typed kernels behind CpuBackend's dtype dispatch. Explicitly instantiated
// for float and double in each kernel's file.
#include <cstdint>

#include "polyllama/core/backend.hpp"

namespace polyllama::cpu {

// Row-major C (M, N) = alpha * op(A) op(B) + beta * C with explicit leading dims (strided head views).
template <typename T>
void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda, const T* B,
          int64_t ldb, T beta, T* C, int64_t ldc);

template <typename T> void rmsnorm_forward(T* y, T* rstd, const T* x, const T* w, int64_t N, int64_t C, double eps);
template <typename T>
void rmsnorm_backward(T* dx, T* dw, const T* dy, const T* x, const T* w, const T* rstd, int64_t N, int64_t C);
template <typename T>
void rope(T* x, const T* cos, const T* sin, int64_t B, int64_t Tn, int64_t H, int64_t D, const int32_t* positions,
          bool inverse);
template <typename T> void swiglu_forward(T* out, const T* gate, const T* up, int64_t n);
template <typename T> void swiglu_backward(T* dgate, T* dup, const T* dout, const T* gate, const T* up, int64_t n);
// The keys query i of one batch row sees: [lo(i), hi(i)] (see AttnSpan).
struct Span {
  const int32_t* start;  // (Tq) or nullptr
  int64_t offset;        // kv_len - Tq
  int64_t lo(int64_t i) const { return start ? start[i] : 0; }
  int64_t hi(int64_t i) const { return offset + i; }
};
struct AttnDims {
  int64_t B, Tq, Tk, H, KV, D;  // Tk: rows of k and v (their stride); keys beyond kv_len are never read
  int64_t kv_len;
  const int32_t* kv_start;  // (B, Tq) or nullptr
  Span span(int64_t b) const { return {kv_start ? kv_start + b * Tq : nullptr, kv_len - Tq}; }
};
template <typename T>
void attention_forward(T* out, T* probs, const T* q, const T* k, const T* v, const AttnDims& d);
// Forward only (decoding): `work` holds `slots` blocks of attention_decode_slot_elems(Tk, D).
template <typename T>
void attention_forward_decode(T* out, T* work, int slots, const T* q, const T* k, const T* v, const AttnDims& d);
template <typename T>
void attention_backward(T* dq, T* dk, T* dv, const T* dout, const T* q, const T* k, const T* v, const T* probs,
                        T* scratch, int scratch_slots, const AttnDims& d);
template <typename T> void embedding_forward(T* out, const T* table, const int32_t* ids, int64_t N, int64_t C);
template <typename T> void embedding_backward(T* dtable, const T* dout, const int32_t* ids, int64_t N, int64_t C);
template <typename T>
double softmax_xent(T* logits, T* loss, const int32_t* targets, int32_t ignore_index, bool want_grad,
                    double grad_scale, int64_t N, int64_t V);
// The two halves of the vocab-parallel cross-entropy (Backend::xent_partial / xent_finish).
template <typename T>
void xent_partial(const T* logits, T* stats, const int32_t* targets, int64_t v0, int32_t ignore_index, int64_t N,
                  int64_t Vl);
template <typename T>
double xent_finish(T* logits, T* loss, const T* stats_all, int64_t parts, const int32_t* targets, int64_t v0,
                   int32_t ignore_index, bool want_grad, double grad_scale, int64_t N, int64_t Vl);
template <typename T> void adamw(T* p, const T* g, T* m, T* v, int64_t n, const AdamWParams& hp);

// Rows of the attention block that one GEMM handles: keeps the causal waste to under one block per row.
constexpr int64_t kAttnBlock = 64;
// Query rows (positions times the heads that share a kv head) of one decoding block: the GEMMs that pack a block
// of keys once for all of them stay efficient, and a thread's scores (kDecodeRows, Tk) stay a few MB.
constexpr int64_t kDecodeRows = 256;
inline int64_t attention_decode_slot_elems(int64_t Tk, int64_t D) { return kDecodeRows * (Tk + 2 * D); }

}  // namespace polyllama::cpu
