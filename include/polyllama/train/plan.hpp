#pragma once
// The training planner: memory per rank, communication per step and time per step predicted for a model, a
// dp x tp layout (DESIGN.md section 3) and a device, from the same sizes LlamaModel, AdamW and the backends
// allocate. Pure arithmetic: nothing is allocated, so a 70B plan runs on a laptop. Every formula is in plan.cpp.
#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "polyllama/model/config.hpp"

namespace polyllama {

struct PlanConfig {
  ModelConfig model;
  int64_t tp = 1, dp = 1;
  int64_t micro_batch = 1;  // sequences per micro-batch per data-parallel rank
  int64_t seq = 2048;
  int64_t grad_accum = 1;       // micro-batches per optimizer step
  std::string device = "cuda";  // "cpu": f32 everywhere; "cuda": bf16 mixed precision
  int cpu_threads = 1;          // cpu: sizes the attention backward scratch (one T x T block per thread)
  bool recompute = false;       // keep only each layer's input; backward recomputes the layer
  int64_t recompute_layers = -1;  // the first N layers recompute (-1: all with recompute; >= 0 implies it)
  int64_t recomputed_layers() const { return model.recomputed_layers(recompute, recompute_layers); }
  // ZeRO-1 for the f32 master weights too (cuda): each dp rank keeps 1/dp of them and all-gathers bf16
  // weights after its update. Off: LlamaModel holds the f32 weights whole on every rank, as it does today.
  bool shard_master = false;
  int64_t mem_bytes = 0;       // per rank: the GPU's memory (cuda) or the RAM share of one process (cpu)
  int64_t reserve_bytes = -1;  // runtime outside the arenas; -1: the device's default (plan.cpp)
  double peak_tflops = 0;      // 0: the device's default
  double mfu = 0.4;            // fraction of peak the step reaches
  // Bus bandwidth in GB/s (nccl-tests' busbw: a ring collective's wire bytes per rank over its time) of the
  // tp group's links and of the dp group's; 0: the device's default (plan.cpp).
  double tp_gbps = 0, dp_gbps = 0;
  // Fails (exit 1) with the offending numbers: a tp that does not divide the heads, a bad size.
  void validate() const;
};

// Bytes one rank holds, by what holds them.
struct PlanMemory {
  int64_t weights = 0;       // f32 parameters (cpu: the ones the ops read; cuda: the master copy)
  int64_t weights_bf16 = 0;  // cuda: the working copy the ops read
  int64_t grads = 0;         // f32, whole: backward writes every gradient of the rank's tp shard
  int64_t optimizer = 0;     // AdamW exp_avg and exp_avg_sq, f32, 1/dp of them (ZeRO-1)
  int64_t activations = 0;   // kept from forward for backward (per layer, plus the final norm's)
  int64_t buffers = 0;       // LM-head logits chunk, backward scratch, attention scratch, rope tables, loss rows
  int64_t reserve = 0;       // the runtime itself: CUDA context and workspaces, or the process's baseline RSS
  int64_t total() const { return weights + weights_bf16 + grads + optimizer + activations + buffers + reserve; }
};

// One kind of collective in one step on one rank: `count` calls of `payload_bytes` each over `group` ranks.
// wire_bytes is what the rank sends in total with ring algorithms: all-reduce 2(p-1)/p x payload,
// reduce-scatter and all-gather (p-1)/p x payload (payload = the full, unsharded buffer).
struct PlanCollective {
  std::string what, kind, axis;  // axis: "tp" or "dp"
  int64_t group = 1, count = 0, payload_bytes = 0;
  double wire_bytes = 0;
};

struct Plan {
  PlanConfig cfg;
  int64_t params_total = 0;     // logical parameters of the model
  int64_t params_rank = 0;      // elements in one rank's parameter arena (tp shard, arena-aligned)
  int64_t tokens_per_step = 0;  // global: micro_batch * seq * grad_accum * dp
  PlanMemory mem;
  std::vector<PlanCollective> comms;
  double model_flops = 0;     // per step, all ranks: ModelConfig::train_flops
  double hardware_flops = 0;  // per step, all ranks: plus the recomputed forward
  double peak_tflops = 0;
  double tp_gbps = 0, dp_gbps = 0;
  double compute_seconds = 0;                       // hardware_flops / (world * peak * mfu)
  double tp_comm_seconds = 0, dp_comm_seconds = 0;  // wire bytes over the bus bandwidth of each axis
  // The step lies between compute alone (communication hidden) and compute plus all communication (none hidden).
  double step_seconds_min() const { return compute_seconds; }
  double step_seconds_max() const { return compute_seconds + tp_comm_seconds + dp_comm_seconds; }
  bool fits = false;
  double comm_wire_bytes() const;
  nlohmann::json to_json() const;
  std::string table() const;  // what a person reads
};

Plan make_plan(const PlanConfig& cfg);

// "80G", "80GiB", "81920M", "1.5T", "123456" (bytes). K/M/G/T are powers of 1024. Fails on anything else.
int64_t parse_mem_size(const std::string& s, const std::string& what);

}  // namespace polyllama
