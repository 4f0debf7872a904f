#pragma once
// One optimizer step, the one every training run takes (Trainer::run) and `bench` times: zero the gradients,
// forward and backward over the step's micro-batches on this data-parallel rank, the ZeRO-1 reduction of the
// gradients overlapping the last backward pass, global-norm clipping, the AdamW update, the gathered weights,
// and the bf16 working copy refreshed.
#include <cmath>
#include <cstdint>
#include <vector>

#include "polyllama/model/llama.hpp"
#include "polyllama/optim/zero_adamw.hpp"
#include "polyllama/parallel/parallel.hpp"

namespace polyllama {

// This dp rank's rows of one step in host memory: micro_batches x (model.batch() rows of model.seq() tokens).
// Targets equal to LlamaModel::kIgnoreIndex carry no loss; doc_start may be nullptr (one causal stream per row).
struct StepBatch {
  const int32_t* inputs = nullptr;     // (micro_batches * B, T)
  const int32_t* targets = nullptr;    // (micro_batches * B, T)
  const int32_t* doc_start = nullptr;  // (micro_batches * B, T) or nullptr
  int64_t micro_batches = 1;
};

struct StepResult {
  double loss = 0;         // mean loss per counted target over every dp rank's rows
  int64_t tokens = 0;      // counted targets over every dp rank
  double grad_norm = 0;    // before clipping
  bool skipped = false;    // the loss or the gradient norm was not finite: no update was made
};

// The loss is the mean over every counted target of the step, over all micro-batches and dp ranks (SFT rows carry
// a varying number of answer tokens, so the token count is summed over dp before the loss is scaled).
// Non-finite policy (Megatron's and torchtitan's): when the loss or the global gradient norm is NaN or infinite on
// any rank, every rank skips the update together (the decision is all-reduced over the world), so the weights,
// their working copy, the AdamW moments and the optimizer's step count stay exactly as they were.
StepResult train_step(LlamaModel& model, ZeroAdamW& opt, const ParallelContext& par, const StepBatch& batch,
                      double lr);

// The skip decision of one step, from its loss and gradient norm.
inline bool step_is_finite(double loss, double grad_norm) { return std::isfinite(loss) && std::isfinite(grad_norm); }

// The optimizer's view of the model: its tp-local parameters with where they sit in the full tensors.
std::vector<ZeroSlot> zero_slots_of(LlamaModel& m);

// Targets in a buffer that carry loss.
int64_t counted_targets(const int32_t* targets, int64_t n);

}  // namespace polyllama
