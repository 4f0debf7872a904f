#pragma once
// The tensor-parallel plan of LLaMA (Megatron): which weights are split, along which dim, and the
// vocab-parallel pieces (embedding rows, LM-head rows, cross-entropy over a vocabulary slice). The model is
// written with full shapes; allocation, initialisation and checkpoints read this plan.
#include <cstdint>
#include <string>
#include <vector>

#include "polyllama/core/backend.hpp"
#include "polyllama/core/shard_spec.hpp"
#include "polyllama/core/tensor.hpp"
#include "polyllama/model/config.hpp"
#include "polyllama/parallel/parallel.hpp"

namespace polyllama {

// none: replicated on every tp rank (norm weights); rows: column-parallel (the output features, dim 0 of
// Hugging Face's [out, in] weights: q/k/v, gate/up, embedding and LM head by vocabulary); cols: row-parallel
// (the input features, dim 1: o_proj, down_proj).
enum class Split : int { none, rows, cols };

// A parameter of the model with its full (unsharded) shape, whether weight decay applies, and its tp split.
struct ParamSpec {
  std::string name;  // Hugging Face's
  std::vector<int64_t> full_dims;
  bool decay;
  Split split;
};
// Every parameter of a LLaMA of this config in Hugging Face order (the embedding, each layer's input_layernorm,
// q/k/v/o, post_attention_layernorm, gate/up/down, the final norm, the LM head unless tied): the one list that
// LlamaModel allocates from and `plan` sizes from.
std::vector<ParamSpec> llama_param_specs(const ModelConfig& cfg);

// Fails with the numbers and a way out unless heads, kv-heads, intermediate size and vocabulary all divide by tp
// (an uneven vocabulary is refused, not padded: pad it with `polyllama resize-vocab` first).
void validate_tensor_parallel(const ModelConfig& cfg, int tp);

// Rank tp_rank's block of a full tensor under `split` (replica_id = tp_rank for replicated tensors, so only
// tp rank 0 writes them).
ShardSpec tp_shard(const std::vector<int64_t>& full_shape, Split split, int tp, int tp_rank);

// Vocab-parallel softmax cross-entropy over logits (N, V / tp) holding vocabulary ids [v0, v0 + V / tp) of each
// row, without gathering the full logits (Megatron's cross_entropy.py, with one collective instead of three):
// each rank's (log-sum-exp, target logit) per row (Backend::xent_partial) are all-gathered over tp into stats
// (tp, N, 2 elements, in the backend's memory) and combined (Backend::xent_finish). Same contract as
// Backend::softmax_xent: loss (N) = -log softmax(full row)[target] (0 where target == ignore_index), with
// want_grad the logits become grad_scale * (softmax - onehot) restricted to the slice; returns the sum of loss
// (identical on every tp rank).
double vocab_parallel_xent(Backend& be, Tensor logits, Tensor loss, Tensor stats, const int32_t* targets, int64_t v0,
                           int32_t ignore_index, bool want_grad, double grad_scale, Communicator& tp);

}  // namespace polyllama
