#include "polyllama/train/train_step.hpp"

#include <algorithm>

namespace polyllama {

std::vector<ZeroSlot> zero_slots_of(LlamaModel& m) {
  std::vector<ZeroSlot> s;
  for (size_t i = 0; i < m.params().size(); ++i)
    s.push_back({{m.params()[i].name, m.param(i), m.grad(i), m.params()[i].decay}, m.params()[i].shard});
  return s;
}

int64_t counted_targets(const int32_t* targets, int64_t n) {
  return static_cast<int64_t>(n - std::count(targets, targets + n, LlamaModel::kIgnoreIndex));
}

StepResult train_step(LlamaModel& model, ZeroAdamW& opt, const ParallelContext& par, const StepBatch& batch,
                      double lr) {
  const int64_t rows = model.batch() * model.seq(), accum = batch.micro_batches;
  PL_CHECK(rows > 0 && accum > 0, "train_step: allocate the model's activations first");
  model.zero_grads();
  StepResult r;
  double tok = static_cast<double>(counted_targets(batch.targets, rows * accum));
  par.dp().all_reduce(&tok, 1, DType::f64, ReduceOp::sum);
  r.tokens = static_cast<int64_t>(tok);
  const double scale = 1.0 / static_cast<double>(std::max<int64_t>(1, r.tokens));
  double loss = 0;
  for (int64_t a = 0; a < accum; ++a) {
    const int64_t off = a * rows;
    if (a + 1 == accum) {  // this pass completes the gradients: reduce each bucket as backward finishes it
      opt.begin_reduction();
      model.set_grad_ready_hook([&opt](size_t i) { opt.grad_ready(i); });
    }
    loss += model.forward_backward(batch.inputs + off, batch.targets + off, scale, true,
                                   batch.doc_start ? batch.doc_start + off : nullptr);
  }
  model.set_grad_ready_hook(nullptr);
  opt.finish_reduction();
  par.dp().all_reduce(&loss, 1, DType::f64, ReduceOp::sum);
  r.grad_norm = opt.clip_grad_norm();
  r.loss = loss / static_cast<double>(std::max<int64_t>(1, r.tokens));
  // The loss is summed over dp and the norm over the world, so the ranks already see the same values; agreeing
  // explicitly costs one scalar and keeps them in step even if a reduction rounded differently somewhere.
  double bad = step_is_finite(r.loss, r.grad_norm) ? 0 : 1;
  par.world().all_reduce(&bad, 1, DType::f64, ReduceOp::max);
  if (bad > 0) {
    opt.discard_step();
    r.skipped = true;
    return r;
  }
  opt.step(lr);
  model.refresh_working_weights();
  return r;
}

}  // namespace polyllama
