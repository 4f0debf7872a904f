#include "polyllama/model/llama.hpp"

namespace polyllama {

namespace {
// y = x W^T:  dx (=, or += with accumulate) dy W;  dW += dy^T x.
void linear_backward(Backend& be, Tensor dx, Tensor dw, Tensor dy, Tensor x, Tensor w, bool accumulate_dx) {
  be.matmul(dx, dy, w, false, false, 1.0, accumulate_dx ? 1.0 : 0.0);
  be.matmul(dw, dy, x, true, false, 1.0, 1.0);
}
}  // namespace

// Reads dL/d(final norm output) from dln_ (written by head_and_loss) and walks the layers in reverse.
// dres_ carries the residual stream's gradient and is accumulated in place by every branch.
void LlamaModel::backward(const int32_t* inputs) {
  const int64_t H = H_, KV = KV_, D = cfg_.head_dim();
  const Tensor dres = A(dres_), dln = A(dln_);
  be_.zero(dres);
  be_.rmsnorm_backward(dres, G(norm_), dln, A(res_final_), P(norm_), S(rstdf_));
  ready(norm_);
  if (!cfg_.tie_word_embeddings) ready(lm_head_);  // finished by head_and_loss; a tied head is the embedding

  for (size_t li = layers_.size(); li-- > 0;) {
    const Layer& w = layers_[li];
    const LayerActs& a = la_[li];
    // A recomputed layer: the shared buffers now hold its activations.
    if (static_cast<int64_t>(li) < recompute_layers_) layer_forward(li, false);
    // MLP: res_out = res_mid + down(silu(gate(ln2)) * up(ln2))
    linear_backward(be_, A(dact_), G(w.wd), dres, A(a.act), P(w.wd), false);
    be_.swiglu_backward(A(dgate_), A(dup_), A(dact_), A(a.gate), A(a.up));
    linear_backward(be_, dln, G(w.wg), A(dgate_), A(a.ln2), P(w.wg), false);
    linear_backward(be_, dln, G(w.wu), A(dup_), A(a.ln2), P(w.wu), true);
    tp_sum(dln);  // column-parallel gate/up: each rank's features give part of dL/d(ln2)
    be_.rmsnorm_backward(dres, G(w.ln2), dln, A(a.res_mid), P(w.ln2), S(a.rstd2));

    // Attention: res_mid = res_in + o(attn(rope(q(ln1)), rope(k(ln1)), v(ln1)))
    linear_backward(be_, A(datt_), G(w.wo), dres, A(a.att), P(w.wo), false);
    Tensor dq4 = A(dq_).view({B_, T_, H, D}), dk4 = A(dk_).view({B_, T_, KV, D});
    be_.attention_backward(dq4, dk4, A(dv_).view({B_, T_, KV, D}), A(datt_).view({B_, T_, H, D}),
                           A(a.q).view({B_, T_, H, D}), A(a.k).view({B_, T_, KV, D}), A(a.v).view({B_, T_, KV, D}),
                           A(a.att).view({B_, T_, H, D}), S(a.saved), S(attn_scratch_), attn_span());
    be_.rope(dq4, S(rope_cos_), S(rope_sin_), rope_positions(), true);
    be_.rope(dk4, S(rope_cos_), S(rope_sin_), rope_positions(), true);
    linear_backward(be_, dln, G(w.wq), A(dq_), A(a.ln1), P(w.wq), false);
    linear_backward(be_, dln, G(w.wk), A(dk_), A(a.ln1), P(w.wk), true);
    linear_backward(be_, dln, G(w.wv), A(dv_), A(a.ln1), P(w.wv), true);
    tp_sum(dln);  // column-parallel q/k/v: each rank's heads give part of dL/d(ln1)
    be_.rmsnorm_backward(dres, G(w.ln1), dln, A(a.res_in), P(w.ln1), S(a.rstd1));
    for (size_t p : {w.ln1, w.wq, w.wk, w.wv, w.wo, w.ln2, w.wg, w.wu, w.wd}) ready(p);
  }
  embed_backward(inputs);
  ready(embed_);
}

}  // namespace polyllama
