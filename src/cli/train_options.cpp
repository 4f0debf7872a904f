#include "train_options.hpp"

#include <mpi.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <vector>

#include <nlohmann/json.hpp>

#include "polyllama/backend/backend_factory.hpp"
#include "polyllama/core/log.hpp"
#include "polyllama/train/run_dir.hpp"
#include "verbs.hpp"

namespace fs = std::filesystem;

namespace polyllama::cli {

const char* attention_option_help() {
  return "cuda: the attention kernels. own: the backend's flash-attention kernels (default). cudnn: cuDNN's fused "
         "attention for the bf16 causal case; calls it cannot take (packed sft rows with spans, f32) and shapes it "
         "refuses (logged once, with cuDNN's reason) run the own kernels, so the run never fails for it. The "
         "end of the run says which ran how often";
}

void add_train_options(CLI::App* cmd, TrainOptions& o) {
  TrainConfig& t = o.train;
  OptimConfig& op = o.optim;
  cmd->add_option("--run-dir", t.run_dir, "run directory: ckpt/, metrics.jsonl")->required();
  cmd->add_option("--init-from", o.init_from, "checkpoint to start from when RUN has none: a step directory, or a run directory (its ckpt/latest)");
  cmd->add_flag("--no-resume", o.no_resume, "refuse to continue an existing run directory");
  cmd->add_flag("--overwrite", o.overwrite,
                "with --init-from: start RUN over from it even though RUN holds checkpoints (refused otherwise); "
                "RUN's checkpoints and metrics.jsonl are deleted once the new run's model and data are loaded");
  cmd->add_option("--val-every", o.val_every, "every Nth document or example is held out for validation (0: none)")
      ->capture_default_str();
  cmd->add_option("--steps", t.steps, "optimizer steps in the whole run")->capture_default_str();
  cmd->add_option("--seq-len", t.seq_len, "tokens per sequence")->capture_default_str();
  cmd->add_option("--micro-batch", t.micro_batch, "sequences per forward/backward")->capture_default_str();
  cmd->add_option("--global-batch", t.global_batch,
                  "sequences per optimizer step over all data-parallel ranks (a multiple of micro-batch x dp; "
                  "default micro-batch x dp)");
  cmd->add_option("--log-interval", t.log_interval, "steps between progress lines")->capture_default_str();
  cmd->add_option("--eval-interval", t.eval_interval, "steps between validation losses (0: at the end)");
  cmd->add_option("--eval-batches", t.eval_batches, "micro-batches per validation (0: all)")->capture_default_str();
  cmd->add_option("--save-interval", t.save_interval, "steps between checkpoints (0: at the end)");
  cmd->add_option("--keep-last", t.keep_last,
                  "checkpoints to keep (0: all); the one ckpt/latest names, the newest known good, is never deleted");
  cmd->add_option("--save-at", t.save_at,
                  "steps that are saved besides --save-interval's and never deleted by --keep-last, e.g. the "
                  "pretraining budgets a study reads as checkpoints of one run (jobs/study)")
      ->delimiter(',')
      ->expected(1, -1);
  cmd->add_option("--max-bad-steps", t.max_bad_steps,
                  "steps in a row with a non-finite loss or gradient norm (each is skipped: no update) before the run "
                  "stops with exit 2, saving nothing, ckpt/latest the last good checkpoint")
      ->capture_default_str();
  cmd->add_option("--seed", t.seed, "data-order seed")->capture_default_str();
  cmd->add_option("--exit-before", o.exit_before_min,
                  "save a checkpoint and exit 3 (RUN/status.json: stopped) this many minutes before the job's end, "
                  "as soon as one more step and a save (the longest seen so far) might not fit; a requeued job resumes "
                  "it. The end comes from --job-end, else SLURM_JOB_END_TIME (Slurm 23.02 and later set it; under older Slurm "
                  "pass --job-end $(date -d $(squeue -h -j $SLURM_JOB_ID -o %e) +%s)); 0: off")
      ->capture_default_str()
      ->group("Job limits");
  cmd->add_option("--job-end", o.job_end,
                  "the job's end in seconds since the epoch, for --exit-before (overrides SLURM_JOB_END_TIME; under PBS, "
                  "which sets no such variable, pass the job's start + walltime)")
      ->group("Job limits");
  cmd->add_option("--lr", op.lr, "peak learning rate")->capture_default_str()->group("Optimizer");
  cmd->add_option("--min-lr", op.min_lr, "learning rate at the end of cosine decay")
      ->capture_default_str()
      ->group("Optimizer");
  cmd->add_option("--warmup-steps", op.warmup_steps, "linear warmup steps")->capture_default_str()->group("Optimizer");
  cmd->add_option("--weight-decay", op.weight_decay, "AdamW decoupled weight decay (not on norms)")
      ->capture_default_str()
      ->group("Optimizer");
  cmd->add_option("--beta1", op.beta1, "AdamW beta1")->capture_default_str()->group("Optimizer");
  cmd->add_option("--beta2", op.beta2, "AdamW beta2")->capture_default_str()->group("Optimizer");
  cmd->add_option("--adam-eps", op.eps, "AdamW epsilon")->capture_default_str()->group("Optimizer");
  cmd->add_option("--grad-clip", op.grad_clip, "max global gradient norm (0: off)")
      ->capture_default_str()
      ->group("Optimizer");
  add_threads_option(cmd, o.threads, "CPU threads (default: OMP_NUM_THREADS or all cores)");
  cmd->add_option("--device", o.device,
                  "cpu, or cuda (one GPU per rank, NCCL between ranks: bf16 activations and weights copy, f32 master "
                  "weights, gradients and optimizer state; checkpoints are the same f32 files either way)")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();
  cmd->add_option("--attention", o.attention, attention_option_help())
      ->check(CLI::IsMember({"own", "cudnn"}))
      ->capture_default_str();
  cmd->add_flag("--recompute", o.recompute,
                "activation recomputation: keep only each layer's input through the forward pass and recompute the "
                "layer in backward (one more forward per step; activation memory of one layer instead of all)");
  cmd->add_option("--recompute-layers", o.recompute_layers,
                  "with --recompute (implied): recompute only the first N layers, the others keep their activations; "
                  "memory traded for time layer by layer (default: every layer)");
  cmd->add_option("--tp", o.tp,
                  "tensor-parallel ranks (Megatron: heads, kv-heads, MLP features and vocabulary split over tp "
                  "consecutive ranks); the launched ranks / tp are data-parallel replicas with ZeRO-1 optimizer "
                  "state. Example: mpirun -np 4 polyllama pretrain --tp 2 ... (tp 2 x dp 2)")
      ->capture_default_str();
  cmd->add_flag("--json", o.json, "print a one-line JSON summary at the end");
}

void claim_run_dir(const std::string& run_dir) {
  int world_rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
  std::string why;
  if (world_rank == 0) {
    why = try_lock_run_dir(run_dir);
    if (why.empty())
      for (const std::string& line : remove_stale_tmp_dirs(run_dir + "/ckpt")) log_info("removed " + line);
  }
  int len = static_cast<int>(why.size());
  MPI_Bcast(&len, 1, MPI_INT, 0, MPI_COMM_WORLD);
  why.resize(static_cast<size_t>(len));
  MPI_Bcast(why.data(), len, MPI_CHAR, 0, MPI_COMM_WORLD);
  if (!why.empty()) fail_input(why);
}

std::string describe_checkpoints(const std::string& run_dir) {
  const std::vector<std::string> steps = list_step_dirs(run_dir + "/ckpt");
  if (steps.empty()) return "";
  std::string latest;
  std::ifstream(fs::path(run_dir) / "ckpt" / "latest") >> latest;
  std::string d = steps.size() == 1 ? "1 checkpoint, " + steps[0]
                                    : std::to_string(steps.size()) + " checkpoints, " + steps.front() + " to " +
                                          steps.back();
  return d + (latest.empty() ? " (no latest)" : " (latest: " + latest + ")");
}

void clear_run_dir(const std::string& run_dir, const std::string& keep_dir) {
  int world_rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
  if (world_rank == 0) {
    std::error_code ec;
    const fs::path root = fs::path(run_dir) / "ckpt";
    const fs::path keep = keep_dir.empty() ? fs::path() : fs::weakly_canonical(keep_dir, ec);
    std::vector<std::string> removed;
    for (const std::string& n : list_step_dirs(root.string())) {
      if (!keep.empty() && fs::weakly_canonical(root / n, ec) == keep) continue;
      fs::remove_all(root / n, ec);
      if (ec) fail_input("--overwrite: cannot remove " + (root / n).string() + ": " + ec.message());
      removed.push_back(n);
    }
    std::string latest;
    std::ifstream(root / "latest") >> latest;
    if (std::find(removed.begin(), removed.end(), latest) != removed.end() && fs::remove(root / "latest", ec))
      removed.push_back("latest");
    if (fs::remove(fs::path(run_dir) / "metrics.jsonl", ec)) removed.push_back("metrics.jsonl");
    if (!removed.empty()) {
      std::string list;
      for (const std::string& n : removed) list += (list.empty() ? "" : ", ") + n;
      log_info("--overwrite: starting " + run_dir + " over; removed " + list);
    }
  }
  MPI_Barrier(MPI_COMM_WORLD);
}

namespace {
std::string utc_time(double epoch) {
  const auto t = static_cast<std::time_t>(epoch);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}
}  // namespace

double resolve_job_end(const TrainOptions& o) {
  if (!std::isfinite(o.exit_before_min) || o.exit_before_min < 0)
    fail_input(fmt("--exit-before %g: expected minutes >= 0", o.exit_before_min));
  if (!std::isfinite(o.job_end) || o.job_end < 0)
    fail_input(fmt("--job-end %g: expected the job's end in seconds since the epoch (date +%%s)", o.job_end));
  if (o.exit_before_min == 0) return 0;  // the same on every rank: the command line is
  int world_rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
  double end = 0;
  std::string why;  // non-empty: every rank fails with it
  if (world_rank == 0) {
    std::string source = "--job-end";
    end = o.job_end;
    const char* slurm = std::getenv("SLURM_JOB_END_TIME");
    if (end == 0 && slurm && *slurm) {
      const std::string v = slurm;
      if (v.find_first_not_of("0123456789") != std::string::npos)
        why = "SLURM_JOB_END_TIME=" + v + ": expected the job's end in seconds since the epoch; pass --job-end to "
              "override it";
      else
        end = std::stod(v), source = "SLURM_JOB_END_TIME";
    }
    const auto now = static_cast<double>(std::time(nullptr));
    if (why.empty()) {
      if (end == 0) {
        log_warn(std::string("--exit-before ") + fmt("%g", o.exit_before_min) +
                 ": the job's end is unknown, so it is not used (no --job-end, no SLURM_JOB_END_TIME" +
                 (std::getenv("PBS_JOBID") ? "; PBS exports no end time: pass --job-end START+WALLTIME"
                                           : "") +
                 ")");
      } else if (end - o.exit_before_min * 60 <= now) {
        why = fmt("--exit-before %g minutes: the job ends at %s (%s), in %.0f s, so no step would fit; lower "
                  "--exit-before or ask the scheduler for more time",
                  o.exit_before_min, utc_time(end).c_str(), source.c_str(), end - now);
      } else {
        log_info(fmt("--exit-before %g minutes: the job ends at %s (%s), in %.0f s", o.exit_before_min,
                     utc_time(end).c_str(), source.c_str(), end - now));
      }
    }
  }
  int len = static_cast<int>(why.size());
  MPI_Bcast(&len, 1, MPI_INT, 0, MPI_COMM_WORLD);
  why.resize(static_cast<size_t>(len));
  MPI_Bcast(why.data(), len, MPI_CHAR, 0, MPI_COMM_WORLD);
  if (!why.empty()) fail_input(why);
  MPI_Bcast(&end, 1, MPI_DOUBLE, 0, MPI_COMM_WORLD);
  return end;
}

StartPoint find_start(const TrainOptions& o, const char* verb) {
  int world_size = 1, world_rank = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &world_size);
  MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
  (void)ParallelDims::from_tp(o.tp, world_size);  // fails early, naming the numbers
  if (world_size > 1 && o.device == "cuda" && !nccl_available())
    fail_input(std::string(verb) + " on " + std::to_string(world_size) + " ranks with --device cuda needs NCCL, "
               "and this polyllama was built without it (configure with NCCL beside the CUDA toolkit or "
               "-DNCCL_ROOT=PREFIX); one rank trains on one GPU without it");
  o.train.validate();
  o.optim.validate();
  const std::string& run = o.train.run_dir;
  if (o.overwrite && o.init_from.empty())
    fail_input("--overwrite starts " + run + " over from --init-from STEP_DIR, and no --init-from was given");
  claim_run_dir(run);
  StartPoint s;
  std::string note;
  const std::string latest = o.overwrite ? "" : find_resume_checkpoint(run + "/ckpt", world_rank == 0, &note);
  if (!note.empty() && world_rank == 0) log_warn(note);
  const std::string existing = describe_checkpoints(run);
  if (!latest.empty()) {
    const bool trained = !read_meta(latest + "/model.h5").trainer_json.empty();
    if (o.no_resume && trained)
      fail_input(run + " already holds a training checkpoint (" + latest +
                 "); remove --no-resume to continue it or choose a new --run-dir");
    if (!o.init_from.empty() && !trained)
      fail_input(run + " already holds " + existing + ", not trained yet (written by init or convert), so --init-from " +
                 o.init_from + " would be ignored; choose a new --run-dir for it, or leave --init-from out to train " +
                 latest);
    if (!o.init_from.empty())  // a requeued job repeats its command line: it continues, --init-from served its start
      log_info("resuming " + latest + "; --init-from " + o.init_from + " is only used while " + run +
               " has no checkpoint");
    s.dir = latest;
    s.resuming = true;
  } else if (!existing.empty() && !o.overwrite) {
    fail_input(run + " holds " + existing + " but none of them can be resumed (" + note + "); " +
               (o.init_from.empty() ? "" : "--init-from " + o.init_from + " would start a new run over them; ") +
               "choose a new --run-dir, or repair a checkpoint there");
  } else if (!o.init_from.empty()) {
    s.dir = resolve_step_dir(o.init_from, "--init-from");  // a step directory, or a run's ckpt/latest
  } else {
    fail_input(run + " has no checkpoint: run `polyllama init --run-dir " + run +
               "` first, or pass --init-from STEP_DIR");
  }
  if (o.overwrite && !existing.empty())
    log_info("--overwrite: " + run + " holds " + existing + "; they are removed once the model and data are loaded");
  s.meta = read_meta(s.dir + "/model.h5");
  s.cfg = ModelConfig::from_hf_json(nlohmann::json::parse(s.meta.config_json), s.dir + "/model.h5");
  s.tokenizer = std::make_unique<Tokenizer>(Tokenizer::from_bytes(s.meta.tokenizer_bytes, s.dir + "/model.h5"));
  if (o.train.seq_len > s.cfg.max_position_embeddings)
    fail_input("--seq-len " + std::to_string(o.train.seq_len) + " exceeds the model's max_position_embeddings " +
               std::to_string(s.cfg.max_position_embeddings));
  if (world_rank == 0) {
    int64_t step = 0;
    if (s.resuming && !s.meta.trainer_json.empty())
      step = nlohmann::json::parse(s.meta.trainer_json).value("step", int64_t{0});
    begin_active_run(run, step);
  }
  return s;
}

LoadedModel load_model(const TrainOptions& o, const StartPoint& start) {
  LoadedModel m;
  int world_size = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &world_size);
  m.parallel = std::make_unique<ParallelContext>(ParallelDims::from_tp(o.tp, world_size), MPI_COMM_WORLD);
  validate_tensor_parallel(start.cfg, o.tp);
  // One GPU per rank: the ranks on a node take its GPUs in order (with one visible GPU per rank, as
  // `srun --gpus-per-task=1` arranges, each takes its only one).
  const int gpus = o.device == "cuda" ? cuda_device_count() : 0;
  m.backend = make_backend(o.device, o.threads, gpus > 0 ? node_local_rank(MPI_COMM_WORLD) % gpus : 0);
  m.parallel->attach(*m.backend);  // NCCL for the tp and dp groups of a GPU job
  m.backend->set_attention(o.attention);
  // The GPU computes in bf16 with f32 master weights; a backend without bf16 ops (the CPU) in f32 throughout.
  m.model = std::make_unique<LlamaModel>(start.cfg, *m.backend, DType::f32,
                                         m.backend->supports(Op::matmul, DType::bf16), m.parallel.get());
  load_model_weights(start.dir + "/model.h5", *m.model, /*require_finite=*/true);
  m.model->allocate_activations(o.train.micro_batch, o.train.seq_len, o.recompute, o.recompute_layers);
  return m;
}

int run_training(const TrainOptions& o, const StartPoint& start, LlamaModel& model, const SampleStream& train,
                 const SampleStream* val) {
  const ModelConfig& cfg = start.cfg;
  std::string where = model.backend().description() + (model.mixed_precision() ? ", bf16 mixed precision" : "");
  if (const ParallelContext* p = model.parallel(); p && p->dims().tp * p->dims().dp > 1)
    where += fmt(" per rank | tp %d x dp %d", p->dims().tp, p->dims().dp);
  log_info(fmt("model: %.2fM params, %lld layers, hidden %lld, heads %lld/%lld kv, vocab %lld | %zu MiB weights, "
               "%zu MiB activations | %s",
               static_cast<double>(cfg.total_params()) / 1e6, static_cast<long long>(cfg.num_hidden_layers),
               static_cast<long long>(cfg.hidden_size), static_cast<long long>(cfg.num_attention_heads),
               static_cast<long long>(cfg.num_key_value_heads), static_cast<long long>(cfg.vocab_size),
               model.parameter_bytes() >> 20, model.activation_bytes() >> 20, where.c_str()));
  if (o.overwrite) clear_run_dir(o.train.run_dir, start.dir);
  TrainConfig tc = o.train;
  tc.exit_before_s = o.exit_before_min * 60;
  tc.job_end = resolve_job_end(o);
  Trainer trainer(tc, o.optim, model, train, val, start.meta);
  if (start.resuming) trainer.resume_from(start.dir);  // --init-from takes weights only: a new run starts at step 0
  install_stop_signal_handlers();
  const TrainResult r = trainer.run();
  if (!model.backend().attention_summary().empty()) log_info(model.backend().attention_summary());
  if (const ParallelContext* p = model.parallel(); p && p->dims().tp * p->dims().dp > 1)
    log_info("collectives (rank 0): " + p->traffic_summary());
  int world_rank = 0;  // one summary line per run, not per rank
  MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
  print_json_summary(o.json && world_rank == 0, nlohmann::json{{"step", trainer.state().step},
                                            {"consumed_tokens", trainer.state().consumed_tokens},
                                            {"loss", r.losses.empty() ? -1.0 : r.losses.back()},
                                            {"val_loss", r.last_val_loss},
                                            {"tokens_per_s", r.tokens_per_s},
                                            {"skipped_steps", r.skipped_steps},
                                            {"stopped_by_signal", r.stopped_by_signal},
                                            {"stopped_for_walltime", r.stopped_for_walltime}}
                                 .dump());
  if (world_rank == 0) {
    if (r.stopped_for_walltime) {
      end_active_run(RunState::stopped,
                     fmt("walltime: the job ends at %s and --exit-before is %g minutes; saved a checkpoint at step %lld "
                         "and stopped (exit 3); rerun the same command (requeue the job) to resume",
                         utc_time(tc.job_end).c_str(), o.exit_before_min,
                         static_cast<long long>(trainer.state().step)));
    } else if (r.stopped_by_signal) {
      const std::string sig = stop_signal_name();
      end_active_run(RunState::stopped,
                     (sig.empty() ? std::string("a signal to another rank") : sig) +
                         fmt(": saved a checkpoint at step %lld and stopped (exit 3); rerun the same command to resume",
                             static_cast<long long>(trainer.state().step)));
    } else {
      end_active_run(RunState::done, fmt("trained to step %lld", static_cast<long long>(trainer.state().step)));
    }
  }
  return r.stopped_by_signal || r.stopped_for_walltime ? static_cast<int>(kExitSignal) : 0;
}

}  // namespace polyllama::cli
