#include "polyllama/model/llama.hpp"

namespace polyllama {

// Reads dL/d(final norm output) from dln_ (written by head_and_loss) and walks the layers in reverse.
// dres_ carries the residual stream's gradient and is accumulated in place by every branch.
void LlamaModel::backward(const int32_t* inputs) {
  const Tensor dres = A(dres_);
  be_.zero(dres);
  be_.rmsnorm_backward(dres, G(norm_), A(dln_), A(res_final_), P(norm_), S(rstdf_));
  ready(norm_);
  if (!cfg_.tie_word_embeddings) ready(lm_head_);  // finished by head_and_loss; a tied head is the embedding

  const LayerCall call = layer_call();
  const LayerScratch scratch{A(dln_),  A(datt_), A(dq_),  A(dk_), A(dv_),
                             A(dact_), A(dgate_), A(dup_), S(attn_scratch_)};
  for (size_t li = layers_.size(); li-- > 0;) {
    // A recomputed layer: the shared buffers now hold its activations.
    if (static_cast<int64_t>(li) < recompute_layers_) layer_forward(li, false);
    layer_backward(be_, tp_, call, layer_weights(li), layer_grads(li), layer_acts(li), scratch, A(la_[li].res_in),
                   dres);
    const Layer& w = layers_[li];
    for (size_t p : {w.ln1, w.wq, w.wk, w.wv, w.wo, w.ln2, w.wg, w.wu, w.wd}) ready(p);
  }
  embedding_.backward(be_, tp_, G(embed_), dres, inputs);
  ready(embed_);
}

}  // namespace polyllama
