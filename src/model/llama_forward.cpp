#include <algorithm>

#include "polyllama/model/llama.hpp"

namespace polyllama {

LayerWeights LlamaModel::layer_weights(size_t l) const {
  const Layer& w = layers_.at(l);
  return {P(w.ln1), P(w.wq), P(w.wk), P(w.wv), P(w.wo), P(w.ln2), P(w.wg), P(w.wu), P(w.wd)};
}

LayerWeights LlamaModel::layer_grads(size_t l) const {
  const Layer& w = layers_[l];
  return {G(w.ln1), G(w.wq), G(w.wk), G(w.wv), G(w.wo), G(w.ln2), G(w.wg), G(w.wu), G(w.wd)};
}

LayerActs LlamaModel::layer_acts(size_t l) const {
  const LayerActHandles& h = la_[l];
  LayerActs a;
  a.ln1 = A(h.ln1), a.ln2 = A(h.ln2), a.rstd1 = S(h.rstd1), a.rstd2 = S(h.rstd2);
  a.q = A(h.q), a.att = A(h.att), a.k = A(h.k), a.v = A(h.v), a.saved = S(h.saved), a.res_mid = A(h.res_mid);
  a.gate = A(h.gate), a.up = A(h.up), a.act = A(h.act);
  return a;
}

LayerCall LlamaModel::layer_call() const {
  LayerCall c;
  c.B = B_, c.T = T_, c.heads = H_, c.kv_heads = KV_, c.head_dim = cfg_.head_dim(), c.eps = cfg_.rms_norm_eps;
  c.rope_cos = S(rope_cos_), c.rope_sin = S(rope_sin_);
  c.positions = segmented_ ? positions_.data() : nullptr;
  c.span = {-1, segmented_ ? kv_start_.data() : nullptr};
  return c;
}

void LlamaModel::forward(const int32_t* inputs) {
  PL_CHECK(B_ > 0, "allocate_activations() before forward");
  const int64_t N = B_ * T_;
  for (int64_t n = 0; n < N; ++n)
    if (inputs[n] < 0 || inputs[n] >= cfg_.vocab_size)
      fail_input("token id " + std::to_string(inputs[n]) + " at position " + std::to_string(n) +
                 " is outside the vocabulary of " + std::to_string(cfg_.vocab_size));

  embedding_.forward(be_, tp_, A(la_[0].res_in), P(embed_), v0_, inputs, N);
  for (size_t l = 0; l < layers_.size(); ++l) layer_forward(l, true);
  be_.rmsnorm_forward(A(lnf_), S(rstdf_), A(res_final_), P(norm_), cfg_.rms_norm_eps);
}

void LlamaModel::layer_forward(size_t l, bool write_output) {
  const Tensor res_out = !write_output ? Tensor{} : l + 1 < layers_.size() ? A(la_[l + 1].res_in) : A(res_final_);
  polyllama::layer_forward(be_, tp_, layer_call(), layer_weights(l), layer_acts(l), A(la_[l].res_in), res_out);
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
  tp_.copy_to_tp_forward(lnf);  // the vocab-parallel head is column-parallel: every rank reads the whole input
  double total = 0;
  for (int64_t r0 = 0; r0 < N; r0 += head_chunk_) {
    const int64_t m = std::min(head_chunk_, N - r0);
    Tensor logits = A(logits_).slice_rows(0, m), x = lnf.slice_rows(r0, m);
    linear_forward(be_, logits, x, W);
    // Vocab-parallel: each tp rank holds rows [v0_, v0_ + V_) of the head, so its logits are that slice.
    total += tp_.size() > 1
                 ? vocab_parallel_xent(be_, logits, loss.slice_rows(r0, m), S(xent_stats_), targets + r0, v0_,
                                       kIgnoreIndex, want_grad, loss_scale, par_->tensor_tp())
                 : be_.softmax_xent(logits, loss.slice_rows(r0, m), targets + r0, kIgnoreIndex, want_grad, loss_scale);
    if (want_grad)  // logits now hold dL/dlogits
      linear_backward(be_, A(dln_).slice_rows(r0, m), head_grad(), logits, x, W, false);
  }
  if (want_grad) tp_.copy_to_tp_backward(A(dln_));  // each slice of the vocabulary gave its part of dL/dx
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
  PL_CHECK(tp_.size() == 1, "forward_logits gathers whole logits: one tensor-parallel rank only");
  set_layout(doc_start);
  forward(inputs);
  linear_forward(be_, logits, A(lnf_), head_weight());
}

}  // namespace polyllama
