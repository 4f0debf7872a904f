#pragma once
// AdamW with decoupled weight decay, the learning-rate schedule and global-norm clipping. Works on any list
// of (parameter, gradient) tensors: optim knows nothing about the model.
#include <cstdint>
#include <string>
#include <vector>

#include "polyllama/core/arena.hpp"
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

class AdamW {
 public:
  AdamW(const OptimConfig& cfg, Backend& backend, std::vector<ParamSlot> slots);
  // Global L2 norm of all gradients. When it exceeds grad_clip, the next step() scales the gradients down to
  // grad_clip as it reads them (the gradient buffers are not rewritten). Returns the norm before clipping.
  double clip_grad_norm();
  // One update at learning rate lr; advances the step count used for bias correction.
  void step(double lr);
  int64_t steps_done() const { return steps_; }
  void set_steps_done(int64_t s) { steps_ = s; }
  const std::vector<ParamSlot>& slots() const { return slots_; }
  Tensor exp_avg(size_t i) const { return m_.get(handles_[i]); }
  Tensor exp_avg_sq(size_t i) const { return v_.get(handles_[i]); }
  size_t state_bytes() const { return m_.bytes() + v_.bytes(); }

 private:
  OptimConfig cfg_;
  Backend& be_;
  std::vector<ParamSlot> slots_;
  Arena m_, v_;
  std::vector<int> handles_;
  int64_t steps_ = 0;
  double clip_factor_ = 1.0;  // from the last clip_grad_norm(), consumed by the next step()
};

}  // namespace polyllama
