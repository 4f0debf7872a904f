#pragma once
// The one training loop that pretrain and sft share: micro-batch accumulation, the schedule,
// logging and metrics.jsonl, evaluation, periodic checkpoints, exact resume and clean stops on signals.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "polyllama/ckpt/checkpoint.hpp"
#include "polyllama/ckpt/model_io.hpp"
#include "polyllama/data/sample_stream.hpp"
#include "polyllama/data/token_windows.hpp"
#include "polyllama/model/llama.hpp"
#include "polyllama/optim/optim_config.hpp"
#include "polyllama/optim/zero_adamw.hpp"
#include "polyllama/parallel/parallel.hpp"
#include "polyllama/train/walltime.hpp"

namespace polyllama {

struct TrainConfig {
  std::string run_dir = "run";   // metrics.jsonl and ckpt/ live here
  int64_t steps = 1000;          // optimizer steps in the whole run (the schedule's length)
  int64_t seq_len = 256;
  int64_t micro_batch = 4;       // sequences per forward/backward
  int64_t global_batch = 0;      // sequences per optimizer step over all dp ranks; 0 = micro_batch * dp
                                 // (no accumulation); a multiple of micro_batch * dp
  int64_t log_interval = 10;
  int64_t eval_interval = 0;     // 0: only at the end (when there is validation data)
  int64_t eval_batches = 16;     // micro-batches of validation windows per evaluation (0 = all)
  int64_t save_interval = 0;     // 0: only at the end
  int keep_last = 0;             // checkpoints to keep (0 = all)
  std::vector<int64_t> save_at;  // steps saved besides the interval ones and never pruned (a study's budgets)
  uint64_t seed = 1234;          // data order
  int64_t max_bad_steps = 5;     // steps in a row whose loss or gradient norm is not finite (each skipped, no
                                 // update) before the run stops with exit 2, without saving
  double job_end = 0;            // the job's end, seconds since the epoch (0: unknown); see walltime.hpp
  double exit_before_s = 0;      // save and stop this long before job_end (0: off)
  void validate() const;
  // Sequences per step and micro-batches per step on each of dp data-parallel ranks.
  int64_t global_rows(int dp = 1) const { return global_batch > 0 ? global_batch : micro_batch * dp; }
  int64_t accum_steps(int dp = 1) const { return global_rows(dp) / (micro_batch * dp); }
};

struct TrainerState {
  int64_t step = 0;              // optimizer steps done
  int64_t consumed_samples = 0;  // sequences drawn from the sampler
  int64_t consumed_tokens = 0;   // targets that carried loss
  int64_t skipped_steps = 0;     // steps skipped for a non-finite loss or gradient norm, over the whole run
};

struct TrainResult {
  std::vector<double> losses;  // training loss per step of this invocation
  double last_val_loss = -1;
  bool stopped_by_signal = false;
  bool stopped_for_walltime = false;  // --exit-before: the job's end was near (saved, like a signal's stop)
  int64_t skipped_steps = 0;   // steps of this invocation skipped for a non-finite loss or gradient norm
  double tokens_per_s = 0;
};

// The optimizer's tensors under their checkpoint names (exp_avg.<name>, exp_avg_sq.<name>), in the backend's
// memory (ckpt/model_io.hpp's HostMirror does the I/O on a GPU), each with this rank's ZeRO-1 rows of the full
// logical tensor. The model's own tensors: ckpt/model_io.hpp's model_tensors.
std::vector<NamedTensor> optimizer_tensors(const ZeroAdamW& opt);

class Trainer {
 public:
  Trainer(const TrainConfig& cfg, const OptimConfig& ocfg, LlamaModel& model, const SampleStream& train,
          const SampleStream* val, CheckpointMeta base_meta);
  // Restores optimizer and trainer state from a checkpoint directory written by this trainer.
  void resume_from(const std::string& step_dir);
  // The non-finite policy: a step with a non-finite loss or gradient norm is skipped (train_step), logged and
  // counted (metrics.jsonl: "skipped": true on its line, "skipped_steps" on every line); a periodic save that falls
  // on such a step waits for the next good one; after max_bad_steps in a row it fails (exit 2) without saving, so
  // ckpt/latest stays the last good checkpoint. A signal, or TrainConfig::exit_before_s before job_end (WalltimeGuard),
  // ends the loop between steps on every rank together; the run then saves and returns.
  TrainResult run();
  // Mean loss per target token over the validation windows.
  double evaluate();
  const TrainerState& state() const { return st_; }
  std::string save();

 private:
  void truncate_metrics_after(int64_t step);
  TrainConfig cfg_;
  OptimConfig ocfg_;
  LlamaModel& model_;
  std::unique_ptr<ParallelContext> own_par_;  // one process when the model has no parallel context
  const ParallelContext& par_;
  int64_t accum_ = 1;  // micro-batches per step on this dp rank
  ZeroAdamW opt_;
  const SampleStream& train_;
  const SampleStream* val_;
  CheckpointMeta meta_;
  TrainerState st_;
  WalltimeGuard walltime_;  // world rank 0's: its clock and timings decide for every rank
  std::vector<int32_t> inputs_, targets_, doc_start_;  // (accum * B, T): one optimizer step of rows
};

// SIGINT/SIGTERM/SIGUSR1 set a flag the loop checks between steps (Slurm sends SIGTERM, or SIGUSR1 with
// --signal, before a time limit).
void install_stop_signal_handlers();
bool stop_requested();
// The signal that asked for the stop ("SIGTERM"), or "" when none did (in this process).
std::string stop_signal_name();

}  // namespace polyllama
