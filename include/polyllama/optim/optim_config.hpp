#pragma once
// The optimizer's settings (AdamW with decoupled weight decay, global-norm clipping), the learning-rate schedule,
// and what the optimizer is handed: (parameter, gradient) tensors by name, so optim knows nothing about the model.
// The optimizer itself is ZeroAdamW (zero_adamw.hpp): with one data-parallel rank it is plain AdamW.
#include <cstdint>
#include <string>
#include <vector>

#include "polyllama/core/backend.hpp"

namespace polyllama {

struct OptimConfig {
  double lr = 3e-4;          // peak learning rate, reached at the end of warmup
  double min_lr = 3e-5;      // cosine decay floor
  int64_t warmup_steps = 100;
  double beta1 = 0.9, beta2 = 0.95, eps = 1e-8;
  double weight_decay = 0.1;  // not applied to norm weights
  double grad_clip = 1.0;     // max global L2 norm; 0 disables clipping
  void validate() const;
};

// Linear warmup from lr/warmup to lr over warmup_steps, then cosine decay to min_lr at total_steps.
// step is 0-based: the rate used by the (step+1)-th update.
double lr_at(const OptimConfig& c, int64_t step, int64_t total_steps);

struct ParamSlot {
  std::string name;
  Tensor param, grad;
  bool decay;
};

}  // namespace polyllama
