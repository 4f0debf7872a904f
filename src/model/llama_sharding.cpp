#include "polyllama/model/llama_sharding.hpp"

#include <algorithm>
#include <cmath>

#include "polyllama/core/error.hpp"

namespace polyllama {

void validate_tensor_parallel(const ModelConfig& cfg, int tp) {
  if (tp < 1) fail_input("--tp must be >= 1, got " + std::to_string(tp));
  if (tp == 1) return;
  auto need = [&](int64_t n, const char* what, const char* hint) {
    if (n % tp != 0)
      fail_input(std::string("tensor parallelism: ") + what + " = " + std::to_string(n) + " does not divide by --tp " +
                 std::to_string(tp) + "; " + hint);
  };
  need(cfg.num_attention_heads, "num_attention_heads", "each tp rank holds whole heads: choose a tp that divides it");
  need(cfg.num_key_value_heads, "num_key_value_heads",
       "each tp rank holds whole key/value heads (kv heads are not replicated): choose a tp that divides it");
  need(cfg.intermediate_size, "intermediate_size", "gate/up/down are split by feature: choose a tp that divides it");
  need(cfg.vocab_size, "vocab_size",
       "the vocabulary is split evenly, not padded: pad it to a multiple of tp (`polyllama tokenizer extend "
       "--pad-to-multiple`, then `polyllama resize-vocab`) or "
       "choose a tp that divides it");
}

std::vector<ParamSpec> llama_param_specs(const ModelConfig& cfg) {
  const int64_t C = cfg.hidden_size, F = cfg.intermediate_size, V = cfg.vocab_size;
  const int64_t Hd = cfg.num_attention_heads * cfg.head_dim(), KVd = cfg.num_key_value_heads * cfg.head_dim();
  std::vector<ParamSpec> s = {{"model.embed_tokens.weight", {V, C}, true, Split::rows}};
  for (int64_t l = 0; l < cfg.num_hidden_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    s.push_back({p + "input_layernorm.weight", {C}, false, Split::none});
    s.push_back({p + "self_attn.q_proj.weight", {Hd, C}, true, Split::rows});
    s.push_back({p + "self_attn.k_proj.weight", {KVd, C}, true, Split::rows});
    s.push_back({p + "self_attn.v_proj.weight", {KVd, C}, true, Split::rows});
    s.push_back({p + "self_attn.o_proj.weight", {C, Hd}, true, Split::cols});
    s.push_back({p + "post_attention_layernorm.weight", {C}, false, Split::none});
    s.push_back({p + "mlp.gate_proj.weight", {F, C}, true, Split::rows});
    s.push_back({p + "mlp.up_proj.weight", {F, C}, true, Split::rows});
    s.push_back({p + "mlp.down_proj.weight", {C, F}, true, Split::cols});
  }
  s.push_back({"model.norm.weight", {C}, false, Split::none});
  if (!cfg.tie_word_embeddings) s.push_back({"lm_head.weight", {V, C}, true, Split::rows});
  return s;
}

ShardSpec tp_shard(const std::vector<int64_t>& full_shape, Split split, int tp, int tp_rank) {
  if (split == Split::none || tp == 1) {
    ShardSpec s = ShardSpec::full(full_shape);
    s.replica_id = split == Split::none ? tp_rank : 0;
    return s;
  }
  return ShardSpec::split(full_shape, split == Split::rows ? 0 : 1, tp, tp_rank);
}

// Each rank reduces its slice of every row to (log-sum-exp, target logit); one all-gather hands every rank all
// slices' pairs, from which each forms the row's loss and its slice of the gradient. No collective in backward:
// the gradient of the logits is local to the slice.
double vocab_parallel_xent(Backend& be, Tensor logits, Tensor loss, Tensor stats, const int32_t* targets, int64_t v0,
                           int32_t ignore_index, bool want_grad, double grad_scale, Communicator& tp) {
  const int64_t N = logits.rows();
  PL_CHECK(stats.numel() >= 2 * N * tp.size(), "vocab_parallel_xent: stats must hold (tp, N, 2) = " +
                                                   std::to_string(2 * N * tp.size()) + " elements, got " +
                                                   stats.shape_str());
  Tensor all = stats.view({stats.numel()});
  all.shape[0] = 2 * N * tp.size();
  Tensor mine = all;
  mine.data = static_cast<char*>(all.data) + static_cast<size_t>(2 * N * tp.rank()) * dtype_size(all.dtype);
  mine.shape[0] = 2 * N;
  be.xent_partial(logits, mine, targets, v0, ignore_index);
  tp.all_gather(all.data, std::vector<int64_t>(static_cast<size_t>(tp.size()), 2 * N), all.dtype);
  return be.xent_finish(logits, loss, all, targets, v0, ignore_index, want_grad, grad_scale);
}

}  // namespace polyllama
