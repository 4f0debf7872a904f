#include <algorithm>
#include <cmath>

#include "kernels.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace polyllama::cpu {

// Causal GQA attention, one (batch, kv-head) group per work item so that the k/v gradients of a group are
// written by one thread only. Inside a group the query heads run in turn through row blocks of kAttnBlock:
// block [r0, r1) only needs keys [0, r1), so the GEMMs skip almost all of the masked upper triangle.
// The OpenMP build of OpenBLAS runs single-threaded inside the parallel region, as intended here.

namespace {

template <typename T> void softmax_causal_rows(T* P, int64_t ldp, int64_t r0, int64_t r1) {
  for (int64_t i = r0; i < r1; ++i) {
    T* row = P + i * ldp;
    const int64_t n = i + 1;
    T mx = row[0];
    for (int64_t j = 1; j < n; ++j) mx = std::max(mx, row[j]);
    T sum = 0;
#pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < n; ++j) {
      T e = std::exp(row[j] - mx);
      row[j] = e;
      sum += e;
    }
    T inv = T(1) / sum;
#pragma omp simd
    for (int64_t j = 0; j < n; ++j) row[j] *= inv;
    std::fill(row + n, row + ldp, T(0));
  }
}

}  // namespace

template <typename T>
void attention_forward(T* out, T* probs, const T* q, const T* k, const T* v, int64_t B, int64_t Tn, int64_t H,
                       int64_t KV, int64_t D) {
  const int64_t rep = H / KV, ldq = H * D, ldk = KV * D;
  const T scale = T(1) / std::sqrt(static_cast<T>(D));
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t g = 0; g < KV; ++g) {
      const T* kb = k + b * Tn * ldk + g * D;
      const T* vb = v + b * Tn * ldk + g * D;
      for (int64_t h = g * rep; h < (g + 1) * rep; ++h) {
        const T* qb = q + b * Tn * ldq + h * D;
        T* ob = out + b * Tn * ldq + h * D;
        T* P = probs + (b * H + h) * Tn * Tn;
        for (int64_t r0 = 0; r0 < Tn; r0 += kAttnBlock) {
          const int64_t r1 = std::min(Tn, r0 + kAttnBlock), m = r1 - r0;
          gemm<T>(false, true, m, r1, D, scale, qb + r0 * ldq, ldq, kb, ldk, T(0), P + r0 * Tn, Tn);
          softmax_causal_rows(P, Tn, r0, r1);
          gemm<T>(false, false, m, D, r1, T(1), P + r0 * Tn, Tn, vb, ldk, T(0), ob + r0 * ldq, ldq);
        }
      }
    }
  }
}

// With S = scale q k^T and P = softmax(S): dV = P^T dO, dP = dO V^T, dS = P (dP - rowsum(P dP)),
// dQ = scale dS K, dK = scale dS^T Q.
template <typename T>
void attention_backward(T* dq, T* dk, T* dv, const T* dout, const T* q, const T* k, const T* v, const T* probs,
                        T* scratch, int scratch_slots, int64_t B, int64_t Tn, int64_t H, int64_t KV, int64_t D) {
  const int64_t rep = H / KV, ldq = H * D, ldk = KV * D;
  const T scale = T(1) / std::sqrt(static_cast<T>(D));
  // One (T, T) scratch block per thread: never more threads than blocks, even if the thread count grew since
  // the scratch was sized.
#pragma omp parallel num_threads(scratch_slots)
  {
#ifdef _OPENMP
    T* dS = scratch + static_cast<int64_t>(omp_get_thread_num()) * Tn * Tn;
#else
    T* dS = scratch;
#endif
#pragma omp for collapse(2) schedule(static)
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t g = 0; g < KV; ++g) {
        const T* kb = k + b * Tn * ldk + g * D;
        const T* vb = v + b * Tn * ldk + g * D;
        T* dkb = dk + b * Tn * ldk + g * D;
        T* dvb = dv + b * Tn * ldk + g * D;
        for (int64_t t = 0; t < Tn; ++t) {
          std::fill(dkb + t * ldk, dkb + t * ldk + D, T(0));
          std::fill(dvb + t * ldk, dvb + t * ldk + D, T(0));
        }
        for (int64_t h = g * rep; h < (g + 1) * rep; ++h) {
          const T* qb = q + b * Tn * ldq + h * D;
          const T* gob = dout + b * Tn * ldq + h * D;
          T* dqb = dq + b * Tn * ldq + h * D;
          const T* P = probs + (b * H + h) * Tn * Tn;
          for (int64_t r0 = 0; r0 < Tn; r0 += kAttnBlock) {
            const int64_t r1 = std::min(Tn, r0 + kAttnBlock), m = r1 - r0;
            const T* Pb = P + r0 * Tn;
            T* dSb = dS + r0 * Tn;
            // dV[0:r1] += P[r0:r1, 0:r1]^T dO[r0:r1]
            gemm<T>(true, false, r1, D, m, T(1), Pb, Tn, gob + r0 * ldq, ldq, T(1), dvb, ldk);
            // dP[r0:r1, 0:r1] = dO[r0:r1] V[0:r1]^T
            gemm<T>(false, true, m, r1, D, T(1), gob + r0 * ldq, ldq, vb, ldk, T(0), dSb, Tn);
            for (int64_t i = r0; i < r1; ++i) {
              const T* pr = P + i * Tn;
              T* dr = dS + i * Tn;
              T dot = 0;
#pragma omp simd reduction(+ : dot)
              for (int64_t j = 0; j <= i; ++j) dot += pr[j] * dr[j];
#pragma omp simd
              for (int64_t j = 0; j <= i; ++j) dr[j] = scale * pr[j] * (dr[j] - dot);
              std::fill(dr + i + 1, dr + r1, T(0));
            }
            // dQ[r0:r1] = dS[r0:r1, 0:r1] K[0:r1];  dK[0:r1] += dS[r0:r1, 0:r1]^T Q[r0:r1]
            gemm<T>(false, false, m, D, r1, T(1), dSb, Tn, kb, ldk, T(0), dqb + r0 * ldq, ldq);
            gemm<T>(true, false, r1, D, m, T(1), dSb, Tn, qb + r0 * ldq, ldq, T(1), dkb, ldk);
          }
        }
      }
    }
  }
}

template void attention_forward<float>(float*, float*, const float*, const float*, const float*, int64_t, int64_t,
                                       int64_t, int64_t, int64_t);
template void attention_forward<double>(double*, double*, const double*, const double*, const double*, int64_t,
                                        int64_t, int64_t, int64_t, int64_t);
template void attention_backward<float>(float*, float*, float*, const float*, const float*, const float*,
                                        const float*, const float*, float*, int, int64_t, int64_t, int64_t,
                                        int64_t, int64_t);
template void attention_backward<double>(double*, double*, double*, const double*, const double*, const double*,
                                         const double*, const double*, double*, int, int64_t, int64_t, int64_t,
                                         int64_t, int64_t);

}  // namespace polyllama::cpu
