#pragma once
// One LLaMA decoder layer as explicit forward and backward functions over tensors (STYLE.md practice 4), and the
// pieces around the layers that every consumer of the model shares: the vocab-parallel embedding, the rotary
// tables and the linear maps. Written once; called by LlamaModel (training and scoring: every buffer its own and
// kept for backward) and by LlamaDecoder (KV-cached decoding: buffers reused in place, keys and values appended
// to a cache). Tensor parallelism enters only through TensorParallel's paired collectives.
//
// Shapes: N = B * T rows; C the hidden size; this tp rank's H heads, KV kv-heads of D, F MLP features. Outputs
// marked `=` are overwritten, `+=` accumulated.
#include <cstdint>
#include <utility>
#include <vector>

#include "polyllama/core/backend.hpp"
#include "polyllama/parallel/tensor_parallel.hpp"

namespace polyllama {

// y (N, out) = x (N, in) W^T + beta y, for Hugging Face's [out, in] weights.
void linear_forward(Backend& be, Tensor y, Tensor x, Tensor w, double beta = 0.0);
// dx (N, in) = dy W (+= with accumulate_dx);  dw (out, in) += dy^T x.
void linear_backward(Backend& be, Tensor dx, Tensor dw, Tensor dy, Tensor x, Tensor w, bool accumulate_dx);

// The weights of one layer as the ops read them (this tp rank's shards), or their gradients.
struct LayerWeights {
  Tensor ln1, wq, wk, wv, wo, ln2, wg, wu, wd;  // (C), (H D, C), (KV D, C) x 2, (C, H D), (C), (F, C) x 2, (C, F)
};

// What the forward pass writes. Training keeps one set per layer for backward; the decoder aliases ln2 = ln1,
// rstd2 = rstd1, act = gate (SwiGLU in place) and res_mid = its residual stream.
struct LayerActs {
  Tensor ln1, ln2;          // (N, C) normed inputs of attention and MLP
  Tensor rstd1, rstd2;      // (N) statistics
  Tensor q, att;            // (N, H D)
  Tensor k, v;              // (N, KV D)
  Tensor saved;             // Backend::attention_saved_elems(B, H, T, keys) elements (decode_elems: no backward)
  Tensor res_mid;           // (N, C) the residual stream after attention
  Tensor gate, up, act;     // (N, F)
};

// Backward scratch, shared by all layers (overwritten by each).
struct LayerScratch {
  Tensor dln;               // (N, C)
  Tensor datt, dq;          // (N, H D)
  Tensor dk, dv;            // (N, KV D)
  Tensor dact, dgate, dup;  // (N, F)
  Tensor attn;              // Backend::attention_scratch_elems
};

// One call of the layer: the batch, this rank's heads, the rotary tables and positions, the attention span and,
// when decoding, the KV cache.
struct LayerCall {
  int64_t B = 0, T = 0;                         // rows and new positions per row
  int64_t heads = 0, kv_heads = 0, head_dim = 0;  // this tp rank's
  double eps = 1e-6;                            // RMSNorm
  Tensor rope_cos, rope_sin;                    // (max_pos, D/2)
  const int32_t* positions = nullptr;           // (B, T) host; nullptr: position t
  AttnSpan span;                                // which keys each query sees
  // KV cache (B, capacity, KV, D) each: when set, the new keys and values are written at positions
  // [cache_len, cache_len + T) of every row and attention reads the cache; otherwise it reads them directly.
  Tensor k_cache, v_cache;
  int64_t cache_len = 0;
};

// res_out (N, C) = res_in + attention + MLP, the activations in `a` written on the way. res_out may alias res_in
// (and a.res_mid); an empty res_out stops after SwiGLU (a recomputation for backward needs no more).
void layer_forward(Backend& be, const TensorParallel& tp, const LayerCall& call, const LayerWeights& w,
                   const LayerActs& a, Tensor res_in, Tensor res_out);
// The last layer of a decoding call whose output is read at one position per row at most (the next-token
// logits of a prompt): keys and values of every position go to the cache, as later positions need them, but
// the query, attention and MLP run only at position at[b] of row b (-1: none). x (N, C) is the residual stream,
// in place: on return its first M rows hold the outputs of the M rows with a position, in row order (the other
// rows, and ln1's, are overwritten). Returns M. Skips nearly all of the layer for the other positions: 3 % of a
// 32-layer prefill, 11 % of an 8-layer one.
int64_t layer_forward_at(Backend& be, const TensorParallel& tp, const LayerCall& call, const LayerWeights& w,
                         const LayerActs& a, Tensor x, const std::vector<int64_t>& at);
// dres (N, C): dL/d(res_out) on entry, dL/d(res_in) on exit (the residual path accumulates in place);
// grads (the layer's weight gradients) +=. Needs the activations of layer_forward on res_in.
void layer_backward(Backend& be, const TensorParallel& tp, const LayerCall& call, const LayerWeights& w,
                    const LayerWeights& grads, const LayerActs& a, const LayerScratch& s, Tensor res_in, Tensor dres);

// Megatron's VocabParallelEmbedding: tp rank r holds rows [v0, v0 + rows) of the table. Forward looks up the ids
// this rank holds, zeroes the rows of the others and sums over tp (each row comes from exactly one rank).
class VocabParallelEmbedding {
 public:
  // out (n, C) = table[ids]; ids are host token ids of the full vocabulary (checked by the caller).
  void forward(Backend& be, const TensorParallel& tp, Tensor out, Tensor table, int64_t v0, const int32_t* ids,
               int64_t n);
  // dtable += dout at the ids of the last forward that this rank holds; dout's other rows are zeroed first.
  void backward(Backend& be, const TensorParallel& tp, Tensor dtable, Tensor dout, const int32_t* ids);

 private:
  std::vector<int32_t> local_ids_;                         // ids inside this rank's rows (0 elsewhere)
  std::vector<std::pair<int64_t, int64_t>> foreign_runs_;  // runs of rows whose token another rank holds
};

// Rotary tables (rows, D/2) for positions 0 .. rows-1: cos and sin of t * theta^(-2i/D), each angle formed in
// double and rounded once into the tables' dtype (f32 or f64), as Hugging Face forms inv_freq; uploaded.
void fill_rope_tables(Backend& be, Tensor cos, Tensor sin, double theta);

}  // namespace polyllama
