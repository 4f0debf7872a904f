#include "polyllama/train/step_bench.hpp"

#include <algorithm>
#include <vector>

#include "polyllama/core/log.hpp"
#include "polyllama/core/random.hpp"
#include "polyllama/train/train_step.hpp"

namespace polyllama {

namespace {

double median(std::vector<double> v) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

StepBenchResult bench_train_steps(LlamaModel& model, const ParallelContext& par, const StepBenchConfig& cfg) {
  if (cfg.steps <= 0 || cfg.warmup < 0) fail_input("bench: --steps must be positive and --warmup >= 0");
  Backend& be = model.backend();
  const int64_t B = model.batch(), T = model.seq(), N = B * T, V = model.config().vocab_size;
  PL_CHECK(N > 0, "bench: allocate the model's activations first");
  ZeroAdamW opt(OptimConfig{}, be, zero_slots_of(model), par);
  // Random tokens, one sequence shifted by one: inputs ids[0, N), targets ids[1, N].
  std::vector<int32_t> ids(static_cast<size_t>(N + 1));
  for (int64_t i = 0; i <= N; ++i)
    ids[static_cast<size_t>(i)] =
        static_cast<int32_t>(random_bits(7, 0, static_cast<uint64_t>(i)) % static_cast<uint64_t>(V));
  const StepBatch batch{ids.data(), ids.data() + 1, nullptr, 1};

  StepBenchResult r;
  r.optimizer_bytes = opt.state_bytes();
  std::vector<double> times, rates;
  for (int64_t s = 0; s < cfg.warmup + cfg.steps; ++s) {
    be.synchronize();
    const double t0 = now_seconds();
    r.loss = train_step(model, opt, par, batch, 3e-4).loss;
    be.synchronize();
    if (s >= cfg.warmup) {
      times.push_back(now_seconds() - t0);
      if (cfg.matmul_n > 0) rates.push_back(be.measure_matmul_tflops(cfg.matmul_n, 1));
    }
    if (s + 1 == cfg.warmup && cfg.profile) cfg.profile->reset();
  }
  r.step_s = median(times);
  r.tokens_per_s = static_cast<double>(N) / r.step_s;
  r.tflops = model.config().train_flops(N, T) / r.step_s / 1e12;
  r.matmul_tflops = median(rates);
  return r;
}

}  // namespace polyllama
