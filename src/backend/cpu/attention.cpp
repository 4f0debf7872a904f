#include <algorithm>
#include <cmath>

#include "kernels.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace polyllama::cpu {

// Causal GQA attention, one (batch, kv-head) group per work item so that the k/v gradients of a group are
// written by one thread only. Inside a group the query heads run in turn through row blocks of kAttnBlock:
// a block only needs the keys its rows see, so the GEMMs skip almost all of the masked upper triangle and,
// for packed examples, most of the other examples' keys.
// The OpenMP build of OpenBLAS runs single-threaded inside the parallel region, as intended here.

namespace {

// Softmax of row[lo..hi]; the rest of row[0, width) is set to 0 (the GEMMs after it read whole rows).
template <typename T> __attribute__((always_inline)) inline void softmax_span_body(T* row, int64_t lo, int64_t hi,
                                                                                 int64_t width) {
  T mx = row[lo];
  for (int64_t j = lo + 1; j <= hi; ++j) mx = std::max(mx, row[j]);
  T sum = 0;
#pragma omp simd reduction(+ : sum)
  for (int64_t j = lo; j <= hi; ++j) {
    T e = std::exp(row[j] - mx);
    row[j] = e;
    sum += e;
  }
  T inv = T(1) / sum;
#pragma omp simd
  for (int64_t j = lo; j <= hi; ++j) row[j] *= inv;
  std::fill(row, row + lo, T(0));
  std::fill(row + hi + 1, row + width, T(0));
}

// exp() is most of the softmax's time and vectorises through glibc's libmvec at the width the code is built for: a
// default x86-64 build would take its 4-wide SSE variant, so the softmax is also built for AVX2 and AVX-512 and the
// loader picks the widest this CPU runs (2.5x faster on AVX-512).
#if defined(__x86_64__) && defined(__GNUC__)
#define PL_WIDEST_SIMD __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define PL_WIDEST_SIMD
#endif
PL_WIDEST_SIMD void softmax_span(float* row, int64_t lo, int64_t hi, int64_t width) {
  softmax_span_body(row, lo, hi, width);
}
PL_WIDEST_SIMD void softmax_span(double* row, int64_t lo, int64_t hi, int64_t width) {
  softmax_span_body(row, lo, hi, width);
}

// Row i of P sees keys [lo_i, hi_i]; every other entry of the row is set to 0 (backward reads whole rows).
template <typename T> void softmax_span_rows(T* P, int64_t ldp, int64_t r0, int64_t r1, const Span& sp) {
  for (int64_t i = r0; i < r1; ++i) softmax_span(P + i * ldp, sp.lo(i), sp.hi(i), ldp);
}

// Keys [k0, k1) cover every row of the block [r0, r1): the only columns its GEMMs touch.
inline void block_keys(const Span& sp, int64_t r0, int64_t r1, int64_t* k0, int64_t* k1) {
  int64_t lo = sp.lo(r0);
  for (int64_t i = r0 + 1; i < r1; ++i) lo = std::min(lo, sp.lo(i));
  *k0 = lo;
  *k1 = sp.hi(r1 - 1) + 1;
}

}  // namespace

template <typename T>
void attention_forward(T* out, T* probs, const T* q, const T* k, const T* v, const AttnDims& d) {
  const int64_t rep = d.H / d.KV, ldq = d.H * d.D, ldk = d.KV * d.D, Tq = d.Tq, Tk = d.Tk;
  const T scale = T(1) / std::sqrt(static_cast<T>(d.D));
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < d.B; ++b) {
    for (int64_t g = 0; g < d.KV; ++g) {
      const Span sp = d.span(b);
      const T* kb = k + b * Tk * ldk + g * d.D;
      const T* vb = v + b * Tk * ldk + g * d.D;
      for (int64_t h = g * rep; h < (g + 1) * rep; ++h) {
        const T* qb = q + b * Tq * ldq + h * d.D;
        T* ob = out + b * Tq * ldq + h * d.D;
        T* P = probs + (b * d.H + h) * Tq * Tk;
        for (int64_t r0 = 0; r0 < Tq; r0 += kAttnBlock) {
          const int64_t r1 = std::min(Tq, r0 + kAttnBlock), m = r1 - r0;
          int64_t k0, k1;
          block_keys(sp, r0, r1, &k0, &k1);
          gemm<T>(false, true, m, k1 - k0, d.D, scale, qb + r0 * ldq, ldq, kb + k0 * ldk, ldk, T(0), P + r0 * Tk + k0,
                  Tk);
          softmax_span_rows(P, Tk, r0, r1, sp);
          gemm<T>(false, false, m, d.D, k1 - k0, T(1), P + r0 * Tk + k0, Tk, vb + k0 * ldk, ldk, T(0), ob + r0 * ldq,
                  ldq);
        }
      }
    }
  }
}

// Decoding keeps nothing for a backward, so the scores of a block live in the thread's own slot, and the rep query
// heads that share a kv head go through the same two GEMMs (rows ordered (position, head)): each block of keys and
// values is packed once for all of them, not once per head and per 64 rows, and nothing is written beyond the
// keys a block sees. Blocks of (b, kv head, positions) are the work items.
template <typename T>
void attention_forward_decode(T* out, T* work, int slots, const T* q, const T* k, const T* v, const AttnDims& d) {
  const int64_t rep = d.H / d.KV, ldq = d.H * d.D, ldk = d.KV * d.D, Tq = d.Tq, Tk = d.Tk, D = d.D;
  // Positions per block: as many as fill kDecodeRows, unless the causal triangle a block computes and then masks
  // (R^2 / 2 scores of the R (offset + Tq / 2) each of its rows needs) would be over an eighth of the work, as in a
  // prompt's first chunk.
  const int64_t offset = d.kv_len - Tq;
  const int64_t R = std::clamp<int64_t>((2 * offset + Tq) / 8, 16, std::max<int64_t>(1, kDecodeRows / rep));
  const int64_t blocks = (Tq + R - 1) / R, w = rep * D;
  const T scale = T(1) / std::sqrt(static_cast<T>(D));
#pragma omp parallel num_threads(slots)
  {
#ifdef _OPENMP
    T* S = work + static_cast<int64_t>(omp_get_thread_num()) * attention_decode_slot_elems(Tk, D);
#else
    T* S = work;
#endif
    T* Qs = S + kDecodeRows * Tk;  // (rows, D): the block's queries, stacked
    T* Os = Qs + kDecodeRows * D;  // (rows, D): their outputs
#pragma omp for collapse(3) schedule(dynamic, 1)
    for (int64_t b = 0; b < d.B; ++b) {
      for (int64_t g = 0; g < d.KV; ++g) {
        for (int64_t blk = 0; blk < blocks; ++blk) {
          const Span sp = d.span(b);
          const int64_t r0 = blk * R, r1 = std::min(Tq, r0 + R), m = (r1 - r0) * rep;
          int64_t k0, k1;
          block_keys(sp, r0, r1, &k0, &k1);
          const int64_t n = k1 - k0;
          for (int64_t t = r0; t < r1; ++t) std::copy_n(q + (b * Tq + t) * ldq + g * w, w, Qs + (t - r0) * w);
          gemm<T>(false, true, m, n, D, scale, Qs, D, k + (b * Tk + k0) * ldk + g * D, ldk, T(0), S, n);
          for (int64_t i = 0; i < m; ++i) {
            const int64_t t = r0 + i / rep;
            softmax_span(S + i * n, sp.lo(t) - k0, sp.hi(t) - k0, n);
          }
          gemm<T>(false, false, m, D, n, T(1), S, n, v + (b * Tk + k0) * ldk + g * D, ldk, T(0), Os, D);
          for (int64_t t = r0; t < r1; ++t) std::copy_n(Os + (t - r0) * w, w, out + (b * Tq + t) * ldq + g * w);
        }
      }
    }
  }
}

// With S = scale q k^T and P = softmax(S): dV = P^T dO, dP = dO V^T, dS = P (dP - rowsum(P dP)),
// dQ = scale dS K, dK = scale dS^T Q. Masked entries of P are 0, so they contribute nothing to any of these.
template <typename T>
void attention_backward(T* dq, T* dk, T* dv, const T* dout, const T* q, const T* k, const T* v, const T* probs,
                        T* scratch, int scratch_slots, const AttnDims& d) {
  const int64_t rep = d.H / d.KV, ldq = d.H * d.D, ldk = d.KV * d.D, Tq = d.Tq, Tk = d.Tk, D = d.D;
  const T scale = T(1) / std::sqrt(static_cast<T>(D));
  // One (Tq, Tk) scratch block per thread: never more threads than blocks, even if the thread count grew since
  // the scratch was sized.
#pragma omp parallel num_threads(scratch_slots)
  {
#ifdef _OPENMP
    T* dS = scratch + static_cast<int64_t>(omp_get_thread_num()) * Tq * Tk;
#else
    T* dS = scratch;
#endif
#pragma omp for collapse(2) schedule(static)
    for (int64_t b = 0; b < d.B; ++b) {
      for (int64_t g = 0; g < d.KV; ++g) {
        const Span sp = d.span(b);
        const T* kb = k + b * Tk * ldk + g * D;
        const T* vb = v + b * Tk * ldk + g * D;
        T* dkb = dk + b * Tk * ldk + g * D;
        T* dvb = dv + b * Tk * ldk + g * D;
        for (int64_t t = 0; t < Tk; ++t) {
          std::fill(dkb + t * ldk, dkb + t * ldk + D, T(0));
          std::fill(dvb + t * ldk, dvb + t * ldk + D, T(0));
        }
        for (int64_t h = g * rep; h < (g + 1) * rep; ++h) {
          const T* qb = q + b * Tq * ldq + h * D;
          const T* gob = dout + b * Tq * ldq + h * D;
          T* dqb = dq + b * Tq * ldq + h * D;
          const T* P = probs + (b * d.H + h) * Tq * Tk;
          for (int64_t r0 = 0; r0 < Tq; r0 += kAttnBlock) {
            const int64_t r1 = std::min(Tq, r0 + kAttnBlock), m = r1 - r0;
            int64_t k0, k1;
            block_keys(sp, r0, r1, &k0, &k1);
            const int64_t n = k1 - k0;
            const T* Pb = P + r0 * Tk + k0;
            T* dSb = dS + r0 * Tk + k0;
            // dV[k0:k1] += P[r0:r1, k0:k1]^T dO[r0:r1]
            gemm<T>(true, false, n, D, m, T(1), Pb, Tk, gob + r0 * ldq, ldq, T(1), dvb + k0 * ldk, ldk);
            // dP[r0:r1, k0:k1] = dO[r0:r1] V[k0:k1]^T
            gemm<T>(false, true, m, n, D, T(1), gob + r0 * ldq, ldq, vb + k0 * ldk, ldk, T(0), dSb, Tk);
            for (int64_t i = r0; i < r1; ++i) {
              const int64_t lo = sp.lo(i), hi = sp.hi(i);
              const T* pr = P + i * Tk;
              T* dr = dS + i * Tk;
              T dot = 0;
#pragma omp simd reduction(+ : dot)
              for (int64_t j = lo; j <= hi; ++j) dot += pr[j] * dr[j];
#pragma omp simd
              for (int64_t j = lo; j <= hi; ++j) dr[j] = scale * pr[j] * (dr[j] - dot);
              std::fill(dr + k0, dr + lo, T(0));
              std::fill(dr + hi + 1, dr + k1, T(0));
            }
            // dQ[r0:r1] = dS[r0:r1, k0:k1] K[k0:k1];  dK[k0:k1] += dS[r0:r1, k0:k1]^T Q[r0:r1]
            gemm<T>(false, false, m, D, n, T(1), dSb, Tk, kb + k0 * ldk, ldk, T(0), dqb + r0 * ldq, ldq);
            gemm<T>(true, false, n, D, m, T(1), dSb, Tk, qb + r0 * ldq, ldq, T(1), dkb + k0 * ldk, ldk);
          }
        }
      }
    }
  }
}

template void attention_forward<float>(float*, float*, const float*, const float*, const float*, const AttnDims&);
template void attention_forward<double>(double*, double*, const double*, const double*, const double*,
                                        const AttnDims&);
template void attention_forward_decode<float>(float*, float*, int, const float*, const float*, const float*,
                                              const AttnDims&);
template void attention_forward_decode<double>(double*, double*, int, const double*, const double*, const double*,
                                               const AttnDims&);
template void attention_backward<float>(float*, float*, float*, const float*, const float*, const float*,
                                        const float*, const float*, float*, int, const AttnDims&);
template void attention_backward<double>(double*, double*, double*, const double*, const double*, const double*,
                                         const double*, const double*, double*, int, const AttnDims&);

}  // namespace polyllama::cpu
