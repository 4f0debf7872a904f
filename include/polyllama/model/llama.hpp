#pragma once
// LLaMA as explicit forward and backward passes over the backend's op table. Parameters, gradients and
// activations each live in one arena, sized once by allocate_activations(); a training step allocates nothing.
// Mixed precision (GPU training): the parameters the optimizer and checkpoints see stay in `dtype` (f32 master
// weights, f32 gradients), the ops read a bf16 working copy of them (refresh_working_weights() after each update),
// activations are bf16, and per-row statistics (rstd, saved attention state, loss rows) and the RoPE tables stay
// f32 in an arena of their own. Without it every tensor is in `dtype`, as on the CPU.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "polyllama/core/arena.hpp"
#include "polyllama/core/backend.hpp"
#include "polyllama/model/config.hpp"
#include "polyllama/model/llama_layer.hpp"
#include "polyllama/model/llama_sharding.hpp"
#include "polyllama/parallel/parallel.hpp"
#include "polyllama/parallel/tensor_parallel.hpp"

namespace polyllama {

struct ParamInfo {
  std::string name;  // Hugging Face name, e.g. model.layers.3.self_attn.q_proj.weight
  int handle;        // in the params and grads arenas
  bool decay;        // weight decay applies (not to norm weights)
  Split split = Split::none;  // tensor-parallel plan (llama_sharding.hpp)
  ShardSpec shard;            // this tp rank's block of the full tensor (the whole tensor without tp)
};

class LlamaModel {
 public:
  static constexpr int32_t kIgnoreIndex = -100;  // PyTorch's default for cross-entropy

  // With `parallel` (tp > 1), this rank holds its Megatron shard of every weight (llama_sharding.hpp) and the
  // forward and backward passes insert the tp collectives (tensor_tp(): on a GPU backend the context must have
  // been attach()ed to it, for NCCL); the context must outlive the model.
  LlamaModel(const ModelConfig& cfg, Backend& backend, DType dtype = DType::f32, bool mixed_precision = false,
             const ParallelContext* parallel = nullptr);
  const ParallelContext* parallel() const { return par_; }
  int tp() const { return tp_.size(); }
  const TensorParallel& tensor_parallel() const { return tp_; }
  // This tp rank's share: heads, kv heads, MLP features, and vocabulary rows [vocab_offset, + local_vocab).
  int64_t local_heads() const { return H_; }
  int64_t local_kv_heads() const { return KV_; }
  int64_t local_features() const { return F_; }
  int64_t local_vocab() const { return V_; }
  int64_t vocab_offset() const { return v0_; }

  const ModelConfig& config() const { return cfg_; }
  DType dtype() const { return dtype_; }  // of parameters and gradients
  DType compute_dtype() const { return act_dtype_; }  // of activations and of the weights the ops read
  bool mixed_precision() const { return mixed_; }
  Backend& backend() { return be_; }

  // Parameters in Hugging Face order; the tied LM head is not a separate entry.
  const std::vector<ParamInfo>& params() const { return params_; }
  Tensor param(size_t i) const { return weights_.get(params_[i].handle); }
  // Gradients are allocated (zeroed) at the first of these calls: eval, generate and serve never make one, so
  // they hold the weights once, not twice (27 GB less for a 7B model in f32).
  Tensor grad(size_t i) const { return grads().get(params_[i].handle); }
  Tensor all_params() const { return weights_.flat(); }
  Tensor all_grads() const { return grads().flat(); }
  // Index of a parameter by name; fails with the name when absent.
  size_t param_index(const std::string& name) const;
  // The weights the ops read (the bf16 working copy under mixed precision, else the parameters): what decoding
  // runs on.
  LayerWeights layer_weights(size_t layer) const;
  Tensor embedding_weight() const { return P(embed_); }
  Tensor final_norm_weight() const { return P(norm_); }
  Tensor head_weight() const { return P(cfg_.tie_word_embeddings ? embed_ : lm_head_); }

  // N(0, std) for every matrix, ones for norm weights; a pure function of (seed, parameter name, index).
  void init_random(uint64_t seed, double std);
  // Mixed precision: rounds the master weights into the bf16 working copy. Call after anything writes the
  // parameters (optimizer step, checkpoint load); a no-op otherwise.
  void refresh_working_weights();

  // Sizes every activation buffer for micro-batches of (batch, seq). Call once before training. With recompute
  // only each layer's input is kept through the forward pass; backward recomputes the layer's activations
  // from it first (one more forward per step, activation memory of one layer instead of all).
  // recompute_layers >= 0 recomputes only the first that many layers (recompute or not), the others keep their
  // activations: memory traded for time layer by layer (Megatron's --recompute-num-layers; see
  // ModelConfig::recomputed_layers).
  void allocate_activations(int64_t batch, int64_t seq, bool recompute = false, int64_t recompute_layers = -1);
  bool recompute() const { return recompute_layers_ > 0; }
  int64_t batch() const { return B_; }
  int64_t seq() const { return T_; }
  size_t activation_bytes() const { return acts_.bytes() + stats_.bytes(); }
  size_t parameter_bytes() const { return weights_.bytes() + work_.bytes(); }

  // One micro-batch: inputs and targets are (batch, seq) token ids; targets equal to kIgnoreIndex carry no
  // loss. Returns the summed loss over counted targets. With want_grad, gradients of
  // (loss_scale * summed loss) are accumulated (+=) into grads; zero_grads() clears them.
  // doc_start (batch, seq), optional: the index in its row where each token's example begins. Packed SFT
  // examples then neither attend to each other nor share positions (each restarts RoPE at 0); nullptr or all
  // zeros is one causal stream per row, as pretraining packs documents.
  double forward_backward(const int32_t* inputs, const int32_t* targets, double loss_scale, bool want_grad,
                          const int32_t* doc_start = nullptr);
  void zero_grads();
  // Called with a parameter's index once backward has finished its gradient (final norm and LM head first, then
  // the layers from the last, the embedding last), so the data-parallel reduction can start while backward goes
  // on. Set it for the pass that completes the step's gradients (the last micro-batch); empty: no calls.
  void set_grad_ready_hook(std::function<void(size_t)> hook) { grad_ready_ = std::move(hook); }

  // Forward only, writing every logit to logits (batch * seq, vocab, in compute_dtype() or f32, in the
  // backend's memory): for tests and generation.
  void forward_logits(const int32_t* inputs, Tensor logits, const int32_t* doc_start = nullptr);

 private:
  struct Layer {  // parameter indices
    size_t ln1, wq, wk, wv, wo, ln2, wg, wu, wd;
  };
  struct LayerActHandles {  // arena handles of what the backward pass reads; rstd*, saved: in stats_
    int res_in, ln1, rstd1, q, k, v, saved, att, res_mid, ln2, rstd2, gate, up, act;
  };
  void register_params();
  size_t add_param(const std::string& name, std::vector<int64_t> full_dims, bool decay, Split split);
  void forward(const int32_t* inputs);
  // Layer l from its input la_[l].res_in; write_output: also form its output (the next layer's input).
  void layer_forward(size_t l, bool write_output);
  // Positions and the attention span of this micro-batch from doc_start (checked).
  void set_layout(const int32_t* doc_start);
  // The layer call of this micro-batch (shapes, rotary tables, positions, span) and layer l's tensors.
  LayerCall layer_call() const;
  LayerActs layer_acts(size_t l) const;
  LayerWeights layer_grads(size_t l) const;
  // LM head and loss in row chunks, fused with the head's backward so full logits never exist at once.
  double head_and_loss(const int32_t* targets, double loss_scale, bool want_grad);
  void backward(const int32_t* inputs);
  // The weights the ops read: the bf16 working copy under mixed precision, else the parameters themselves.
  Tensor P(size_t i) const { return mixed_ ? work_.get(params_[i].handle) : param(i); }
  Tensor G(size_t i) const { return grad(i); }
  Tensor A(int h) const { return acts_.get(h); }
  Tensor S(int h) const { return stats_.get(h); }
  Tensor head_grad() const { return G(cfg_.tie_word_embeddings ? embed_ : lm_head_); }

  ModelConfig cfg_;
  Backend& be_;
  const ParallelContext* par_ = nullptr;
  TensorParallel tp_;
  int64_t H_ = 0, KV_ = 0, F_ = 0, V_ = 0, v0_ = 0;  // this rank's heads, kv heads, features, vocab rows from v0_
  VocabParallelEmbedding embedding_;
  DType dtype_;
  bool mixed_;
  DType act_dtype_, stat_dtype_;
  const Arena& grads() const;
  Arena weights_, work_, acts_, stats_;  // work_: bf16 working weights (mixed precision only)
  mutable Arena grads_;                  // allocated by grads(), on first use
  std::vector<ParamInfo> params_;
  std::vector<Layer> layers_;
  size_t embed_ = 0, norm_ = 0, lm_head_ = 0;

  int64_t B_ = 0, T_ = 0, head_chunk_ = 0;
  int64_t recompute_layers_ = 0;  // layers [0, recompute_layers_) share one set of buffers and are recomputed
  std::function<void(size_t)> grad_ready_;
  void ready(size_t i) const {
    if (grad_ready_) grad_ready_(i);
  }
  std::vector<int32_t> positions_, kv_start_;  // (B, T) of the current micro-batch
  bool segmented_ = false;                     // some row holds more than one example
  std::vector<LayerActHandles> la_;
  int res_final_ = -1, lnf_ = -1, rstdf_ = -1, rope_cos_ = -1, rope_sin_ = -1, logits_ = -1, loss_rows_ = -1,
      xent_stats_ = -1;
  // Backward scratch, shared by all layers.
  int dres_ = -1, dln_ = -1, datt_ = -1, dq_ = -1, dk_ = -1, dv_ = -1, dact_ = -1, dgate_ = -1, dup_ = -1,
      attn_scratch_ = -1;
};

}  // namespace polyllama
