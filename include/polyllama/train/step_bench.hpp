#pragma once
// `polyllama bench`: the training step a run takes (train_step with ZeroAdamW), timed on random tokens. Between
// the timed steps the device's dense matmul rate is measured too (Backend::measure_matmul_tflops), so that both
// numbers see the same machine: on shared or throttled nodes the sgemm rate drifts by tens of percent.
#include <cstdint>

#include "polyllama/core/profiling_backend.hpp"
#include "polyllama/model/llama.hpp"
#include "polyllama/parallel/parallel.hpp"

namespace polyllama {

struct StepBenchConfig {
  int64_t steps = 5, warmup = 1;    // timed steps (the median is reported) after untimed ones
  int64_t matmul_n = 2048;          // n of the n^3 product timed after each timed step (0: none)
  ProfilingBackend* profile = nullptr;  // reset after the warm-up, so that it covers the timed steps only
};

struct StepBenchResult {
  double step_s = 0;           // median over the timed steps
  double tokens_per_s = 0;     // positions of one step over step_s
  double tflops = 0;           // model FLOPs (ModelConfig::train_flops) per second
  double matmul_tflops = 0;    // median of the rates measured between steps (0 when not measured)
  double loss = 0;             // of the last step
  size_t optimizer_bytes = 0;  // AdamW moments of this rank
};

// The model's activations must be allocated (its batch and seq are the step's shape).
StepBenchResult bench_train_steps(LlamaModel& model, const ParallelContext& par, const StepBenchConfig& cfg);

}  // namespace polyllama
