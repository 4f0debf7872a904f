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

ShardSpec tp_shard(const std::vector<int64_t>& full_shape, Split split, int tp, int tp_rank) {
  if (split == Split::none || tp == 1) {
    ShardSpec s = ShardSpec::full(full_shape);
    s.replica_id = split == Split::none ? tp_rank : 0;
    return s;
  }
  return ShardSpec::split(full_shape, split == Split::rows ? 0 : 1, tp, tp_rank);
}

namespace {

template <typename T>
double xent(T* logits, T* loss, const int32_t* targets, int64_t v0, int32_t ignore, bool want_grad, double scale,
            int64_t N, int64_t Vl, Communicator& tp) {
  // Row maxima (one all-reduce), then the sums of exponentials with the target's logit (another, 2N values):
  // the target's logit comes from the one rank whose slice holds it, zeros from the others.
  std::vector<double> mx(static_cast<size_t>(N)), st(static_cast<size_t>(2 * N));
  auto mine = [&](int64_t n) {
    const int64_t local = static_cast<int64_t>(targets[n]) - v0;
    return targets[n] != ignore && local >= 0 && local < Vl ? local : int64_t{-1};
  };
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    const T* row = logits + n * Vl;
    T m = row[0];
    for (int64_t j = 1; j < Vl; ++j) m = std::max(m, row[j]);
    mx[static_cast<size_t>(n)] = static_cast<double>(m);
  }
  tp.all_reduce(mx.data(), N, DType::f64, ReduceOp::max);
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    T* row = logits + n * Vl;
    const T m = static_cast<T>(mx[static_cast<size_t>(n)]);
    const int64_t t = mine(n);
    st[static_cast<size_t>(2 * n + 1)] = t >= 0 ? static_cast<double>(row[t]) : 0.0;
    T sum = 0;
    if (want_grad) {
      for (int64_t j = 0; j < Vl; ++j) {
        const T e = std::exp(row[j] - m);
        row[j] = e;  // kept for the gradient
        sum += e;
      }
    } else {
      for (int64_t j = 0; j < Vl; ++j) sum += std::exp(row[j] - m);
    }
    st[static_cast<size_t>(2 * n)] = static_cast<double>(sum);
  }
  tp.all_reduce(st.data(), 2 * N, DType::f64, ReduceOp::sum);
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    T* row = logits + n * Vl;
    const double sum = st[static_cast<size_t>(2 * n)], xt = st[static_cast<size_t>(2 * n + 1)];
    if (targets[n] == ignore) {
      loss[n] = 0;
      if (want_grad) std::fill(row, row + Vl, T(0));
      continue;
    }
    loss[n] = static_cast<T>(std::log(sum) + mx[static_cast<size_t>(n)] - xt);
    if (want_grad) {
      const T s = static_cast<T>(scale / sum);
      for (int64_t j = 0; j < Vl; ++j) row[j] *= s;
      const int64_t t = mine(n);
      if (t >= 0) row[t] -= static_cast<T>(scale);
    }
  }
  double total = 0;  // in row order, as the single-device op
  for (int64_t n = 0; n < N; ++n) total += static_cast<double>(loss[n]);
  return total;
}

}  // namespace

double vocab_parallel_xent(Tensor logits, Tensor loss, const int32_t* targets, int64_t v0, int32_t ignore_index,
                           bool want_grad, double grad_scale, Communicator& tp) {
  const int64_t N = logits.rows(), Vl = logits.cols();
  PL_CHECK(loss.numel() == N && loss.dtype == logits.dtype,
           "vocab_parallel_xent: loss must be (N) of the logits' dtype");
  if (logits.dtype == DType::f32)
    return xent(logits.ptr<float>(), loss.ptr<float>(), targets, v0, ignore_index, want_grad, grad_scale, N, Vl, tp);
  return xent(logits.ptr<double>(), loss.ptr<double>(), targets, v0, ignore_index, want_grad, grad_scale, N, Vl, tp);
}

}  // namespace polyllama
