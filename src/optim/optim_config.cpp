#include "polyllama/optim/optim_config.hpp"

#include <cmath>
#include <cstdio>
#include <string>

namespace polyllama {

void OptimConfig::validate() const {
  // Each setting names its flag and value; NaN fails every comparison, so each test is written to fail on it.
  auto num = [](double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g", v);
    return std::string(buf);
  };
  auto bad = [&](const char* field, const char* flag, double v, const std::string& rule) {
    fail_input("optimizer config: " + std::string(field) + " (" + flag + ") " + rule + ", got " + num(v));
  };
  if (!(std::isfinite(lr) && lr > 0)) bad("lr", "--lr", lr, "must be a finite number > 0");
  if (!(std::isfinite(min_lr) && min_lr >= 0 && min_lr <= lr))
    bad("min_lr", "--min-lr", min_lr, "must be finite and lie in [0, lr = " + num(lr) + "]");
  if (warmup_steps < 0) bad("warmup_steps", "--warmup-steps", static_cast<double>(warmup_steps), "must be >= 0");
  if (!(beta1 >= 0 && beta1 < 1)) bad("beta1", "--beta1", beta1, "must lie in [0, 1)");
  if (!(beta2 >= 0 && beta2 < 1)) bad("beta2", "--beta2", beta2, "must lie in [0, 1)");
  if (!(std::isfinite(eps) && eps > 0)) bad("eps", "--adam-eps", eps, "must be a finite number > 0");
  if (!(std::isfinite(weight_decay) && weight_decay >= 0))
    bad("weight_decay", "--weight-decay", weight_decay, "must be a finite number >= 0");
  if (!(std::isfinite(grad_clip) && grad_clip >= 0))
    bad("grad_clip", "--grad-clip", grad_clip, "must be a finite number >= 0 (0: no clipping)");
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
