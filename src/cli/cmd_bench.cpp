#include <algorithm>

#include <nlohmann/json.hpp>

#include "polyllama/backend/backend_factory.hpp"
#include "polyllama/backend/cpu/cpu_backend.hpp"
#ifdef POLYLLAMA_HAVE_CUDA
#include "polyllama/backend/cuda/cuda_backend.hpp"
#endif
#include "polyllama/core/log.hpp"
#include "polyllama/core/profiling_backend.hpp"
#include "polyllama/core/random.hpp"
#include "polyllama/model/llama.hpp"
#include "polyllama/optim/adamw.hpp"
#include "train_options.hpp"
#include "verbs.hpp"

namespace polyllama::cli {

namespace {

double median(std::vector<double> v) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

struct BenchOpts {
  ModelOptions model;
  int64_t seq = 256, batch = 4, steps = 5, warmup = 1, sgemm_n = 2048, gemm_n = 8192;
  int threads = 0;
  double peak_tflops = 0;
  std::string device = "cpu", attention = "own";
  bool json = false, profile = false, recompute = false;
  int64_t recompute_layers = -1;
};

std::vector<int32_t> random_ids(int64_t n, int64_t vocab) {
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    ids[static_cast<size_t>(i)] =
        static_cast<int32_t>(random_bits(7, 0, static_cast<uint64_t>(i)) % static_cast<uint64_t>(vocab));
  return ids;
}

// One GPU, bf16 mixed precision: steps timed with CUDA events after warm-up, MFU against the GPU's bf16 dense
// peak, and the cuBLASLt bf16 rate of an n^3 product (the practical ceiling) measured in the same run.
int bench_cuda(const BenchOpts& o, const ModelConfig& cfg) {
#ifdef POLYLLAMA_HAVE_CUDA
  std::string why;
  if (!cuda_available(&why)) fail_input("bench --device cuda: " + why);
  CudaBackend gpu(0);
  gpu.set_attention(parse_attention_impl(o.attention));
  ProfilingBackend prof(gpu);
  Backend& be = o.profile ? static_cast<Backend&>(prof) : gpu;
  const std::string name = gpu.device_name();
  const double peak = o.peak_tflops > 0 ? o.peak_tflops : bf16_peak_tflops(name);
  LlamaModel model(cfg, be, DType::f32, /*mixed_precision=*/true);
  model.init_random(1, 0.02);
  model.allocate_activations(o.batch, o.seq, o.recompute, o.recompute_layers);
  std::vector<ParamSlot> slots;
  for (size_t i = 0; i < model.params().size(); ++i)
    slots.push_back({model.params()[i].name, model.param(i), model.grad(i), model.params()[i].decay});
  AdamW opt(OptimConfig{}, be, slots);
  log_info(fmt("bench on %s (sm_%d, %zu MiB): %zu MiB weights (f32 + bf16), %zu MiB optimizer, %zu MiB activations",
               name.c_str(), gpu.compute_capability(), gpu.device_memory_bytes() >> 20, model.parameter_bytes() >> 20,
               opt.state_bytes() >> 20, model.activation_bytes() >> 20));
  const int64_t N = o.batch * o.seq;
  const std::vector<int32_t> ids = random_ids(N + 1, cfg.vocab_size);
  std::vector<double> times;
  double loss = 0;
  for (int64_t s = 0; s < o.warmup + o.steps; ++s) {
    gpu.timer_start();
    model.zero_grads();
    loss = model.forward_backward(ids.data(), ids.data() + 1, 1.0 / static_cast<double>(N), true) /
           static_cast<double>(N);
    opt.clip_grad_norm();
    opt.step(3e-4);
    model.refresh_working_weights();
    const double ms = gpu.timer_stop_ms();
    if (s >= o.warmup) times.push_back(ms / 1e3);
    if (s + 1 == o.warmup) prof.reset();
  }
  const double gemm = o.gemm_n > 0 ? gpu.measure_gemm_tflops(o.gemm_n, 5) : 0.0;
  const double step_s = median(times);
  const double tflops = cfg.train_flops(N, o.seq) / step_s / 1e12;
  const double mfu = peak > 0 ? 100.0 * tflops / peak : 0.0;
  log_info(fmt("device=\"%s\" params=%.2fM seq=%lld micro_batch=%lld step_s=%.4f tokens_per_s=%.0f tflops=%.1f "
               "mfu=%.1f%% (peak %.0f) gemm_bf16_tflops=%.1f of_gemm=%.1f%% loss=%.3f",
               name.c_str(), static_cast<double>(cfg.total_params()) / 1e6, static_cast<long long>(o.seq),
               static_cast<long long>(o.batch), step_s, static_cast<double>(N) / step_s, tflops, mfu, peak, gemm,
               gemm > 0 ? 100.0 * tflops / gemm : 0.0, loss));
  if (peak <= 0) log_warn("unknown GPU '" + name + "': pass --peak-tflops for the MFU");
  log_info(gpu.attention_summary());
  if (o.profile) log_info(prof.report(o.steps));
  print_json_summary(o.json, nlohmann::json{{"device", name},
                                            {"params", cfg.total_params()},
                                            {"seq_len", o.seq},
                                            {"micro_batch", o.batch},
                                            {"step_s", step_s},
                                            {"tokens_per_s", static_cast<double>(N) / step_s},
                                            {"tflops", tflops},
                                            {"peak_tflops", peak},
                                            {"mfu_percent", mfu},
                                            {"gemm_bf16_tflops", gemm},
                                            {"attention", o.attention},
                                            {"cudnn_attention_calls", gpu.cudnn_attention_calls(false) +
                                                                          gpu.cudnn_attention_calls(true)},
                                            {"loss", loss}}
                                 .dump());
  return 0;
#else
  (void)o;
  (void)cfg;
  make_backend("cuda");  // fails: "built without CUDA"
  return 1;
#endif
}

}  // namespace

RunFn add_bench(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "bench", "Time full training steps (forward, backward, AdamW) of a config on random tokens and compare with "
               "this machine's sgemm rate (CPU) or MFU and the cuBLASLt bf16 GEMM rate (GPU). Examples: polyllama bench "
               "--preset bench --seq-len 256 --micro-batch 4 --threads 2; polyllama bench --device cuda --preset "
               "bench-1b --seq-len 2048 --micro-batch 4");
  add_config_file(cmd);
  auto o = std::make_shared<BenchOpts>();
  o->model.add(cmd, "bench");
  cmd->add_option("--seq-len", o->seq, "tokens per sequence")->capture_default_str();
  cmd->add_option("--micro-batch", o->batch, "sequences per step")->capture_default_str();
  cmd->add_option("--steps", o->steps, "timed steps (the median is reported)")->capture_default_str();
  cmd->add_option("--warmup", o->warmup, "untimed steps first")->capture_default_str();
  cmd->add_option("--threads", o->threads, "CPU threads (default: OMP_NUM_THREADS or all cores)");
  cmd->add_option("--sgemm-size", o->sgemm_n,
                  "n of the n x n x n sgemm, timed after every step, that sets the reference rate (0: skip)")
      ->capture_default_str();
  cmd->add_option("--device", o->device, "where to run: cpu (f32) or cuda (one GPU, bf16 mixed precision)")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();
  cmd->add_option("--gemm-size", o->gemm_n,
                  "cuda: n of the bf16 n x n x n cuBLASLt product timed after the steps (the practical ceiling; 0: skip)")
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
  return [cmd, o]() {
    if (!cmd->parsed()) return 0;
    const ModelConfig cfg = o->model.resolve();
    if (o->steps <= 0 || o->warmup < 0 || o->seq <= 0 || o->batch <= 0)
      fail_input("bench: --steps, --seq-len and --micro-batch must be positive");
    if (o->device == "cuda") return bench_cuda(*o, cfg);
    if (o->attention != "own") fail_input("bench --attention " + o->attention + " needs --device cuda");
    CpuBackend cpu(o->threads);
    ProfilingBackend prof(cpu);
    Backend& be = o->profile ? static_cast<Backend&>(prof) : cpu;
    LlamaModel model(cfg, be, DType::f32);
    model.init_random(1, 0.02);
    model.allocate_activations(o->batch, o->seq, o->recompute, o->recompute_layers);
    std::vector<ParamSlot> slots;
    for (size_t i = 0; i < model.params().size(); ++i)
      slots.push_back({model.params()[i].name, model.param(i), model.grad(i), model.params()[i].decay});
    OptimConfig oc;
    AdamW opt(oc, be, slots);
    const int64_t N = o->batch * o->seq;
    const std::vector<int32_t> ids = random_ids(N + 1, cfg.vocab_size);
    // This machine's BLAS rate is measured between the timed steps, not once before or after, so that both
    // numbers see the same machine (on shared or throttled nodes the sgemm rate drifts by tens of percent).
    std::vector<double> times, sgemm_rates;
    double loss = 0;
    for (int64_t s = 0; s < o->warmup + o->steps; ++s) {
      const double t0 = now_seconds();
      model.zero_grads();
      loss = model.forward_backward(ids.data(), ids.data() + 1, 1.0 / static_cast<double>(N), true) /
             static_cast<double>(N);
      opt.clip_grad_norm();
      opt.step(3e-4);
      if (s >= o->warmup) {
        times.push_back(now_seconds() - t0);
        if (o->sgemm_n > 0) sgemm_rates.push_back(measure_sgemm_gflops(o->sgemm_n, 1));
      }
      if (s + 1 == o->warmup) prof.reset();
    }
    const double step_s = median(times);
    const double flops = cfg.train_flops(N, o->seq);
    const double gflops = flops / step_s / 1e9;
    const double sgemm = median(sgemm_rates);
    const double rss_mib = static_cast<double>(peak_rss_bytes()) / (1 << 20);
    log_info(fmt("params=%.2fM step_s=%.3f tokens_per_s=%.1f gflops=%.1f sgemm_gflops=%.1f of_sgemm=%.1f%% "
                 "peak_rss_mib=%.0f threads=%d blas=\"%s\" loss=%.3f",
                 static_cast<double>(cfg.total_params()) / 1e6, step_s, static_cast<double>(N) / step_s, gflops, sgemm,
                 sgemm > 0 ? 100.0 * gflops / sgemm : 0.0, rss_mib, cpu.threads(), blas_description().c_str(), loss));
    if (o->profile) log_info(prof.report(o->steps));
    print_json_summary(o->json, nlohmann::json{{"params", cfg.total_params()},
                                               {"step_s", step_s},
                                               {"tokens_per_s", static_cast<double>(N) / step_s},
                                               {"gflops", gflops},
                                               {"sgemm_gflops", sgemm},
                                               {"peak_rss_mib", rss_mib},
                                               {"threads", cpu.threads()},
                                               {"blas", blas_description()}}.dump());
    return 0;
  };
}

}  // namespace polyllama::cli
