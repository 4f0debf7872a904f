#include "polyllama/optim/optim_config.hpp"

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

}  // namespace polyllama
