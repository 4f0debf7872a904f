#pragma once
// Warp-level tensor-core primitives for the flash kernels (sm_80 and later): cp.async tile loads into a
// swizzled shared-memory layout, ldmatrix, and mma.sync m16n8k16 bf16 with fp32 accumulation.
//
// Fragment layouts (PTX ISA, "mma.m16n8k16"), with g = lane / 4 and c = lane % 4:
//   A 16x16 (4 regs of 2 bf16): a0 (row g, cols 2c, 2c+1), a1 (row g+8, same), a2 (row g, cols 2c+8, +9), a3 (g+8)
//   B 16x8  (2 regs):           b0 (rows 2c, 2c+1, col g), b1 (rows 2c+8, 2c+9, col g)
//   C 16x8  (4 floats):         c0, c1 (row g, cols 2c, 2c+1), c2, c3 (row g+8, same)
// So two C tiles side by side (16 x 16) are, rounded to bf16, exactly an A fragment: the probabilities
// computed in registers feed the next product without a trip through shared memory.
//
// Tiles in shared memory are rows of D bf16 (D/8 chunks of 16 bytes); chunk c of row r is stored at chunk
// c ^ (r % 8), so the 8 row addresses of one ldmatrix 8x8 matrix (same chunk, 8 consecutive rows) fall in
// 8 different bank groups.
#include <cuda_bf16.h>

#include <cstdint>

namespace polyllama::cuda::attn::mma {

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// Byte offset of chunk `chunk` (8 bf16) of row `row` in a swizzled tile of D columns.
template <int D> __device__ __forceinline__ uint32_t swz(int row, int chunk) {
  return static_cast<uint32_t>(row * D * 2 + ((chunk ^ (row & 7)) << 4));
}

// 16 bytes global -> shared, asynchronously; zero-filled when !valid (src is then not read).
__device__ __forceinline__ void cp_async16(uint32_t dst, const void* src, bool valid) {
  const int n = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(n));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_group 0;\n" ::: "memory"); }

// Rows [r0, r0 + R) of a (rows, D) matrix whose row r starts at src + r * ld, into a swizzled tile; rows at or
// past `limit` are zero-filled. NT threads share the work (tid in [0, NT)).
template <int R, int D, int NT>
__device__ __forceinline__ void load_tile(uint32_t tile, const __nv_bfloat16* src, int64_t ld, int64_t r0,
                                          int64_t limit, int tid) {
  constexpr int kChunks = D / 8;
#pragma unroll
  for (int i = tid; i < R * kChunks; i += NT) {
    const int r = i / kChunks, c = i % kChunks;
    const bool ok = r0 + r < limit;
    const __nv_bfloat16* s = src + (ok ? (r0 + r) * ld : 0) + c * 8;
    cp_async16(tile + swz<D>(r, c), s, ok);
  }
}

__device__ __forceinline__ void ldsm_x4(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}
__device__ __forceinline__ void ldsm_x4_t(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

// c += a b
__device__ __forceinline__ void mma16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Two floats as bf16x2, `lo` in the low half (the lower column index of a fragment pair).
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&v);
}

// Lane address patterns of ldmatrix.x4 (lane l supplies the address of one row of one 8x8 matrix; matrix i
// lands in register i). Each returns (row, chunk) within a 16-row, 2-chunk (16-column) block.
//  A operand, row-major 16x16 (Q rows x d): r0..r3 = a0..a3.
__device__ __forceinline__ int a_row(int lane) { return lane & 15; }
__device__ __forceinline__ int a_chunk(int lane) { return lane >> 4; }
//  B operand from a row-major (n, k) tile (K rows x d, B = K^T), two n-tiles of 8:
//  r0, r1 = b0, b1 of n-tile 0; r2, r3 = b0, b1 of n-tile 1.
__device__ __forceinline__ int bn_row(int lane) { return (lane & 7) + ((lane >> 4) << 3); }
__device__ __forceinline__ int bn_chunk(int lane) { return (lane >> 3) & 1; }
//  B operand from a row-major (k, n) tile with .trans (V rows x d, B = V), two n-tiles of 8:
//  r0, r1 = b0, b1 of n-tile 0; r2, r3 = b0, b1 of n-tile 1.
__device__ __forceinline__ int bt_row(int lane) { return (lane & 7) + (((lane >> 3) & 1) << 3); }
__device__ __forceinline__ int bt_chunk(int lane) { return lane >> 4; }

}  // namespace polyllama::cuda::attn::mma
