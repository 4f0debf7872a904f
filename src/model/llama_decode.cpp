#include "polyllama/model/llama_decode.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace polyllama {

namespace {

// x @ W^T for Hugging Face's [out, in] weights: y = x W^T + beta y.
void linear(Backend& be, Tensor y, Tensor x, Tensor w, double beta = 0.0) {
  be.matmul(y, x, w, false, true, 1.0, beta);
}

}  // namespace

LlamaDecoder::LlamaDecoder(LlamaModel& model, const DecodeLimits& limits)
    : model_(model),
      be_(model.backend()),
      cfg_(model.config()),
      lim_(limits),
      par_(model.parallel()),
      tp_(model.tp()),
      tp_rank_(model.tp() > 1 ? model.parallel()->tp_rank() : 0),
      cache_("kv_cache", model.dtype(), &model.backend()),
      acts_("decode_activations", model.dtype(), &model.backend()) {
  PL_CHECK(lim_.max_batch > 0 && lim_.max_chunk > 0 && lim_.max_cache > 0,
           "decode limits: batch, chunk and cache must be positive");
  lim_.max_chunk = std::min(lim_.max_chunk, lim_.max_cache);
  // The model checked that tp divides all four (validate_tensor_parallel).
  H_ = cfg_.num_attention_heads / tp_, KV_ = cfg_.num_key_value_heads / tp_;
  F_ = cfg_.intermediate_size / tp_, V_ = cfg_.vocab_size / tp_, v0_ = V_ * tp_rank_;
  auto P = [&](const std::string& name) { return model_.param(model_.param_index(name)); };
  for (int64_t l = 0; l < cfg_.num_hidden_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    layers_.push_back({P(p + "input_layernorm.weight"), P(p + "self_attn.q_proj.weight"),
                       P(p + "self_attn.k_proj.weight"), P(p + "self_attn.v_proj.weight"),
                       P(p + "self_attn.o_proj.weight"), P(p + "post_attention_layernorm.weight"),
                       P(p + "mlp.gate_proj.weight"), P(p + "mlp.up_proj.weight"), P(p + "mlp.down_proj.weight")});
  }
  embed_ = P("model.embed_tokens.weight");
  norm_ = P("model.norm.weight");
  head_ = cfg_.tie_word_embeddings ? embed_ : P("lm_head.weight");

  const int64_t B = lim_.max_batch, N = B * lim_.max_chunk, C = cfg_.hidden_size, F = F_;
  const int64_t H = H_, D = cfg_.head_dim(), KVd = KV_ * D;
  for (int64_t l = 0; l < cfg_.num_hidden_layers; ++l) {
    k_cache_.push_back(cache_.reserve({B * lim_.max_cache, KVd}));
    v_cache_.push_back(cache_.reserve({B * lim_.max_cache, KVd}));
  }
  x_ = acts_.reserve({N, C});
  ln_ = acts_.reserve({N, C});
  rstd_ = acts_.reserve({N});
  q_ = acts_.reserve({N, H * D});
  k_ = acts_.reserve({N, KVd});
  v_ = acts_.reserve({N, KVd});
  att_ = acts_.reserve({N, H * D});
  probs_ = acts_.reserve({B * H * lim_.max_chunk * lim_.max_cache});
  gate_ = acts_.reserve({N, F});
  up_ = acts_.reserve({N, F});
  last_ = acts_.reserve({B, C});
  logits_ = acts_.reserve({lim_.all_logits ? N : B, V_});
  const int64_t table_rows = std::min(cfg_.max_position_embeddings, lim_.max_cache);
  cos_ = acts_.reserve({table_rows, D / 2});
  sin_ = acts_.reserve({table_rows, D / 2});
  cache_.allocate();
  acts_.allocate();

  // Rotary tables as the training forward builds them: angles in double, rounded once; then uploaded.
  std::vector<double> c(static_cast<size_t>(table_rows * (D / 2))), s(c.size());
  for (int64_t t = 0; t < table_rows; ++t)
    for (int64_t i = 0; i < D / 2; ++i) {
      const double inv_freq = std::pow(cfg_.rope_theta, -2.0 * static_cast<double>(i) / static_cast<double>(D));
      c[static_cast<size_t>(t * (D / 2) + i)] = std::cos(static_cast<double>(t) * inv_freq);
      s[static_cast<size_t>(t * (D / 2) + i)] = std::sin(static_cast<double>(t) * inv_freq);
    }
  auto upload = [&](Tensor dst, const std::vector<double>& v) {
    if (dst.dtype == DType::f64) return be_.upload(dst, v.data());
    PL_CHECK(dst.dtype == DType::f32, std::string("decode tables in ") + dtype_name(dst.dtype));
    const std::vector<float> f(v.begin(), v.end());
    be_.upload(dst, f.data());
  };
  upload(acts_.get(cos_), c);
  upload(acts_.get(sin_), s);
}

void LlamaDecoder::begin(int64_t batch, int64_t capacity, const std::vector<int32_t>& pad) {
  PL_CHECK(batch > 0 && batch <= lim_.max_batch,
           "decode batch " + std::to_string(batch) + " beyond " + std::to_string(lim_.max_batch));
  PL_CHECK(capacity > 0 && capacity <= lim_.max_cache,
           "decode cache of " + std::to_string(capacity) + " positions beyond " + std::to_string(lim_.max_cache));
  PL_CHECK(pad.empty() || static_cast<int64_t>(pad.size()) == batch, "one padding count per row");
  B_ = batch, cap_ = capacity, len_ = 0;
  pad_ = pad.empty() ? std::vector<int32_t>(static_cast<size_t>(batch), 0) : pad;
  retired_.assign(static_cast<size_t>(batch), 0);
}

void LlamaDecoder::retire(int64_t row) {
  PL_CHECK(row >= 0 && row < B_, "retire: no row " + std::to_string(row));
  retired_[static_cast<size_t>(row)] = 1;
}

void LlamaDecoder::append(const int32_t* tokens, int64_t T, std::vector<double>* logits_out, bool all_rows) {
  PL_CHECK(B_ > 0, "begin() before append()");
  PL_CHECK(T > 0 && len_ + T <= cap_, "appending " + std::to_string(T) + " tokens to a cache holding " +
                                          std::to_string(len_) + " of " + std::to_string(cap_));
  PL_CHECK(!all_rows || lim_.all_logits, "all_rows needs DecodeLimits::all_logits");
  for (int64_t n = 0; n < B_ * T; ++n)
    if (tokens[n] < 0 || tokens[n] >= cfg_.vocab_size)
      fail_input("token id " + std::to_string(tokens[n]) + " is outside the vocabulary of " +
                 std::to_string(cfg_.vocab_size));
  if (logits_out) logits_out->assign(static_cast<size_t>(B_ * (all_rows ? T : 1) * cfg_.vocab_size), 0.0);
  std::vector<int32_t> chunk;
  for (int64_t t0 = 0; t0 < T; t0 += lim_.max_chunk) {
    const int64_t Tc = std::min(lim_.max_chunk, T - t0);
    chunk.resize(static_cast<size_t>(B_ * Tc));
    for (int64_t b = 0; b < B_; ++b)
      std::memcpy(chunk.data() + b * Tc, tokens + b * T + t0, static_cast<size_t>(Tc) * sizeof(int32_t));
    const bool last = t0 + Tc == T;
    forward_chunk(chunk.data(), Tc, all_rows, t0, T, (all_rows || last) ? logits_out : nullptr);
  }
}

void LlamaDecoder::forward_chunk(const int32_t* tokens, int64_t Tc, bool all_rows, int64_t row0, int64_t T_total,
                                 std::vector<double>* logits_out) {
  const int64_t B = B_, N = B * Tc, H = H_, KV = KV_, D = cfg_.head_dim(), KVd = KV * D, V = cfg_.vocab_size;
  const int64_t kv_len = len_ + Tc;
  // Row b's token at cache position p sits at RoPE position p - pad[b]. A padding query (p < pad[b]) sees only
  // itself; real queries start at pad[b], so no real token ever reads padding.
  positions_.resize(static_cast<size_t>(N));
  kv_start_.resize(static_cast<size_t>(N));
  const int64_t table_rows = acts_.get(cos_).rows();
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < Tc; ++t) {
      const int64_t p = len_ + t;
      const int64_t pad = retired_[static_cast<size_t>(b)] ? p + 1 : pad_[static_cast<size_t>(b)];
      const int64_t pos = std::max<int64_t>(0, p - pad);
      if (pos >= table_rows)
        fail_input("position " + std::to_string(pos) + " of row " + std::to_string(b) +
                   " is past the model's max_position_embeddings " + std::to_string(cfg_.max_position_embeddings));
      positions_[static_cast<size_t>(b * Tc + t)] = static_cast<int32_t>(pos);
      kv_start_[static_cast<size_t>(b * Tc + t)] = static_cast<int32_t>(std::min(p, pad));
    }

  const Tensor x = acts_.get(x_).slice_rows(0, N), ln = acts_.get(ln_).slice_rows(0, N),
               rstd = acts_.get(rstd_).view({acts_.get(rstd_).numel(), 1}).slice_rows(0, N).view({N}),
               q = acts_.get(q_).slice_rows(0, N), k = acts_.get(k_).slice_rows(0, N),
               v = acts_.get(v_).slice_rows(0, N), att = acts_.get(att_).slice_rows(0, N),
               gate = acts_.get(gate_).slice_rows(0, N), up = acts_.get(up_).slice_rows(0, N);
  const Tensor probs(acts_.get(probs_).data, model_.dtype(), {B * H * Tc * cap_});
  const Tensor cos = acts_.get(cos_), sin = acts_.get(sin_);
  const AttnSpan span{kv_len, kv_start_.data()};

  embed(x, tokens, N);
  for (size_t l = 0; l < layers_.size(); ++l) {
    const LayerW& w = layers_[l];
    // This batch's cache: (B, cap, KV, D) at the start of the layer's reservation.
    const Tensor kc(cache_.get(k_cache_[l]).data, model_.dtype(), {B, cap_, KV, D});
    const Tensor vc(cache_.get(v_cache_[l]).data, model_.dtype(), {B, cap_, KV, D});
    be_.rmsnorm_forward(ln, rstd, x, w.ln1, cfg_.rms_norm_eps);
    linear(be_, q, ln, w.wq);
    linear(be_, k, ln, w.wk);
    linear(be_, v, ln, w.wv);
    be_.rope(q.view({B, Tc, H, D}), cos, sin, positions_.data(), false);
    be_.rope(k.view({B, Tc, KV, D}), cos, sin, positions_.data(), false);
    const Tensor kc2 = kc.view({B * cap_, KVd}), vc2 = vc.view({B * cap_, KVd});
    for (int64_t b = 0; b < B; ++b) {
      be_.copy(kc2.slice_rows(b * cap_ + len_, Tc), k.slice_rows(b * Tc, Tc));
      be_.copy(vc2.slice_rows(b * cap_ + len_, Tc), v.slice_rows(b * Tc, Tc));
    }
    be_.attention_forward(att.view({B, Tc, H, D}), probs, q.view({B, Tc, H, D}), kc, vc, span);
    zero_unless_first(x);  // x has been read (ln); it now starts the row-parallel o_proj's sum
    linear(be_, x, att, w.wo, 1.0);
    tp_sum(x);
    be_.rmsnorm_forward(ln, rstd, x, w.ln2, cfg_.rms_norm_eps);
    linear(be_, gate, ln, w.wg);
    linear(be_, up, ln, w.wu);
    be_.swiglu_forward(gate, gate, up);
    zero_unless_first(x);
    linear(be_, x, gate, w.wd, 1.0);
    tp_sum(x);
  }
  len_ = kv_len;
  if (!logits_out) return;

  if (all_rows) {
    be_.rmsnorm_forward(ln, rstd, x, norm_, cfg_.rms_norm_eps);
    const Tensor logits = acts_.get(logits_).slice_rows(0, N);
    linear(be_, logits, ln, head_);
    std::vector<double> rows(static_cast<size_t>(N * V));
    download_logits(logits, N, rows.data());
    for (int64_t b = 0; b < B; ++b)
      std::copy(rows.begin() + b * Tc * V, rows.begin() + (b + 1) * Tc * V,
                logits_out->begin() + (b * T_total + row0) * V);
    return;
  }
  // Only each row's last position goes through the head.
  const Tensor last = acts_.get(last_).slice_rows(0, B), lnl = ln.slice_rows(0, B);
  for (int64_t b = 0; b < B; ++b) be_.copy(last.slice_rows(b, 1), x.slice_rows(b * Tc + Tc - 1, 1));
  be_.rmsnorm_forward(lnl, rstd.view({N, 1}).slice_rows(0, B).view({B}), last, norm_, cfg_.rms_norm_eps);
  const Tensor logits = acts_.get(logits_).slice_rows(0, B);
  linear(be_, logits, lnl, head_);
  download_logits(logits, B, logits_out->data());
}

void LlamaDecoder::embed(Tensor x, const int32_t* tokens, int64_t n) {
  if (tp_ == 1) return be_.embedding_forward(x, embed_, tokens);
  // Vocab-parallel: each token's row comes from the one rank holding it; the others contribute zeros.
  local_ids_.resize(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const int64_t local = tokens[i] - v0_;
    local_ids_[static_cast<size_t>(i)] = local >= 0 && local < V_ ? static_cast<int32_t>(local) : 0;
  }
  be_.embedding_forward(x, embed_, local_ids_.data());
  for (int64_t i = 0; i < n; ++i)
    if (tokens[i] < v0_ || tokens[i] >= v0_ + V_) be_.zero(x.slice_rows(i, 1));
  tp_sum(x);
}

void LlamaDecoder::zero_unless_first(Tensor x) {
  if (tp_rank_ != 0) be_.zero(x);
}

void LlamaDecoder::tp_sum(Tensor x) {
  if (tp_ > 1) par_->tp().all_reduce(x);
}

void LlamaDecoder::download_logits(Tensor logits, int64_t rows, double* dst) {
  const int64_t n = rows * V_, V = cfg_.vocab_size;
  host_logits_.resize(logits.bytes());
  be_.download(host_logits_.data(), logits);
  if (tp_ > 1) gathered_.resize(static_cast<size_t>(rows * V));
  double* mine = tp_ > 1 ? gathered_.data() + static_cast<size_t>(tp_rank_) * static_cast<size_t>(n) : dst;
  if (logits.dtype == DType::f64) {
    std::memcpy(mine, host_logits_.data(), static_cast<size_t>(n) * sizeof(double));
  } else {
    PL_CHECK(logits.dtype == DType::f32, std::string("logits in ") + dtype_name(logits.dtype));
    const float* f = reinterpret_cast<const float*>(host_logits_.data());
    std::copy(f, f + n, mine);
  }
  if (tp_ == 1) return;
  // Rank r's slice (rows, V / tp) holds vocabulary ids [r V / tp, (r + 1) V / tp) of every row.
  par_->tp().all_gather(gathered_.data(), std::vector<int64_t>(static_cast<size_t>(tp_), n), DType::f64);
  for (int r = 0; r < tp_; ++r)
    for (int64_t i = 0; i < rows; ++i)
      std::memcpy(dst + i * V + r * V_, gathered_.data() + r * n + i * V_, static_cast<size_t>(V_) * sizeof(double));
}

}  // namespace polyllama
