// `polyllama bench`: the training step a run takes, timed on random tokens (train/step_bench.hpp), on the CPU or one
// GPU, beside this machine's dense matmul rate.
#include <nlohmann/json.hpp>

#include "polyllama/backend/backend_factory.hpp"
#include "polyllama/backend/cpu/cpu_backend.hpp"
#include "polyllama/core/log.hpp"
#include "polyllama/core/profiling_backend.hpp"
#include "polyllama/model/llama.hpp"
#include "polyllama/train/step_bench.hpp"
#include "train_options.hpp"
#include "verbs.hpp"

namespace polyllama::cli {

namespace {

struct BenchOpts {
  ModelOptions model;
  int64_t seq = 256, batch = 4, steps = 5, warmup = 1, sgemm_n = 2048, gemm_n = 8192;
  int threads = 0;
  double peak_tflops = 0;
  std::string device = "cpu", attention = "own";
  bool json = false, profile = false, recompute = false;
  int64_t recompute_layers = -1;
};

int run_bench(const BenchOpts& o) {
  const ModelConfig cfg = o.model.resolve();
  if (o.steps <= 0 || o.warmup < 0 || o.seq <= 0 || o.batch <= 0)
    fail_input("bench: --steps, --seq-len and --micro-batch must be positive");
  const bool cuda = o.device == "cuda";
  std::unique_ptr<Backend> device = make_backend(o.device, o.threads);
  device->set_attention(o.attention);
  ProfilingBackend prof(*device);
  Backend& be = o.profile ? static_cast<Backend&>(prof) : *device;
  const auto par = ParallelContext::single();
  LlamaModel model(cfg, be, DType::f32, /*mixed_precision=*/be.supports(Op::matmul, DType::bf16));
  model.init_random(1, 0.02);
  model.allocate_activations(o.batch, o.seq, o.recompute, o.recompute_layers);
  StepBenchConfig bc;
  bc.steps = o.steps, bc.warmup = o.warmup, bc.matmul_n = cuda ? o.gemm_n : o.sgemm_n;
  bc.profile = o.profile ? &prof : nullptr;
  const StepBenchResult r = bench_train_steps(model, *par, bc);

  const std::string desc = be.description();
  const double peak = o.peak_tflops > 0 ? o.peak_tflops : be.peak_tflops();
  const double mfu = peak > 0 ? 100.0 * r.tflops / peak : 0.0;
  const double rss_mib = static_cast<double>(peak_rss_bytes()) / (1 << 20);
  // The ceiling's name as the two devices report it: fp32 sgemm in GFLOP/s, the bf16 GEMM in TFLOP/s.
  const char* ceiling = cuda ? "gemm_bf16_tflops" : "sgemm_gflops";
  const double ceiling_value = cuda ? r.matmul_tflops : r.matmul_tflops * 1e3;
  log_info(fmt("device=\"%s\" params=%.2fM seq=%lld micro_batch=%lld | %zu MiB weights, %zu MiB optimizer, %zu MiB "
               "activations",
               desc.c_str(), static_cast<double>(cfg.total_params()) / 1e6, static_cast<long long>(o.seq),
               static_cast<long long>(o.batch), model.parameter_bytes() >> 20, r.optimizer_bytes >> 20,
               model.activation_bytes() >> 20));
  const std::string mfu_text = peak > 0 ? fmt(" mfu=%.1f%% (peak %.0f)", mfu, peak) : "";
  log_info(fmt("step_s=%.4f tokens_per_s=%.1f gflops=%.1f %s=%.1f of_matmul=%.1f%%%s peak_rss_mib=%.0f loss=%.3f",
               r.step_s, r.tokens_per_s, r.tflops * 1e3, ceiling, ceiling_value,
               r.matmul_tflops > 0 ? 100.0 * r.tflops / r.matmul_tflops : 0.0, mfu_text.c_str(), rss_mib, r.loss));
  if (cuda && peak <= 0) log_warn("unknown GPU '" + desc + "': pass --peak-tflops for the MFU");
  if (!be.attention_summary().empty()) log_info(be.attention_summary());
  if (o.profile) log_info(prof.report(o.steps));
  nlohmann::json j = {{"device", desc},
                      {"params", cfg.total_params()},
                      {"seq_len", o.seq},
                      {"micro_batch", o.batch},
                      {"step_s", r.step_s},
                      {"tokens_per_s", r.tokens_per_s},
                      {"gflops", r.tflops * 1e3},
                      {"tflops", r.tflops},
                      {"peak_tflops", peak},
                      {"mfu_percent", mfu},
                      {ceiling, ceiling_value},
                      {"optimizer_mib", static_cast<double>(r.optimizer_bytes) / (1 << 20)},
                      {"peak_rss_mib", rss_mib},
                      {"attention", o.attention},
                      {"cudnn_attention_calls", be.fused_attention_calls()},
                      {"loss", r.loss}};
  if (!cuda) j["blas"] = blas_description();
  print_json_summary(o.json, j.dump());
  return 0;
}

}  // namespace

RunFn add_bench(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "bench", "Time the training step a run takes (forward, backward, the ZeRO-1 AdamW update) of a config on random "
               "tokens, beside this machine's sgemm rate (CPU) or MFU and the cuBLASLt bf16 GEMM rate (GPU). Examples: "
               "polyllama bench --preset bench --seq-len 256 --micro-batch 4 --threads 2; polyllama bench --device "
               "cuda --preset bench-1b --seq-len 2048 --micro-batch 4");
  add_config_file(cmd);
  auto o = std::make_shared<BenchOpts>();
  o->model.add(cmd, "bench");
  cmd->add_option("--seq-len", o->seq, "tokens per sequence")->capture_default_str();
  cmd->add_option("--micro-batch", o->batch, "sequences per step")->capture_default_str();
  cmd->add_option("--steps", o->steps, "timed steps (the median is reported)")->capture_default_str();
  cmd->add_option("--warmup", o->warmup, "untimed steps first")->capture_default_str();
  add_threads_option(cmd, o->threads, "CPU threads (default: OMP_NUM_THREADS or all cores)");
  cmd->add_option("--sgemm-size", o->sgemm_n,
                  "cpu: n of the n x n x n sgemm, timed after every step, that sets the reference rate (0: skip)")
      ->capture_default_str();
  cmd->add_option("--device", o->device, "where to run: cpu (f32) or cuda (one GPU, bf16 mixed precision)")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();
  cmd->add_option("--gemm-size", o->gemm_n,
                  "cuda: n of the bf16 n x n x n cuBLASLt product timed after every step (the practical ceiling; 0: "
                  "skip)")
      ->capture_default_str();
  cmd->add_option("--peak-tflops", o->peak_tflops,
                  "cuda: the GPU's dense bf16 peak for the MFU (default: by device name; H100 SXM/H200 989, H100 "
                  "PCIe 756, A100 312)");
  cmd->add_option("--attention", o->attention, attention_option_help())
      ->check(CLI::IsMember({"own", "cudnn"}))
      ->capture_default_str();
  cmd->add_flag("--json", o->json, "print a one-line JSON summary");
  cmd->add_flag("--recompute", o->recompute, "activation recomputation (see pretrain --help); MFU still counts "
                                             "the model FLOPs only");
  cmd->add_option("--recompute-layers", o->recompute_layers,
                  "with --recompute (implied): recompute only the first N layers, the others keep their activations; "
                  "memory traded for time layer by layer (default: every layer)");
  cmd->add_flag("--profile", o->profile, "print the time per op of a timed step");
  return [cmd, o]() { return cmd->parsed() ? run_bench(*o) : 0; };
}

}  // namespace polyllama::cli
