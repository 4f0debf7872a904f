#pragma once
// Embedding launchers. out/dout (N, C) and table in `dtype`; dtable always f32 (a parameter gradient).
#include <cstdint>
#include <vector>

#include "context.hpp"

namespace polyllama::cuda {

// out[n] = table[ids[n]]; ids in device memory.
void embedding_forward(CudaBackend::Context& ctx, DType dtype, void* out, const void* table, const int32_t* ids,
                       int64_t N, int64_t C);
// dtable[tok] += sum of dout[n] over the rows n holding tok, in increasing n: the CPU's order, no atomics.
// plan (device memory) is what embedding_plan() built on the host: U tokens, U + 1 offsets, N rows.
void embedding_backward(CudaBackend::Context& ctx, DType dtype, float* dtable, const void* dout,
                        const int32_t* plan, int64_t U, int64_t N, int64_t C);
// The rows of each distinct token, grouped: [tokens (U) | offsets (U + 1) | rows (N)]; returns U.
int64_t embedding_plan(const int32_t* ids, int64_t N, std::vector<int32_t>& plan);

}  // namespace polyllama::cuda
