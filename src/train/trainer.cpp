#include "polyllama/train/trainer.hpp"
#include "polyllama/core/atomic_file.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "polyllama/core/log.hpp"
#include "polyllama/train/run_dir.hpp"
#include "polyllama/train/train_step.hpp"

namespace fs = std::filesystem;

namespace polyllama {

namespace {

volatile std::sig_atomic_t g_stop = 0;  // the signal's number
void on_signal(int sig) { g_stop = sig; }

// Wall-clock time against the job's end (now_seconds() is a steady clock, for durations only).
double epoch_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

const ParallelContext& context_of(const LlamaModel& m, std::unique_ptr<ParallelContext>& own) {
  if (m.parallel()) return *m.parallel();
  own = ParallelContext::single();
  return *own;
}
}  // namespace

void install_stop_signal_handlers() {
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  std::signal(SIGUSR1, on_signal);
}
bool stop_requested() { return g_stop != 0; }
std::string stop_signal_name() {
  switch (g_stop) {
    case 0: return "";
    case SIGINT: return "SIGINT";
    case SIGTERM: return "SIGTERM";
    case SIGUSR1: return "SIGUSR1";
    default: return "signal " + std::to_string(static_cast<int>(g_stop));
  }
}

void TrainConfig::validate() const {
  auto bad = [](const std::string& m) { fail_input("training config: " + m); };
  if (steps <= 0) bad("steps must be positive");
  if (seq_len <= 0 || micro_batch <= 0) bad("seq_len and micro_batch must be positive");
  if (global_batch < 0 || (global_batch > 0 && global_batch % micro_batch != 0))
    bad("global_batch " + std::to_string(global_batch) + " must be a multiple of micro_batch " +
        std::to_string(micro_batch));
  if (log_interval <= 0) bad("log_interval must be positive");
  if (eval_interval < 0 || save_interval < 0 || eval_batches < 0 || keep_last < 0) bad("intervals must be >= 0");
  for (int64_t s : save_at)
    if (s <= 0 || s > steps)
      bad("--save-at step " + std::to_string(s) + " is outside the run's steps 1.." + std::to_string(steps));
  if (max_bad_steps < 1) bad("max_bad_steps (--max-bad-steps) must be at least 1, got " + std::to_string(max_bad_steps));
  if (!std::isfinite(job_end) || job_end < 0) bad(fmt("job_end (--job-end) must be epoch seconds >= 0, got %g", job_end));
  if (!std::isfinite(exit_before_s) || exit_before_s < 0)
    bad(fmt("exit_before (--exit-before) must be a finite number of minutes >= 0, got %g", exit_before_s / 60));
}

std::vector<NamedTensor> optimizer_tensors(const ZeroAdamW& opt) {
  std::vector<NamedTensor> out;
  for (size_t i = 0; i < opt.slots().size(); ++i) {
    const ShardSpec s = opt.state_shard(i);
    out.push_back({"exp_avg." + opt.slots()[i].slot.name, opt.exp_avg(i), s});
    out.push_back({"exp_avg_sq." + opt.slots()[i].slot.name, opt.exp_avg_sq(i), s});
  }
  return out;
}

Trainer::Trainer(const TrainConfig& cfg, const OptimConfig& ocfg, LlamaModel& model, const SampleStream& train,
                 const SampleStream* val, CheckpointMeta base_meta)
    : cfg_(cfg), ocfg_(ocfg), model_(model), par_(context_of(model, own_par_)),
      opt_(ocfg, model.backend(), zero_slots_of(model), par_), train_(train), val_(val), meta_(std::move(base_meta)) {
  cfg_.validate();
  const int dp = par_.dims().dp;
  if (cfg_.global_rows(dp) % (cfg_.micro_batch * dp) != 0)
    fail_input("training config: global_batch " + std::to_string(cfg_.global_rows(dp)) +
               " must be a multiple of micro_batch * dp = " + std::to_string(cfg_.micro_batch) + " * " +
               std::to_string(dp));
  accum_ = cfg_.accum_steps(dp);
  walltime_.job_end = cfg_.job_end;
  walltime_.margin_s = cfg_.exit_before_s;
  log_info(fmt("optimizer state: %.1f MiB per rank (AdamW moments%s)", static_cast<double>(opt_.state_bytes()) / (1 << 20),
               dp > 1 ? fmt(", ZeRO-1: this rank's 1/%d of the rows", dp).c_str() : ""));
  for (const SampleStream* s : {&train, val})
    if (s && s->seq_len() != cfg_.seq_len)
      fail_input("the data's rows hold " + std::to_string(s->seq_len()) + " positions, the trainer's seq_len is " +
                 std::to_string(cfg_.seq_len));
  // Room for a whole step's micro-batches (see run()).
  const auto n = static_cast<size_t>(cfg_.micro_batch * accum_ * cfg_.seq_len);
  inputs_.resize(n);
  targets_.resize(n);
  doc_start_.resize(n);
}

void Trainer::resume_from(const std::string& step_dir) {
  const CheckpointMeta m = read_meta(step_dir + "/model.h5");
  if (m.trainer_json.empty()) return;  // a fresh init: nothing to restore
  const auto j = nlohmann::json::parse(m.trainer_json);
  st_.step = j.at("step").get<int64_t>();
  st_.consumed_samples = j.at("consumed_samples").get<int64_t>();
  st_.consumed_tokens = j.at("consumed_tokens").get<int64_t>();
  st_.skipped_steps = j.value("skipped_steps", int64_t{0});
  const int64_t saved_rows = j.contains("global_batch") ? j.at("global_batch").get<int64_t>()
                                                         : j.at("micro_batch").get<int64_t>() *
                                                               j.at("accum_steps").get<int64_t>();
  if (saved_rows != cfg_.global_rows(par_.dims().dp))
    log_warn("global batch changed on resume; the data order continues from consumed samples");
  HostMirror optim(model_.backend(), optimizer_tensors(opt_));
  read_tensor_file(step_dir + "/optim.h5", optim.host);
  if (const int64_t bad = first_non_finite(optim.host, par_.world_comm()); bad >= 0)
    fail_input(step_dir + "/optim.h5: tensor '" + optim.host[static_cast<size_t>(bad)].name +
               "' holds NaN or infinite values, which training cannot resume from");
  optim.push();
  if (par_.rank() == 0) truncate_metrics_after(st_.step);
  opt_.set_steps_done(j.at("optimizer_steps").get<int64_t>());
  log_info(fmt("resumed from %s at step %lld (%lld samples consumed)", step_dir.c_str(),
               static_cast<long long>(st_.step), static_cast<long long>(st_.consumed_samples)));
}

// A run killed after its last checkpoint logged steps it will now repeat: drop those lines so metrics.jsonl
// reads as one uninterrupted run.
void Trainer::truncate_metrics_after(int64_t step) {
  const fs::path path = fs::path(cfg_.run_dir) / "metrics.jsonl";
  std::ifstream in(path);
  if (!in) return;
  std::string line, kept;
  while (std::getline(in, line)) {
    const auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_object() && j.contains("step") && j["step"].get<int64_t>() > step) continue;
    if (j.is_discarded()) continue;  // a line cut short by the kill
    kept += line + "\n";
  }
  in.close();
  write_file_atomically(path.string(), kept);
}

std::string Trainer::save() {
  nlohmann::json j = {{"step", st_.step},
                      {"consumed_samples", st_.consumed_samples},
                      {"consumed_tokens", st_.consumed_tokens},
                      {"skipped_steps", st_.skipped_steps},
                      {"optimizer_steps", opt_.steps_done()},
                      {"micro_batch", cfg_.micro_batch},
                      {"accum_steps", accum_},
                      {"global_batch", cfg_.global_rows(par_.dims().dp)},
                      {"tp", par_.dims().tp},
                      {"dp", par_.dims().dp},
                      {"seq_len", cfg_.seq_len},
                      {"total_steps", cfg_.steps},
                      {"data_seed", cfg_.seed},
                      {"lr", ocfg_.lr},
                      {"min_lr", ocfg_.min_lr},
                      {"warmup_steps", ocfg_.warmup_steps}};
  CheckpointMeta meta = meta_;
  meta.trainer_json = j.dump();
  HostMirror weights(model_.backend(), model_tensors(model_)), optim(model_.backend(), optimizer_tensors(opt_));
  const double t0 = now_seconds();
  weights.pull();
  optim.pull();
  const std::string dir =
      save_checkpoint(cfg_.run_dir + "/ckpt", st_.step, weights.host, optim.host, meta, par_.world_comm());
  if (par_.rank() == 0) prune_checkpoints(cfg_.run_dir + "/ckpt", cfg_.keep_last, cfg_.save_at);
  par_.world().barrier();
  walltime_.record_save(now_seconds() - t0);
  log_info("saved checkpoint " + dir);
  return dir;
}

double Trainer::evaluate() {
  if (!val_) return -1;
  const int64_t B = cfg_.micro_batch, T = cfg_.seq_len;
  int64_t batches = val_->windows() / B;
  if (cfg_.eval_batches > 0) batches = std::min(batches, cfg_.eval_batches);
  if (batches == 0) fail_input("validation text has fewer than micro_batch windows of seq_len tokens");
  // Data-parallel ranks share the batches (tp ranks of a replica work on the same ones) and sum the results.
  double sum = 0;
  int64_t count = 0;
  const int dp = par_.dims().dp;
  for (int64_t b = par_.dp_rank(); b < batches; b += dp) {
    for (int64_t i = 0; i < B; ++i) {
      const auto off = static_cast<size_t>(i * T);
      val_->window_segments(b * B + i, &inputs_[off], &targets_[off], &doc_start_[off]);
    }
    sum += model_.forward_backward(inputs_.data(), targets_.data(), 0.0, false, doc_start_.data());
    count += counted_targets(targets_.data(), B * T);
  }
  double sc[2] = {sum, static_cast<double>(count)};
  par_.dp().all_reduce(sc, 2, DType::f64, ReduceOp::sum);
  return sc[0] / sc[1];
}

TrainResult Trainer::run() {
  TrainResult res;
  const int64_t B = cfg_.micro_batch, T = cfg_.seq_len, accum = accum_;
  const int dp = par_.dims().dp;
  const bool writer = par_.rank() == 0;  // metrics.jsonl has one writer
  if (writer) fs::create_directories(cfg_.run_dir);
  par_.world().barrier();
  std::ofstream metrics;
  if (writer) metrics.open(fs::path(cfg_.run_dir) / "metrics.jsonl", std::ios::app);
  const ModelConfig& mc = model_.config();
  const double flops_per_step = mc.train_flops(B * T * accum * dp, T);
  double t_last = now_seconds(), t_start = t_last;
  int64_t tokens_since = 0, steps_since = 0, tokens_run = 0;
  const int64_t first_step = st_.step;
  double loss_since = 0;

  auto eval_and_log = [&]() {
    const double vl = evaluate();
    if (vl < 0) return;
    res.last_val_loss = vl;
    log_info(fmt("step %6lld | val loss %.4f | val ppl %.2f", static_cast<long long>(st_.step), vl, std::exp(vl)));
    if (writer) metrics << nlohmann::json{{"step", st_.step}, {"val_loss", vl}}.dump() << "\n" << std::flush;
  };

  int64_t bad_in_row = 0, first_bad = 0, skipped_since = 0;
  bool save_due = false;  // a periodic save that fell on a skipped step waits for the next good one
  int64_t saved_step = -1;  // a stop right after a periodic save need not save the same step again
  while (st_.step < cfg_.steps) {
    // Every rank stops at the same step: a signal to any rank stops all; world rank 0's clock alone decides
    // --exit-before, since the ranks' clocks and timings differ.
    double stop[2] = {stop_requested() ? 1.0 : 0.0, writer && walltime_.should_stop(epoch_seconds()) ? 1.0 : 0.0};
    par_.world().all_reduce(stop, 2, DType::f64, ReduceOp::max);
    if (stop[0] > 0) {
      res.stopped_by_signal = true;
      break;
    }
    if (stop[1] > 0) {
      res.stopped_for_walltime = true;
      if (writer)
        log_info(fmt("step %lld: the job ends in %.0f s; with --exit-before %.1f minutes, one more step (up to %.1f s) "
                     "and a save (up to %.1f s) would not fit, so the run saves and stops",
                     static_cast<long long>(st_.step), walltime_.job_end - epoch_seconds(), walltime_.margin_s / 60,
                     walltime_.max_step_s, walltime_.save_estimate()));
      break;
    }
    const double t_step = now_seconds();
    // Data parallel: dp rank d reads samples consumed + d * rows + [0, rows): together the dp ranks read what one
    // process would for the same global batch.
    const int64_t rows = B * accum;
    const int64_t first = st_.consumed_samples + par_.dp_rank() * rows;
    for (int64_t i = 0; i < rows; ++i) {
      const auto off = static_cast<size_t>(i * T);
      train_.sample_segments(first + i, &inputs_[off], &targets_[off], &doc_start_[off]);
    }
    const double lr = lr_at(ocfg_, st_.step, cfg_.steps);
    const StepResult sr =
        train_step(model_, opt_, par_, {inputs_.data(), targets_.data(), doc_start_.data(), accum}, lr);
    const int64_t step_tokens = sr.tokens;
    const double gnorm = sr.grad_norm;
    // A skipped step still consumes its batch and advances the schedule (as Megatron's skipped iterations do):
    // the run stays the same function of (seed, step) whatever was skipped.
    st_.step += 1;
    st_.consumed_samples += rows * dp;
    st_.consumed_tokens += step_tokens;
    set_active_run_step(st_.step);
    const double loss = sr.loss;
    res.losses.push_back(loss);
    if (sr.skipped) {
      if (bad_in_row++ == 0) first_bad = st_.step;
      st_.skipped_steps += 1;
      res.skipped_steps += 1;
      skipped_since += 1;
      if (writer)  // every rank skips it; one says so
        log_warn(fmt("step %lld: loss %g, gradient norm %g: not finite, the update is skipped (%lld in a row, "
                     "%lld in this run; --max-bad-steps %lld in a row stop it)",
                     static_cast<long long>(st_.step), loss, gnorm, static_cast<long long>(bad_in_row),
                     static_cast<long long>(st_.skipped_steps), static_cast<long long>(cfg_.max_bad_steps)));
    } else {
      bad_in_row = 0;
      loss_since += loss;
    }
    // Throughput counts positions processed (what the hardware did); SFT trains on a share of them only.
    tokens_since += rows * T * dp;
    tokens_run += rows * T * dp;
    steps_since += 1;
    if (writer) {
      nlohmann::json line{{"step", st_.step}, {"loss", loss},   {"lr", lr},
                          {"grad_norm", gnorm}, {"skipped_steps", st_.skipped_steps}};
      if (sr.skipped) line["skipped"] = true;  // JSON writes a NaN or infinite loss or norm as null
      metrics << line.dump() << "\n";
    }
    if (bad_in_row >= cfg_.max_bad_steps) {
      if (writer) metrics << std::flush;
      std::string latest;
      std::ifstream(fs::path(cfg_.run_dir) / "ckpt" / "latest") >> latest;
      fail_runtime(fmt("%lld steps in a row (%lld to %lld) had a non-finite loss or gradient norm "
                       "(--max-bad-steps %lld); stopped without saving. ",
                       static_cast<long long>(bad_in_row), static_cast<long long>(first_bad),
                       static_cast<long long>(st_.step), static_cast<long long>(cfg_.max_bad_steps)) +
                       (latest.empty() ? "This run has saved no checkpoint yet"
                                       : cfg_.run_dir + "/ckpt/latest still names " + latest +
                                             ", the last good checkpoint, which a rerun resumes from") +
                       ". Lower --lr or check the data",
                   __FILE__, __LINE__);
    }

    if (st_.step % cfg_.log_interval == 0 || st_.step == cfg_.steps) {
      const double now = now_seconds(), dt = now - t_last;
      const double tps = static_cast<double>(tokens_since) / dt;
      const double eta = dt / static_cast<double>(steps_since) * static_cast<double>(cfg_.steps - st_.step);
      const int64_t good_since = steps_since - skipped_since;
      log_info(fmt("step %6lld/%lld | loss %.4f | lr %.3e | gnorm %.3f | %.0f tok/s | %.1f GFLOP/s | eta %.0fs%s",
                   static_cast<long long>(st_.step), static_cast<long long>(cfg_.steps),
                   good_since > 0 ? loss_since / static_cast<double>(good_since) : std::nan(""), lr, gnorm, tps,
                   flops_per_step * static_cast<double>(steps_since) / dt / 1e9, eta,
                   skipped_since > 0 ? fmt(" | %lld skipped", static_cast<long long>(skipped_since)).c_str() : ""));
      metrics << std::flush;
      t_last = now;
      tokens_since = steps_since = skipped_since = 0;
      loss_since = 0;
    }
    if (cfg_.eval_interval > 0 && st_.step % cfg_.eval_interval == 0 && st_.step < cfg_.steps) eval_and_log();
    walltime_.record_step(now_seconds() - t_step);
    if (cfg_.save_interval > 0 && st_.step % cfg_.save_interval == 0 && st_.step < cfg_.steps) save_due = true;
    const bool save_at_step = std::find(cfg_.save_at.begin(), cfg_.save_at.end(), st_.step) != cfg_.save_at.end();
    if (save_at_step) save_due = true;
    if (save_due && st_.step < cfg_.steps) {
      if (bad_in_row == 0) {
        save();
        saved_step = st_.step;
        save_due = false;
      } else if (writer && (save_at_step || (cfg_.save_interval > 0 && st_.step % cfg_.save_interval == 0))) {
        log_warn(fmt("step %lld: the checkpoint waits for the next step that is not skipped",
                     static_cast<long long>(st_.step)));
      }
    }
  }
  res.tokens_per_s = static_cast<double>(tokens_run) / std::max(1e-9, now_seconds() - t_start);
  if (!res.stopped_by_signal && !res.stopped_for_walltime) eval_and_log();
  if (st_.step > first_step && st_.step != saved_step) save();  // nothing new to save when the run was already complete
  return res;
}

}  // namespace polyllama
