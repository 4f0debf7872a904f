#pragma once
// What `pretrain` and `sft` share: the training options, where a run starts (resume or --init-from), and the
// run itself over a sample stream. Each verb adds only how it reads its data.
#include <CLI/CLI.hpp>

#include <memory>
#include <string>

#include "polyllama/core/backend.hpp"
#include "polyllama/ckpt/checkpoint.hpp"
#include "polyllama/model/config.hpp"
#include "polyllama/model/llama.hpp"
#include "polyllama/ckpt/model_io.hpp"
#include "polyllama/optim/optim_config.hpp"
#include "polyllama/parallel/parallel.hpp"
#include "polyllama/tokenizer/tokenizer.hpp"
#include "polyllama/train/trainer.hpp"

namespace polyllama::cli {

struct TrainOptions {
  TrainConfig train;
  OptimConfig optim;
  std::string init_from;
  bool no_resume = false, json = false;
  bool overwrite = false;  // with --init-from: start RUN over even though it holds checkpoints
  int64_t val_every = 20;
  int threads = 0;
  std::string device = "cpu";  // cpu, or cuda: bf16 mixed precision with f32 master weights
  bool recompute = false;      // keep only each layer's input; recompute the rest in backward
  int64_t recompute_layers = -1;  // with recompute: the first N layers only (-1: all)
  std::string attention = "own";  // cuda: own (the backend's flash kernels) or cudnn (cuDNN fused attention)
  int tp = 1;                  // tensor-parallel ranks; dp = launched ranks / tp
  double exit_before_min = 0;  // --exit-before: save and exit 3 this many minutes before the job's end (0: off)
  double job_end = 0;          // --job-end: the job's end in epoch seconds (0: SLURM_JOB_END_TIME, when set)
};

// --run-dir, --init-from, --no-resume, the schedule, batch and optimizer flags, --threads, --device, --json.
void add_train_options(CLI::App* cmd, TrainOptions& o);

// --attention own|cudnn (pretrain, sft, bench): its help text. Backend::set_attention applies it (cudnn needs the
// CUDA backend, fails with exit 1 elsewhere).
const char* attention_option_help();

// Takes a run directory for this process, before anything in it is read or written (pretrain, sft, init): world
// rank 0 locks RUN/.lock for the life of the process (every rank fails together, exit 1, naming the holder's host
// and pid when another process has it) and removes the step_*.tmp directories of killed saves, logging each.
void claim_run_dir(const std::string& run_dir);
// What RUN/ckpt holds, for messages: "3 checkpoints, step_00000000 to step_00000008 (latest: step_00000008)";
// "" when there is no step directory.
std::string describe_checkpoints(const std::string& run_dir);
// Starts a claimed RUN over (--overwrite), on world rank 0: removes its step directories except `keep_dir` (the
// checkpoint the new run starts from, when it lies inside RUN), `latest` when it named a removed one, and
// metrics.jsonl; logs what it removed. Collective over the world.
void clear_run_dir(const std::string& run_dir, const std::string& keep_dir);

// The checkpoint a run starts from: RUN/ckpt/latest when present (resuming; a missing or broken `latest` is
// rebuilt from the newest intact step directory), else --init-from. Claims RUN first and, on world rank 0,
// registers it for RUN/status.json ("running").
struct StartPoint {
  std::string dir;
  bool resuming = false;
  CheckpointMeta meta;
  ModelConfig cfg;
  std::unique_ptr<Tokenizer> tokenizer;  // the checkpoint's own
};
StartPoint find_start(const TrainOptions& o, const char* verb);

// The model of the start point on --device's backend, activations sized for the options' micro-batch.
struct LoadedModel {
  std::unique_ptr<ParallelContext> parallel;  // --tp over the launched ranks
  std::unique_ptr<Backend> backend;
  std::unique_ptr<LlamaModel> model;
};
LoadedModel load_model(const TrainOptions& o, const StartPoint& start);

// The job's end for --exit-before: --job-end, else SLURM_JOB_END_TIME, else 0 (unknown: a warning when
// --exit-before was given). World rank 0 decides and broadcasts; exit 1 when the end is already within the margin.
double resolve_job_end(const TrainOptions& o);

// Trains and prints the summary; returns the exit code (kExitSignal when stopped by a signal).
int run_training(const TrainOptions& o, const StartPoint& start, LlamaModel& model, const SampleStream& train,
                 const SampleStream* val);

}  // namespace polyllama::cli
