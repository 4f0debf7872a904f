#include "polyllama/optim/adamw.hpp"

#include <cmath>

namespace polyllama {

void OptimConfig::validate() const {
  auto bad = [](const std::string& m) { fail_input("optimizer config: " + m); };
  if (!(lr > 0)) bad("lr must be positive, got " + std::to_string(lr));
  if (min_lr < 0 || min_lr > lr) bad("min_lr must lie in [0, lr], got " + std::to_string(min_lr));
  if (warmup_steps < 0) bad("warmup_steps must be >= 0");
  if (!(beta1 >= 0 && beta1 < 1 && beta2 >= 0 && beta2 < 1)) bad("betas must lie in [0, 1)");
  if (!(eps > 0)) bad("eps must be positive");
  if (weight_decay < 0 || grad_clip < 0) bad("weight_decay and grad_clip must be >= 0");
}

double lr_at(const OptimConfig& c, int64_t step, int64_t total_steps) {
  if (step < c.warmup_steps) return c.lr * static_cast<double>(step + 1) / static_cast<double>(c.warmup_steps);
  const int64_t decay_steps = total_steps - c.warmup_steps;
  if (decay_steps <= 1) return c.lr;
  const double progress =
      std::min(1.0, static_cast<double>(step - c.warmup_steps) / static_cast<double>(decay_steps - 1));
  return c.min_lr + 0.5 * (c.lr - c.min_lr) * (1.0 + std::cos(M_PI * progress));
}

AdamW::AdamW(const OptimConfig& cfg, Backend& backend, std::vector<ParamSlot> slots)
    : cfg_(cfg), be_(backend), slots_(std::move(slots)),
      m_("adam.exp_avg", slots_.empty() ? DType::f32 : slots_[0].param.dtype, &backend),
      v_("adam.exp_avg_sq", slots_.empty() ? DType::f32 : slots_[0].param.dtype, &backend) {
  cfg_.validate();
  PL_CHECK(!slots_.empty(), "optimizer without parameters");
  for (const ParamSlot& s : slots_) {
    handles_.push_back(m_.reserve({s.param.numel()}));  // m and v share one layout: one handle serves both
    v_.reserve({s.param.numel()});
  }
  m_.allocate();
  v_.allocate();
}

double AdamW::clip_grad_norm() {
  std::vector<Tensor> grads;
  for (const ParamSlot& s : slots_) grads.push_back(s.grad);
  const double norm = std::sqrt(be_.sum_squares_all(grads));
  clip_factor_ = cfg_.grad_clip > 0 && norm > cfg_.grad_clip ? cfg_.grad_clip / (norm + 1e-6) : 1.0;
  return norm;
}

void AdamW::step(double lr) {
  ++steps_;
  for (size_t i = 0; i < slots_.size(); ++i) {
    const ParamSlot& s = slots_[i];
    AdamWParams p{lr, cfg_.beta1, cfg_.beta2, cfg_.eps, s.decay ? cfg_.weight_decay : 0.0, clip_factor_, steps_};
    Tensor pm = s.param.view({s.param.numel()});
    be_.adamw(pm, s.grad.view({s.grad.numel()}), exp_avg(i), exp_avg_sq(i), p);
  }
  clip_factor_ = 1.0;
}

}  // namespace polyllama
