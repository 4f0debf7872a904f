#include "polyllama/model/llama_layer.hpp"

#include <cmath>
#include <string>

#include "polyllama/core/error.hpp"

namespace polyllama {

void linear_forward(Backend& be, Tensor y, Tensor x, Tensor w, double beta) {
  be.matmul(y, x, w, false, true, 1.0, beta);
}

void linear_backward(Backend& be, Tensor dx, Tensor dw, Tensor dy, Tensor x, Tensor w, bool accumulate_dx) {
  be.matmul(dx, dy, w, false, false, 1.0, accumulate_dx ? 1.0 : 0.0);
  be.matmul(dw, dy, x, true, false, 1.0, 1.0);
}

namespace {

// (N, heads * D) as (B, T, heads, D).
Tensor heads4(Tensor x, const LayerCall& c, int64_t heads) { return x.view({c.B, c.T, heads, c.head_dim}); }

}  // namespace

namespace {

// ln1 and the k and v projections of every row, k roped; written to the cache when decoding (c.k_cache set).
// The q projection too when with_q. Returns the keys and values attention reads.
std::pair<Tensor, Tensor> attention_inputs(Backend& be, const TensorParallel& tp, const LayerCall& c,
                                           const LayerWeights& w, const LayerActs& a, Tensor res_in, bool with_q) {
  const int64_t H = c.heads, KV = c.kv_heads;
  be.rmsnorm_forward(a.ln1, a.rstd1, res_in, w.ln1, c.eps);
  tp.copy_to_tp_forward(a.ln1);  // column-parallel q/k/v read the whole input
  if (with_q) linear_forward(be, a.q, a.ln1, w.wq);
  linear_forward(be, a.k, a.ln1, w.wk);
  linear_forward(be, a.v, a.ln1, w.wv);
  if (with_q) be.rope(heads4(a.q, c, H), c.rope_cos, c.rope_sin, c.positions, false);
  const Tensor k4 = heads4(a.k, c, KV), v4 = heads4(a.v, c, KV);
  be.rope(k4, c.rope_cos, c.rope_sin, c.positions, false);
  if (!c.k_cache.data) return {k4, v4};
  // Row b's new keys and values go to cache positions [cache_len, cache_len + T) of its (capacity, KV, D) block.
  const int64_t cap = c.k_cache.dim(1), width = KV * c.head_dim;
  PL_CHECK(c.cache_len + c.T <= cap, "KV cache of " + std::to_string(cap) + " positions holds " +
                                         std::to_string(c.cache_len) + ", appending " + std::to_string(c.T));
  const Tensor kc = c.k_cache.view({c.B * cap, width}), vc = c.v_cache.view({c.B * cap, width});
  for (int64_t b = 0; b < c.B; ++b) {
    be.copy(kc.slice_rows(b * cap + c.cache_len, c.T), a.k.slice_rows(b * c.T, c.T));
    be.copy(vc.slice_rows(b * cap + c.cache_len, c.T), a.v.slice_rows(b * c.T, c.T));
  }
  return {c.k_cache, c.v_cache};
}

// Everything after attention: res_mid = res_in + o(att), res_out = res_mid + down(silu(gate(ln2)) * up(ln2)).
void layer_tail(Backend& be, const TensorParallel& tp, const LayerWeights& w, const LayerActs& a, double eps,
                Tensor res_in, Tensor res_out) {
  // Row-parallel o_proj: every tp rank adds its heads' share, one of them the residual, and the sum is taken.
  tp.residual_into(be, a.res_mid, res_in);
  linear_forward(be, a.res_mid, a.att, w.wo, 1.0);
  tp.reduce_from_tp_forward(a.res_mid);
  be.rmsnorm_forward(a.ln2, a.rstd2, a.res_mid, w.ln2, eps);
  tp.copy_to_tp_forward(a.ln2);  // column-parallel gate/up
  linear_forward(be, a.gate, a.ln2, w.wg);
  linear_forward(be, a.up, a.ln2, w.wu);
  be.swiglu_forward(a.act, a.gate, a.up);
  if (!res_out.data) return;
  tp.residual_into(be, res_out, a.res_mid);  // row-parallel down_proj, likewise
  linear_forward(be, res_out, a.act, w.wd, 1.0);
  tp.reduce_from_tp_forward(res_out);
}

}  // namespace

void layer_forward(Backend& be, const TensorParallel& tp, const LayerCall& c, const LayerWeights& w,
                   const LayerActs& a, Tensor res_in, Tensor res_out) {
  const auto [keys, values] = attention_inputs(be, tp, c, w, a, res_in, true);
  be.attention_forward(heads4(a.att, c, c.heads), a.saved, heads4(a.q, c, c.heads), keys, values, c.span);
  layer_tail(be, tp, w, a, c.eps, res_in, res_out);
}

int64_t layer_forward_at(Backend& be, const TensorParallel& tp, const LayerCall& c, const LayerWeights& w,
                         const LayerActs& a, Tensor x, const std::vector<int64_t>& at) {
  PL_CHECK(c.k_cache.data && static_cast<int64_t>(at.size()) == c.B,
           "layer_forward_at: a decoding call (KV cache) and one position (or -1) per row");
  attention_inputs(be, tp, c, w, a, x, false);
  // The wanted rows move to the front of ln1 and x, in row order: a row's source index b T + t is never below
  // its destination m <= b, nor below any later destination, so the moves never overwrite a row still to move.
  std::vector<int32_t> positions;
  std::vector<int64_t> rows;
  for (int64_t b = 0; b < c.B; ++b) {
    const int64_t t = at[static_cast<size_t>(b)];
    if (t < 0) continue;
    PL_CHECK(t < c.T, "layer_forward_at: position " + std::to_string(t) + " of " + std::to_string(c.T));
    const int64_t m = static_cast<int64_t>(rows.size()), src = b * c.T + t;
    if (src != m) {
      be.copy(a.ln1.slice_rows(m, 1), a.ln1.slice_rows(src, 1));
      be.copy(x.slice_rows(m, 1), x.slice_rows(src, 1));
    }
    positions.push_back(c.positions ? c.positions[src] : static_cast<int32_t>(c.cache_len + t));
    rows.push_back(b);
  }
  const int64_t M = static_cast<int64_t>(rows.size());
  if (M == 0) return 0;
  const int64_t H = c.heads, KV = c.kv_heads, D = c.head_dim, cap = c.k_cache.dim(1);
  const Tensor q = a.q.slice_rows(0, M);
  linear_forward(be, q, a.ln1.slice_rows(0, M), w.wq);
  be.rope(q.view({M, 1, H, D}), c.rope_cos, c.rope_sin, positions.data(), false);
  // One query per row, each with its own end: row b's query at chunk position t sees cache positions up to
  // cache_len + t, from its own start.
  const Tensor kc = c.k_cache.view({c.B * cap, KV * D}), vc = c.v_cache.view({c.B * cap, KV * D});
  for (int64_t m = 0; m < M; ++m) {
    const int64_t b = rows[static_cast<size_t>(m)], t = at[static_cast<size_t>(b)];
    AttnSpan span;
    span.kv_len = c.cache_len + t + 1;
    span.kv_start = c.span.kv_start ? c.span.kv_start + b * c.T + t : nullptr;
    span.for_backward = false;
    be.attention_forward(a.att.slice_rows(m, 1).view({1, 1, H, D}), a.saved, q.slice_rows(m, 1).view({1, 1, H, D}),
                         kc.slice_rows(b * cap, cap).view({1, cap, KV, D}),
                         vc.slice_rows(b * cap, cap).view({1, cap, KV, D}), span);
  }
  LayerActs s = a;
  s.ln1 = s.ln2 = a.ln2.slice_rows(0, M);
  s.rstd1 = s.rstd2 = a.rstd2.view({a.rstd2.numel(), 1}).slice_rows(0, M).view({M});
  s.att = a.att.slice_rows(0, M);
  s.res_mid = x.slice_rows(0, M);
  s.gate = a.gate.slice_rows(0, M), s.act = a.act.slice_rows(0, M), s.up = a.up.slice_rows(0, M);
  layer_tail(be, tp, w, s, c.eps, x.slice_rows(0, M), x.slice_rows(0, M));
  return M;
}

void layer_backward(Backend& be, const TensorParallel& tp, const LayerCall& c, const LayerWeights& w,
                    const LayerWeights& g, const LayerActs& a, const LayerScratch& s, Tensor res_in, Tensor dres) {
  PL_CHECK(!c.k_cache.data, "layer_backward: a cached (decoding) forward keeps no keys to differentiate");
  const int64_t H = c.heads, KV = c.kv_heads;
  // MLP: dres carries dL/d(res_out); the residual passes it on unchanged and each branch adds to it.
  tp.reduce_from_tp_backward(dres);  // the down_proj sum's gradient: every rank's part gets all of it
  linear_backward(be, s.dact, g.wd, dres, a.act, w.wd, false);
  be.swiglu_backward(s.dgate, s.dup, s.dact, a.gate, a.up);
  linear_backward(be, s.dln, g.wg, s.dgate, a.ln2, w.wg, false);
  linear_backward(be, s.dln, g.wu, s.dup, a.ln2, w.wu, true);
  tp.copy_to_tp_backward(s.dln);  // each rank's features give part of dL/d(ln2)
  be.rmsnorm_backward(dres, g.ln2, s.dln, a.res_mid, w.ln2, a.rstd2);

  // Attention.
  tp.reduce_from_tp_backward(dres);
  linear_backward(be, s.datt, g.wo, dres, a.att, w.wo, false);
  const Tensor dq4 = heads4(s.dq, c, H), dk4 = heads4(s.dk, c, KV);
  be.attention_backward(dq4, dk4, heads4(s.dv, c, KV), heads4(s.datt, c, H), heads4(a.q, c, H), heads4(a.k, c, KV),
                        heads4(a.v, c, KV), heads4(a.att, c, H), a.saved, s.attn, c.span);
  be.rope(dq4, c.rope_cos, c.rope_sin, c.positions, true);
  be.rope(dk4, c.rope_cos, c.rope_sin, c.positions, true);
  linear_backward(be, s.dln, g.wq, s.dq, a.ln1, w.wq, false);
  linear_backward(be, s.dln, g.wk, s.dk, a.ln1, w.wk, true);
  linear_backward(be, s.dln, g.wv, s.dv, a.ln1, w.wv, true);
  tp.copy_to_tp_backward(s.dln);  // each rank's heads give part of dL/d(ln1)
  be.rmsnorm_backward(dres, g.ln1, s.dln, res_in, w.ln1, a.rstd1);
}

void VocabParallelEmbedding::forward(Backend& be, const TensorParallel& tp, Tensor out, Tensor table, int64_t v0,
                                     const int32_t* ids, int64_t n) {
  if (tp.size() == 1) {
    be.embedding_forward(out, table, ids);
    return;
  }
  const int64_t rows = table.rows();
  local_ids_.resize(static_cast<size_t>(n));
  foreign_runs_.clear();
  for (int64_t i = 0; i < n; ++i) {
    const int64_t local = ids[i] - v0;
    const bool mine = local >= 0 && local < rows;
    local_ids_[static_cast<size_t>(i)] = mine ? static_cast<int32_t>(local) : 0;
    if (mine) continue;
    if (!foreign_runs_.empty() && foreign_runs_.back().first + foreign_runs_.back().second == i)
      foreign_runs_.back().second += 1;
    else
      foreign_runs_.push_back({i, 1});
  }
  be.embedding_forward(out, table, local_ids_.data());
  for (const auto& [i0, len] : foreign_runs_) be.zero(out.slice_rows(i0, len));
  tp.reduce_from_tp_forward(out);
}

void VocabParallelEmbedding::backward(Backend& be, const TensorParallel& tp, Tensor dtable, Tensor dout,
                                      const int32_t* ids) {
  tp.reduce_from_tp_backward(dout);  // whole on every rank: it flows into this rank's rows only
  if (tp.size() == 1) {
    be.embedding_backward(dtable, dout, ids);
    return;
  }
  for (const auto& [i0, len] : foreign_runs_) be.zero(dout.slice_rows(i0, len));
  be.embedding_backward(dtable, dout, local_ids_.data());
}

void fill_rope_tables(Backend& be, Tensor cos, Tensor sin, double theta) {
  const int64_t rows = cos.rows(), half = cos.cols(), D = 2 * half;
  PL_CHECK(sin.rows() == rows && sin.cols() == half && sin.dtype == cos.dtype, "rope tables " + cos.shape_str() +
                                                                                 " and " + sin.shape_str());
  auto fill = [&](auto z) {  // in host memory, then uploaded (a memcpy when the backend is the CPU)
    using T = decltype(z);
    std::vector<T> hc(static_cast<size_t>(rows * half)), hs(hc.size());
    for (int64_t t = 0; t < rows; ++t)
      for (int64_t i = 0; i < half; ++i) {
        const double inv_freq = std::pow(theta, -2.0 * static_cast<double>(i) / static_cast<double>(D));
        const double ang = static_cast<double>(t) * inv_freq;
        hc[static_cast<size_t>(t * half + i)] = static_cast<T>(std::cos(ang));
        hs[static_cast<size_t>(t * half + i)] = static_cast<T>(std::sin(ang));
      }
    be.upload(cos, hc.data());
    be.upload(sin, hs.data());
  };
  if (cos.dtype == DType::f64)
    fill(double{});
  else if (cos.dtype == DType::f32)
    fill(float{});
  else
    fail_runtime(std::string("rope tables in ") + dtype_name(cos.dtype) + ": f32 or f64 expected", __FILE__,
                 __LINE__);
}

}  // namespace polyllama
