#include <cmath>
#include <vector>

#include "polyllama/core/random.hpp"
#include "polyllama/model/llama.hpp"

namespace polyllama {

LlamaModel::LlamaModel(const ModelConfig& cfg, Backend& backend, DType dtype, bool mixed_precision,
                       const ParallelContext* parallel)
    : cfg_(cfg), be_(backend), par_(parallel), tp_(parallel), dtype_(dtype), mixed_(mixed_precision),
      act_dtype_(mixed_precision ? DType::bf16 : dtype), stat_dtype_(dtype), weights_("weights", dtype, &backend),
      work_("weights.bf16", DType::bf16, &backend), acts_("activations", act_dtype_, &backend),
      stats_("statistics", stat_dtype_, &backend), grads_("grads", dtype, &backend) {
  cfg_.validate();
  if (mixed_ && dtype_ != DType::f32) fail_input("mixed precision keeps f32 master weights; got " +
                                                 std::string(dtype_name(dtype_)));
  if (mixed_ && !be_.supports(Op::matmul, DType::bf16))
    fail_input(std::string("mixed precision needs bf16 ops; the ") + be_.name() + " backend has none");
  const int tp = tp_.size();
  validate_tensor_parallel(cfg_, tp);
  if (tp > 1 && par_->tensor_tp().host_memory() != be_.host_memory())
    fail_input(std::string("tensor parallelism on the ") + be_.name() + " backend needs its collectives: call "
               "ParallelContext::attach(backend) before building the model");
  H_ = cfg_.num_attention_heads / tp, KV_ = cfg_.num_key_value_heads / tp;
  F_ = cfg_.intermediate_size / tp, V_ = cfg_.vocab_size / tp, v0_ = V_ * tp_.rank();
  register_params();
  weights_.allocate();
  if (mixed_) work_.allocate();
}

const Arena& LlamaModel::grads() const {
  if (!grads_.allocated()) grads_.allocate();
  return grads_;
}

void LlamaModel::refresh_working_weights() {
  if (mixed_) be_.copy(work_.flat(), weights_.flat());
}

size_t LlamaModel::add_param(const std::string& name, std::vector<int64_t> full_dims, bool decay, Split split) {
  const ShardSpec shard = tp_shard(full_dims, split, tp_.size(), tp_.rank());
  const std::vector<int64_t>& d = shard.local_shape;
  auto reserve = [&](Arena& a) { return d.size() == 1 ? a.reserve({d[0]}) : a.reserve({d[0], d[1]}); };
  reserve(weights_);
  if (mixed_) reserve(work_);  // the same layout: one handle serves all three arenas
  const int h = reserve(grads_);
  params_.push_back({name, h, decay, split, shard});
  return params_.size() - 1;
}

// In the order of llama_param_specs: the embedding, each layer's nine, the final norm, the untied head.
void LlamaModel::register_params() {
  const std::vector<ParamSpec> specs = llama_param_specs(cfg_);
  size_t next = 0;
  auto add = [&]() {
    const ParamSpec& s = specs.at(next++);
    return add_param(s.name, s.full_dims, s.decay, s.split);
  };
  embed_ = add();
  for (int64_t l = 0; l < cfg_.num_hidden_layers; ++l) {
    Layer L{};
    for (size_t* i : {&L.ln1, &L.wq, &L.wk, &L.wv, &L.wo, &L.ln2, &L.wg, &L.wu, &L.wd}) *i = add();
    layers_.push_back(L);
  }
  norm_ = add();
  if (!cfg_.tie_word_embeddings) lm_head_ = add();
  PL_CHECK(next == specs.size(), "llama_param_specs and register_params disagree");
}

size_t LlamaModel::param_index(const std::string& name) const {
  for (size_t i = 0; i < params_.size(); ++i)
    if (params_[i].name == name) return i;
  fail_input("no parameter named '" + name + "' in this model");
}

void LlamaModel::init_random(uint64_t seed, double std) {
  for (size_t i = 0; i < params_.size(); ++i) {
    Tensor t = param(i);
    const bool is_norm = !params_[i].decay;
    uint64_t stream = 0;  // the name, hashed: the draw does not depend on registration order
    for (char ch : params_[i].name) stream = mix64(stream ^ static_cast<unsigned char>(ch));
    const int64_t n = t.numel();
    // Element j of this rank's block draws the number of its index in the full tensor: every layout holds the
    // same model.
    const ShardSpec& sh = params_[i].shard;
    const int64_t cols = sh.local_shape.size() == 2 ? sh.local_shape[1] : 1;
    const int64_t gcols = sh.global_shape.size() == 2 ? sh.global_shape[1] : 1;
    const int64_t r0 = sh.global_offset[0], c0 = sh.global_offset.size() == 2 ? sh.global_offset[1] : 0;
    auto fill = [&](auto z) {  // drawn in host memory, then uploaded (a memcpy when the backend is the CPU)
      using T = decltype(z);
      std::vector<T> host(static_cast<size_t>(n));
      T* p = host.data();
#pragma omp parallel for schedule(static)
      for (int64_t j = 0; j < n; ++j) {
        const auto g = static_cast<uint64_t>((r0 + j / cols) * gcols + c0 + j % cols);
        p[j] = is_norm ? T(1) : static_cast<T>(std * random_normal(seed, stream, g));
      }
      be_.upload(t, p);
    };
    if (dtype_ == DType::f32) fill(float{});
    else fill(double{});
  }
  refresh_working_weights();
}

void LlamaModel::zero_grads() { be_.zero(grads().flat()); }

void LlamaModel::allocate_activations(int64_t batch, int64_t seq, bool recompute, int64_t recompute_layers) {
  PL_CHECK(B_ == 0, "activations are allocated once");
  if (seq > cfg_.max_position_embeddings)
    fail_input("seq_len " + std::to_string(seq) + " exceeds max_position_embeddings " +
               std::to_string(cfg_.max_position_embeddings));
  B_ = batch, T_ = seq;
  // This rank's shard of every branch (all of it without tp); the residual stream stays whole.
  const int64_t N = batch * seq, C = cfg_.hidden_size, F = F_, V = V_;
  const int64_t H = H_, D = cfg_.head_dim(), Hd = H * D, KVd = KV_ * D;
  const int64_t L = cfg_.num_hidden_layers;
  recompute_layers_ = cfg_.recomputed_layers(recompute, recompute_layers);
  // Everything a layer computes from its input. With recomputation one set serves every layer: only the
  // residual stream (each layer's input) is kept, and backward recomputes the rest layer by layer.
  auto reserve_inside = [&](LayerActHandles& a) {
    a.ln1 = acts_.reserve({N, C});
    a.rstd1 = stats_.reserve({N});
    a.q = acts_.reserve({N, Hd});
    a.k = acts_.reserve({N, KVd});
    a.v = acts_.reserve({N, KVd});
    a.saved = stats_.reserve({be_.attention_saved_elems(batch, H, seq, seq)});
    a.att = acts_.reserve({N, Hd});
    a.res_mid = acts_.reserve({N, C});
    a.ln2 = acts_.reserve({N, C});
    a.rstd2 = stats_.reserve({N});
    a.gate = acts_.reserve({N, F});
    a.up = acts_.reserve({N, F});
    a.act = acts_.reserve({N, F});
  };
  LayerActHandles shared{};
  if (recompute_layers_ > 0) reserve_inside(shared);
  for (int64_t l = 0; l < L; ++l) {
    LayerActHandles a = shared;
    a.res_in = acts_.reserve({N, C});
    if (l >= recompute_layers_) reserve_inside(a);
    la_.push_back(a);
  }
  res_final_ = acts_.reserve({N, C});
  lnf_ = acts_.reserve({N, C});
  rstdf_ = stats_.reserve({N});
  rope_cos_ = stats_.reserve({seq, D / 2});
  rope_sin_ = stats_.reserve({seq, D / 2});
  // The head's logits exist one chunk of rows at a time: at most 16M elements (64 MiB in fp32), split evenly
  // so that no chunk is a small remainder. Below ~512 rows the head's GEMMs lose a quarter of their speed
  // (measured with OpenBLAS at V = 32000), so the budget is set to allow that many for LLaMA's vocabulary.
  // With bf16 logits on a GPU the budget is 128M elements (256 MiB): fewer, larger GEMMs, and fewer of the
  // loss read-backs that wait for the device.
  const int64_t budget = mixed_ ? int64_t{128} << 20 : int64_t{16} << 20;
  const int64_t max_rows = std::max<int64_t>(64, budget / V);
  const int64_t nchunks = (N + max_rows - 1) / max_rows;
  head_chunk_ = (N + nchunks - 1) / nchunks;
  logits_ = acts_.reserve({head_chunk_, V});
  loss_rows_ = stats_.reserve({N, 1});
  // Every tp rank's (log-sum-exp, target logit) per row of a chunk.
  if (tp_.size() > 1) xent_stats_ = stats_.reserve({tp_.size() * head_chunk_ * 2});
  dres_ = acts_.reserve({N, C});
  dln_ = acts_.reserve({N, C});
  datt_ = acts_.reserve({N, Hd});
  dq_ = acts_.reserve({N, Hd});
  dk_ = acts_.reserve({N, KVd});
  dv_ = acts_.reserve({N, KVd});
  dact_ = acts_.reserve({N, F});
  dgate_ = acts_.reserve({N, F});
  dup_ = acts_.reserve({N, F});
  attn_scratch_ = stats_.reserve({be_.attention_scratch_elems(batch, H, seq, KV_, D)});
  acts_.allocate();
  stats_.allocate();
  // Rotary tables in double, then rounded once: HF computes inv_freq = theta^(-2i/D) the same way.
  fill_rope_tables(be_, S(rope_cos_), S(rope_sin_), cfg_.rope_theta);
}

}  // namespace polyllama
