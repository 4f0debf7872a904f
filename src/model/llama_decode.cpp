#include "polyllama/model/llama_decode.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>

namespace polyllama {

LlamaDecoder::LlamaDecoder(LlamaModel& model, const DecodeLimits& limits)
    : model_(model),
      be_(model.backend()),
      cfg_(model.config()),
      lim_(limits),
      tp_(model.tensor_parallel()),
      par_(model.parallel()),
      cache_("kv_cache", model.compute_dtype(), &model.backend()),
      acts_("decode_activations", model.compute_dtype(), &model.backend()),
      stats_("decode_statistics", model.dtype(), &model.backend()) {
  PL_CHECK(lim_.max_batch > 0 && lim_.max_chunk > 0 && lim_.max_cache > 0,
           "decode limits: batch, chunk and cache must be positive");
  lim_.max_chunk = std::min(lim_.max_chunk, lim_.max_cache);
  H_ = model.local_heads(), KV_ = model.local_kv_heads(), V_ = model.local_vocab(), v0_ = model.vocab_offset();
  for (int64_t l = 0; l < cfg_.num_hidden_layers; ++l) layers_.push_back(model.layer_weights(static_cast<size_t>(l)));

  const int64_t B = lim_.max_batch, N = B * lim_.max_chunk, C = cfg_.hidden_size, F = model.local_features();
  const int64_t H = H_, D = cfg_.head_dim(), KVd = KV_ * D;
  for (int64_t l = 0; l < cfg_.num_hidden_layers; ++l) {
    k_cache_.push_back(cache_.reserve({B * lim_.max_cache, KVd}));
    v_cache_.push_back(cache_.reserve({B * lim_.max_cache, KVd}));
  }
  x_ = acts_.reserve({N, C});
  ln_ = acts_.reserve({N, C});
  q_ = acts_.reserve({N, H * D});
  k_ = acts_.reserve({N, KVd});
  v_ = acts_.reserve({N, KVd});
  att_ = acts_.reserve({N, H * D});
  gate_ = acts_.reserve({N, F});
  up_ = acts_.reserve({N, F});
  last_ = acts_.reserve({B, C});
  rstd_ = stats_.reserve({N});
  // The attention's workspace when no backward follows (the CPU's per-thread score blocks, a GPU's log-sum-exp).
  saved_ = stats_.reserve({be_.attention_decode_elems(B, H, lim_.max_chunk, lim_.max_cache, D)});
  logits_ = stats_.reserve({lim_.all_logits ? N : B, V_});
  const int64_t table_rows = std::min(cfg_.max_position_embeddings, lim_.max_cache);
  cos_ = stats_.reserve({table_rows, D / 2});
  sin_ = stats_.reserve({table_rows, D / 2});
  cache_.allocate();
  acts_.allocate();
  stats_.allocate();
  fill_rope_tables(be_, stats_.get(cos_), stats_.get(sin_), cfg_.rope_theta);
}

void LlamaDecoder::begin(int64_t batch, int64_t capacity, const std::vector<int32_t>& pad) {
  PL_CHECK(batch > 0 && batch <= lim_.max_batch,
           "decode batch " + std::to_string(batch) + " beyond " + std::to_string(lim_.max_batch));
  PL_CHECK(capacity > 0 && capacity <= lim_.max_cache,
           "decode cache of " + std::to_string(capacity) + " positions beyond " + std::to_string(lim_.max_cache));
  PL_CHECK(pad.empty() || static_cast<int64_t>(pad.size()) == batch, "one padding count per row");
  B_ = batch, rows_ = batch, cap_ = capacity, len_ = 0;
  pad_ = pad.empty() ? std::vector<int32_t>(static_cast<size_t>(batch), 0) : pad;
  retired_.assign(static_cast<size_t>(batch), 0);
}

void LlamaDecoder::retire(int64_t row) {
  PL_CHECK(row >= 0 && row < B_, "retire: no row " + std::to_string(row));
  retired_[static_cast<size_t>(row)] = 1;
}

void LlamaDecoder::append(const int32_t* tokens, int64_t T, std::vector<double>* logits_out, bool all_rows) {
  PL_CHECK(!all_rows || lim_.all_logits, "all_rows needs DecodeLimits::all_logits");
  if (all_rows) {
    PL_CHECK(B_ > 0 && T > 0, "begin() before append()");
    if (logits_out) logits_out->assign(static_cast<size_t>(B_ * T * cfg_.vocab_size), 0.0);
  }
  append_rows(tokens, T, all_rows, std::vector<int64_t>(static_cast<size_t>(std::max<int64_t>(B_, 0)), T - 1),
              logits_out);
}

void LlamaDecoder::append_at(const int32_t* tokens, int64_t T, const std::vector<int64_t>& at,
                             std::vector<double>* logits_out) {
  PL_CHECK(static_cast<int64_t>(at.size()) == B_, "append_at: one position per row");
  for (int64_t b = 0; b < B_; ++b)
    PL_CHECK(at[static_cast<size_t>(b)] >= 0 && at[static_cast<size_t>(b)] < T,
             "append_at: position " + std::to_string(at[static_cast<size_t>(b)]) + " of row " + std::to_string(b) +
                 " outside the " + std::to_string(T) + " new tokens");
  append_rows(tokens, T, false, at, logits_out);
}

void LlamaDecoder::append_rows(const int32_t* tokens, int64_t T, bool all_rows, const std::vector<int64_t>& at,
                               std::vector<double>* logits_out) {
  PL_CHECK(B_ > 0, "begin() before append()");
  PL_CHECK(T > 0 && len_ + T <= cap_, "appending " + std::to_string(T) + " tokens to a cache holding " +
                                          std::to_string(len_) + " of " + std::to_string(cap_));
  for (int64_t n = 0; n < B_ * T; ++n)
    if (tokens[n] < 0 || tokens[n] >= cfg_.vocab_size)
      fail_input("token id " + std::to_string(tokens[n]) + " is outside the vocabulary of " +
                 std::to_string(cfg_.vocab_size));
  std::vector<int32_t> chunk;
  for (int64_t t0 = 0; t0 < T; t0 += lim_.max_chunk) {
    const int64_t Tc = std::min(lim_.max_chunk, T - t0);
    chunk.resize(static_cast<size_t>(B_ * Tc));
    for (int64_t b = 0; b < B_; ++b)
      std::memcpy(chunk.data() + b * Tc, tokens + b * T + t0, static_cast<size_t>(Tc) * sizeof(int32_t));
    forward_chunk(chunk.data(), Tc, all_rows, t0, T, logits_out, at);
  }
  if (!all_rows && logits_out) head_logits(logits_out);
}

void LlamaDecoder::expand(int64_t batch) {
  PL_CHECK(B_ == 1 && batch >= 1 && batch <= lim_.max_batch,
           "expand: from one row to " + std::to_string(batch) + " (at most " + std::to_string(lim_.max_batch) + ")");
  const int64_t KVd = local_kv_width();
  for (size_t l = 0; l < k_cache_.size(); ++l)
    for (const int h : {k_cache_[l], v_cache_[l]}) {
      const Tensor c(cache_.get(h).data, cache_.dtype(), {lim_.max_batch * cap_, KVd});
      for (int64_t b = 1; b < batch; ++b)
        if (len_ > 0) be_.copy(c.slice_rows(b * cap_, len_), c.slice_rows(0, len_));
    }
  B_ = batch;
  rows_ = batch;
  pad_.assign(static_cast<size_t>(batch), pad_.empty() ? 0 : pad_[0]);
  retired_.assign(static_cast<size_t>(batch), 0);
}

void LlamaDecoder::rewind(int64_t length, int64_t batch) {
  PL_CHECK(length >= 0 && length <= len_ && batch >= 1 && batch <= rows_,
           "rewind to " + std::to_string(length) + " positions of " + std::to_string(batch) + " rows, from " +
               std::to_string(len_) + " of " + std::to_string(rows_));
  len_ = length;
  B_ = batch;
  pad_.resize(static_cast<size_t>(batch));
  retired_.assign(static_cast<size_t>(batch), 0);
}

Tensor LlamaDecoder::cache_rows(size_t l, int kv) const {
  return Tensor(cache_.get(kv == 0 ? k_cache_[l] : v_cache_[l]).data, cache_.dtype(),
                {lim_.max_batch * cap_, local_kv_width()});
}

void LlamaDecoder::admit(int64_t row, const LlamaDecoder& src, int64_t src_row, int64_t n) {
  PL_CHECK(row >= 0 && row < B_ && retired_[static_cast<size_t>(row)], "admit: row " + std::to_string(row) +
                                                                          " is not a retired row of the batch");
  PL_CHECK(n > 0 && n <= len_ && n <= src.len_ && src_row >= 0 && src_row < src.B_,
           "admit: " + std::to_string(n) + " positions into a batch of length " + std::to_string(len_));
  PL_CHECK(src.k_cache_.size() == k_cache_.size() && src.local_kv_width() == local_kv_width(),
           "admit: the decoders hold different models");
  const int64_t at = len_ - n;
  for (size_t l = 0; l < k_cache_.size(); ++l)
    for (const int kv : {0, 1})
      be_.copy(cache_rows(l, kv).slice_rows(row * cap_ + at, n), src.cache_rows(l, kv).slice_rows(src_row * src.cap_, n));
  pad_[static_cast<size_t>(row)] = static_cast<int32_t>(at);
  retired_[static_cast<size_t>(row)] = 0;
}

void LlamaDecoder::shift(int64_t delta) {
  PL_CHECK(len_ + delta >= 0 && len_ + delta <= cap_,
           "shift by " + std::to_string(delta) + " of a batch of length " + std::to_string(len_) + " in " +
               std::to_string(cap_) + " positions");
  for (int64_t b = 0; b < B_; ++b) {
    if (retired_[static_cast<size_t>(b)]) continue;
    const int64_t p0 = pad_[static_cast<size_t>(b)], n = len_ - p0;
    PL_CHECK(p0 + delta >= 0, "shift by " + std::to_string(delta) + ": row " + std::to_string(b) + " has only " +
                                  std::to_string(p0) + " positions of padding");
    pad_[static_cast<size_t>(b)] = static_cast<int32_t>(p0 + delta);
    if (delta == 0 || n == 0) continue;
    // Blocks of |delta| positions never overlap their destination: moving later, copy the last block first.
    const int64_t step = std::abs(delta), blocks = (n + step - 1) / step;
    for (size_t l = 0; l < k_cache_.size(); ++l)
      for (const int kv : {0, 1}) {
        const Tensor c = cache_rows(l, kv);
        for (int64_t i = 0; i < blocks; ++i) {
          const int64_t k = delta > 0 ? blocks - 1 - i : i, from = p0 + k * step, len = std::min(step, n - k * step);
          be_.copy(c.slice_rows(b * cap_ + from + delta, len), c.slice_rows(b * cap_ + from, len));
        }
      }
  }
  len_ += delta;
}

void LlamaDecoder::forward_chunk(const int32_t* tokens, int64_t Tc, bool all_rows, int64_t row0, int64_t T_total,
                                 std::vector<double>* logits_out, const std::vector<int64_t>& at) {
  const int64_t B = B_, N = B * Tc, H = H_, KV = KV_, D = cfg_.head_dim(), V = cfg_.vocab_size;
  const int64_t kv_len = len_ + Tc;
  // Row b's token at cache position p sits at RoPE position p - pad[b]. A padding query (p < pad[b]) sees only
  // itself; real queries start at pad[b], so no real token ever reads padding.
  positions_.resize(static_cast<size_t>(N));
  kv_start_.resize(static_cast<size_t>(N));
  const int64_t table_rows = stats_.get(cos_).rows();
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

  const Tensor x = acts_.get(x_).slice_rows(0, N), ln = acts_.get(ln_).slice_rows(0, N);
  const Tensor rstd = stats_.get(rstd_).view({stats_.get(rstd_).numel(), 1}).slice_rows(0, N).view({N});
  LayerCall c;
  c.B = B, c.T = Tc, c.heads = H, c.kv_heads = KV, c.head_dim = D, c.eps = cfg_.rms_norm_eps;
  c.rope_cos = stats_.get(cos_), c.rope_sin = stats_.get(sin_);
  c.positions = positions_.data();
  c.span = {kv_len, kv_start_.data(), /*for_backward=*/false};
  c.cache_len = len_;
  // One set of buffers, reused in place: the norms share ln, SwiGLU writes over gate, the residual stream is x.
  LayerActs a;
  a.ln1 = a.ln2 = ln, a.rstd1 = a.rstd2 = rstd, a.res_mid = x;
  a.q = acts_.get(q_).slice_rows(0, N), a.k = acts_.get(k_).slice_rows(0, N), a.v = acts_.get(v_).slice_rows(0, N);
  a.att = acts_.get(att_).slice_rows(0, N);
  a.gate = a.act = acts_.get(gate_).slice_rows(0, N), a.up = acts_.get(up_).slice_rows(0, N);
  a.saved = Tensor(stats_.get(saved_).data, stats_.dtype(), {be_.attention_decode_elems(B, H, Tc, cap_, D)});

  // Unless every position's logits are wanted, the last layer runs in full only where the head reads it: at
  // position at[b] of the chunk that holds it (nowhere in a chunk without logits).
  std::vector<int64_t> wanted;
  if (!all_rows)
    for (int64_t b = 0; b < B; ++b) {
      const int64_t t = logits_out ? at[static_cast<size_t>(b)] - row0 : -1;
      wanted.push_back(t >= 0 && t < Tc ? t : -1);
    }
  embedding_.forward(be_, tp_, x, model_.embedding_weight(), v0_, tokens, N);
  for (size_t l = 0; l < layers_.size(); ++l) {
    // This batch's cache: (B, cap, KV, D) at the start of the layer's reservation.
    c.k_cache = Tensor(cache_.get(k_cache_[l]).data, cache_.dtype(), {B, cap_, KV, D});
    c.v_cache = Tensor(cache_.get(v_cache_[l]).data, cache_.dtype(), {B, cap_, KV, D});
    if (all_rows || l + 1 < layers_.size())
      layer_forward(be_, tp_, c, layers_[l], a, x, x);
    else
      layer_forward_at(be_, tp_, c, layers_[l], a, x, wanted);
  }
  len_ = kv_len;
  if (!logits_out) return;

  if (all_rows) {
    const Tensor norm = model_.final_norm_weight(), head = model_.head_weight();
    be_.rmsnorm_forward(ln, rstd, x, norm, cfg_.rms_norm_eps);
    const Tensor logits = stats_.get(logits_).slice_rows(0, N);
    linear_forward(be_, logits, ln, head);
    std::vector<double> rows(static_cast<size_t>(N * V));
    download_logits(logits, N, rows.data());
    for (int64_t b = 0; b < B; ++b)
      std::copy(rows.begin() + b * Tc * V, rows.begin() + (b + 1) * Tc * V,
                logits_out->begin() + (b * T_total + row0) * V);
    return;
  }
  // Only the hidden state after each row's position at[b] goes through the head (after the last chunk);
  // layer_forward_at left this chunk's in x's first rows, in row order.
  const Tensor last = acts_.get(last_).slice_rows(0, B);
  int64_t m = 0;
  for (int64_t b = 0; b < B; ++b)
    if (wanted[static_cast<size_t>(b)] >= 0) be_.copy(last.slice_rows(b, 1), x.slice_rows(m++, 1));
}

void LlamaDecoder::head_logits(std::vector<double>* logits_out) {
  const int64_t B = B_;
  const Tensor last = acts_.get(last_).slice_rows(0, B), lnl = acts_.get(ln_).slice_rows(0, B);
  const Tensor rstd = stats_.get(rstd_).view({stats_.get(rstd_).numel(), 1}).slice_rows(0, B).view({B});
  be_.rmsnorm_forward(lnl, rstd, last, model_.final_norm_weight(), cfg_.rms_norm_eps);
  const Tensor logits = stats_.get(logits_).slice_rows(0, B);
  linear_forward(be_, logits, lnl, model_.head_weight());
  logits_out->assign(static_cast<size_t>(B * cfg_.vocab_size), 0.0);
  download_logits(logits, B, logits_out->data());
}

void LlamaDecoder::download_logits(Tensor logits, int64_t rows, double* dst) {
  const int64_t n = rows * V_, V = cfg_.vocab_size;
  const int tp = tp_.size(), tp_rank = tp_.rank();
  host_logits_.resize(logits.bytes());
  be_.download(host_logits_.data(), logits);
  if (tp > 1) gathered_.resize(static_cast<size_t>(rows * V));
  double* mine = tp > 1 ? gathered_.data() + static_cast<size_t>(tp_rank) * static_cast<size_t>(n) : dst;
  if (logits.dtype == DType::f64) {
    std::memcpy(mine, host_logits_.data(), static_cast<size_t>(n) * sizeof(double));
  } else {
    PL_CHECK(logits.dtype == DType::f32, std::string("logits in ") + dtype_name(logits.dtype));
    const float* f = reinterpret_cast<const float*>(host_logits_.data());
    std::copy(f, f + n, mine);
  }
  if (tp == 1) return;
  // Logits reach the host (the sampler's memory) first, so the gather is the host group's (MPI).
  // Rank r's slice (rows, V / tp) holds vocabulary ids [r V / tp, (r + 1) V / tp) of every row.
  par_->tp().all_gather(gathered_.data(), std::vector<int64_t>(static_cast<size_t>(tp), n), DType::f64);
  for (int r = 0; r < tp; ++r)
    for (int64_t i = 0; i < rows; ++i)
      std::memcpy(dst + i * V + r * V_, gathered_.data() + r * n + i * V_, static_cast<size_t>(V_) * sizeof(double));
}

}  // namespace polyllama
