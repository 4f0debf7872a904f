#include <algorithm>

#include "polyllama/model/llama.hpp"

namespace polyllama {

// x @ W^T for Hugging Face's [out, in] weights: y (N, out) = alpha x (N, in) W^T + beta y.
static void linear(Backend& be, Tensor y, Tensor x, Tensor w, double beta = 0.0) {
  be.matmul(y, x, w, false, true, 1.0, beta);
}

// Vocab-parallel embedding: this rank looks up the tokens its rows hold, zeroes the rows of the others, and the
// tp ranks' outputs are summed (each token's row comes from exactly one rank).
void LlamaModel::embed_forward(const int32_t* inputs) {
  const Tensor out = A(la_[0].res_in);
  if (tp_ == 1) {
    be_.embedding_forward(out, P(embed_), inputs);
    return;
  }
  const int64_t N = B_ * T_;
  foreign_runs_.clear();
  for (int64_t n = 0; n < N; ++n) {
    const int64_t local = inputs[n] - v0_;
    const bool mine = local >= 0 && local < V_;
    local_ids_[static_cast<size_t>(n)] = mine ? static_cast<int32_t>(local) : 0;
    if (mine) continue;
    if (!foreign_runs_.empty() && foreign_runs_.back().first + foreign_runs_.back().second == n)
      foreign_runs_.back().second += 1;
    else
      foreign_runs_.push_back({n, 1});
  }
  be_.embedding_forward(out, P(embed_), local_ids_.data());
  for (const auto& [n0, len] : foreign_runs_) be_.zero(out.slice_rows(n0, len));
  tp_sum(out);
}

// dres (whole on every tp rank) flows into this rank's rows only; the rows of foreign tokens are dropped.
void LlamaModel::embed_backward(const int32_t* inputs) {
  const Tensor dres = A(dres_);
  if (tp_ == 1) {
    be_.embedding_backward(G(embed_), dres, inputs);
    return;
  }
  for (const auto& [n0, len] : foreign_runs_) be_.zero(dres.slice_rows(n0, len));
  be_.embedding_backward(G(embed_), dres, local_ids_.data());
}

void LlamaModel::residual_into(Tensor dst, Tensor residual) {
  if (tp_rank_ == 0) be_.copy(dst, residual);
  else be_.zero(dst);
}

void LlamaModel::forward(const int32_t* inputs) {
  PL_CHECK(B_ > 0, "allocate_activations() before forward");
  const int64_t N = B_ * T_;
  for (int64_t n = 0; n < N; ++n)
    if (inputs[n] < 0 || inputs[n] >= cfg_.vocab_size)
      fail_input("token id " + std::to_string(inputs[n]) + " at position " + std::to_string(n) +
                 " is outside the vocabulary of " + std::to_string(cfg_.vocab_size));

  embed_forward(inputs);
  for (size_t l = 0; l < layers_.size(); ++l) layer_forward(l, true);
  be_.rmsnorm_forward(A(lnf_), S(rstdf_), A(res_final_), P(norm_), cfg_.rms_norm_eps);
}

void LlamaModel::layer_forward(size_t l, bool write_output) {
  const int64_t H = H_, KV = KV_, D = cfg_.head_dim();  // this rank's heads
  const Layer& w = layers_[l];
  const LayerActs& a = la_[l];
  be_.rmsnorm_forward(A(a.ln1), S(a.rstd1), A(a.res_in), P(w.ln1), cfg_.rms_norm_eps);
  linear(be_, A(a.q), A(a.ln1), P(w.wq));
  linear(be_, A(a.k), A(a.ln1), P(w.wk));
  linear(be_, A(a.v), A(a.ln1), P(w.wv));
  Tensor q4 = A(a.q).view({B_, T_, H, D}), k4 = A(a.k).view({B_, T_, KV, D}), v4 = A(a.v).view({B_, T_, KV, D});
  be_.rope(q4, S(rope_cos_), S(rope_sin_), rope_positions(), false);
  be_.rope(k4, S(rope_cos_), S(rope_sin_), rope_positions(), false);
  be_.attention_forward(A(a.att).view({B_, T_, H, D}), S(a.saved), q4, k4, v4, attn_span());
  // Row-parallel o_proj: every tp rank adds its heads' share, one of them the residual, and the sum is taken.
  residual_into(A(a.res_mid), A(a.res_in));
  linear(be_, A(a.res_mid), A(a.att), P(w.wo), 1.0);
  tp_sum(A(a.res_mid));

  be_.rmsnorm_forward(A(a.ln2), S(a.rstd2), A(a.res_mid), P(w.ln2), cfg_.rms_norm_eps);
  linear(be_, A(a.gate), A(a.ln2), P(w.wg));
  linear(be_, A(a.up), A(a.ln2), P(w.wu));
  be_.swiglu_forward(A(a.act), A(a.gate), A(a.up));
  if (!write_output) return;
  const Tensor res_out = l + 1 < layers_.size() ? A(la_[l + 1].res_in) : A(res_final_);
  residual_into(res_out, A(a.res_mid));  // row-parallel down_proj, likewise
  linear(be_, res_out, A(a.act), P(w.wd), 1.0);
  tp_sum(res_out);
}

void LlamaModel::set_layout(const int32_t* doc_start) {
  segmented_ = false;
  if (!doc_start) return;
  positions_.resize(static_cast<size_t>(B_ * T_));
  kv_start_.resize(positions_.size());
  for (int64_t b = 0; b < B_; ++b)
    for (int64_t t = 0; t < T_; ++t) {
      const int64_t n = b * T_ + t;
      const int32_t s = doc_start[n];
      if (s < 0 || s > t || (t > 0 && s != doc_start[n - 1] && s != t))
        fail_input("doc_start " + std::to_string(s) + " at row " + std::to_string(b) + ", position " +
                   std::to_string(t) + " is not the start of a run of examples");
      positions_[static_cast<size_t>(n)] = static_cast<int32_t>(t - s);
      kv_start_[static_cast<size_t>(n)] = s;
      segmented_ = segmented_ || s != 0;
    }
}

double LlamaModel::head_and_loss(const int32_t* targets, double loss_scale, bool want_grad) {
  const int64_t N = B_ * T_;
  for (int64_t n = 0; n < N; ++n)
    if (targets[n] != kIgnoreIndex && (targets[n] < 0 || targets[n] >= cfg_.vocab_size))
      fail_input("target id " + std::to_string(targets[n]) + " at position " + std::to_string(n) +
                 " is outside the vocabulary of " + std::to_string(cfg_.vocab_size));
  const Tensor W = head_weight(), lnf = A(lnf_), loss = S(loss_rows_);
  double total = 0;
  for (int64_t r0 = 0; r0 < N; r0 += head_chunk_) {
    const int64_t m = std::min(head_chunk_, N - r0);
    Tensor logits = A(logits_).slice_rows(0, m), x = lnf.slice_rows(r0, m);
    linear(be_, logits, x, W);
    // Vocab-parallel: each tp rank holds rows [v0_, v0_ + V_) of the head, so its logits are that slice.
    total += tp_ > 1 ? vocab_parallel_xent(be_, logits, loss.slice_rows(r0, m), S(xent_stats_), targets + r0, v0_,
                                           kIgnoreIndex, want_grad, loss_scale, par_->tensor_tp())
                     : be_.softmax_xent(logits, loss.slice_rows(r0, m), targets + r0, kIgnoreIndex, want_grad,
                                        loss_scale);
    if (want_grad) {  // logits now hold dL/dlogits
      be_.matmul(A(dln_).slice_rows(r0, m), logits, W, false, false, 1.0, 0.0);
      be_.matmul(head_grad(), logits, x, true, false, 1.0, 1.0);
    }
  }
  if (want_grad) tp_sum(A(dln_));  // each slice of the vocabulary contributed its part of dL/dx
  return total;
}

double LlamaModel::forward_backward(const int32_t* inputs, const int32_t* targets, double loss_scale,
                                    bool want_grad, const int32_t* doc_start) {
  set_layout(doc_start);
  forward(inputs);
  const double total = head_and_loss(targets, loss_scale, want_grad);
  if (want_grad) backward(inputs);
  return total;
}

void LlamaModel::forward_logits(const int32_t* inputs, Tensor logits, const int32_t* doc_start) {
  const int64_t N = B_ * T_;
  PL_CHECK(logits.rows() == N && logits.cols() == cfg_.vocab_size, "logits must be (batch * seq, vocab)");
  PL_CHECK(tp_ == 1, "forward_logits gathers whole logits: one tensor-parallel rank only");
  set_layout(doc_start);
  forward(inputs);
  linear(be_, logits, A(lnf_), head_weight());
}

}  // namespace polyllama
