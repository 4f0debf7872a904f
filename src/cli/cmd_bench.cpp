#include <algorithm>

#include <nlohmann/json.hpp>

#include "polyllama/backend/cpu/cpu_backend.hpp"
#include "polyllama/core/log.hpp"
#include "polyllama/core/profiling_backend.hpp"
#include "polyllama/core/random.hpp"
#include "polyllama/model/llama.hpp"
#include "polyllama/optim/adamw.hpp"
#include "verbs.hpp"

namespace polyllama::cli {

RunFn add_bench(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "bench", "Time full training steps (forward, backward, AdamW) of a config on random tokens and compare with "
               "this machine's sgemm rate. Example: polyllama bench --preset bench --seq-len 256 --micro-batch 4 "
               "--threads 2");
  add_config_file(cmd);
  struct Opts {
    ModelOptions model;
    int64_t seq = 256, batch = 4, steps = 5, warmup = 1, sgemm_n = 2048;
    int threads = 0;
    std::string device = "cpu";
    bool json = false, profile = false;
  };
  auto o = std::make_shared<Opts>();
  o->model.add(cmd, "bench");
  cmd->add_option("--seq-len", o->seq, "tokens per sequence")->capture_default_str();
  cmd->add_option("--micro-batch", o->batch, "sequences per step")->capture_default_str();
  cmd->add_option("--steps", o->steps, "timed steps (the median is reported)")->capture_default_str();
  cmd->add_option("--warmup", o->warmup, "untimed steps first")->capture_default_str();
  cmd->add_option("--threads", o->threads, "CPU threads (default: OMP_NUM_THREADS or all cores)");
  cmd->add_option("--sgemm-size", o->sgemm_n,
                  "n of the n x n x n sgemm, timed after every step, that sets the reference rate (0: skip)")
      ->capture_default_str();
  cmd->add_option("--device", o->device, "where to run")->check(CLI::IsMember({"cpu"}))->capture_default_str();
  cmd->add_flag("--json", o->json, "print a one-line JSON summary");
  cmd->add_flag("--profile", o->profile, "print the time per op of a timed step");
  return [cmd, o]() {
    if (!cmd->parsed()) return 0;
    const ModelConfig cfg = o->model.resolve();
    if (o->steps <= 0 || o->warmup < 0 || o->seq <= 0 || o->batch <= 0)
      fail_input("bench: --steps, --seq-len and --micro-batch must be positive");
    CpuBackend cpu(o->threads);
    ProfilingBackend prof(cpu);
    Backend& be = o->profile ? static_cast<Backend&>(prof) : cpu;
    LlamaModel model(cfg, be, DType::f32);
    model.init_random(1, 0.02);
    model.allocate_activations(o->batch, o->seq);
    std::vector<ParamSlot> slots;
    for (size_t i = 0; i < model.params().size(); ++i)
      slots.push_back({model.params()[i].name, model.param(i), model.grad(i), model.params()[i].decay});
    OptimConfig oc;
    AdamW opt(oc, be, slots);
    const int64_t N = o->batch * o->seq;
    std::vector<int32_t> ids(static_cast<size_t>(N + 1));
    for (int64_t i = 0; i <= N; ++i)
      ids[static_cast<size_t>(i)] = static_cast<int32_t>(random_bits(7, 0, static_cast<uint64_t>(i)) %
                                                         static_cast<uint64_t>(cfg.vocab_size));
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
    auto median = [](std::vector<double> v) {
      if (v.empty()) return 0.0;
      std::sort(v.begin(), v.end());
      return v[v.size() / 2];
    };
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
