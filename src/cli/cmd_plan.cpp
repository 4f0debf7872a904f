// polyllama plan: memory, communication and time per rank predicted for a model, a layout and a device.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "polyllama/core/error.hpp"
#include "polyllama/train/plan.hpp"
#include "verbs.hpp"

namespace polyllama::cli {

namespace {

struct PlanOpts {
  ModelOptions model;
  std::string model_arg, mem = "80G", reserve;
  PlanConfig pc;
  bool json = false;
};

// --model: a preset name, the 7b / 13b shorthands (LLaMA-2's), or a Hugging Face config.json (or its folder).
ModelConfig resolve_model(PlanOpts& o) {
  if (o.model_arg.empty()) return o.model.resolve();
  std::string name = o.model_arg;
  if (name == "7b") name = "llama2-7b";
  if (name == "13b") name = "llama2-13b";
  namespace fs = std::filesystem;
  std::string path = name;
  if (fs::is_directory(path)) path += "/config.json";
  if (!fs::is_regular_file(path)) {
    o.model.preset = name;  // fails with the known presets when it is not one
    return o.model.resolve();
  }
  for (const CLI::Option* opt : o.model.explicit_opts)
    if (opt->count() > 0)
      fail_input("plan: --model " + o.model_arg + " takes every shape from the file; model flags such as " +
                 opt->get_name() + " apply to presets only (edit a copy of the config.json instead)");
  std::ifstream in(path);
  nlohmann::json j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object())
    fail_input(path + ": not a JSON object (expected a Hugging Face config.json)");
  return ModelConfig::from_hf_json(j, path);
}

}  // namespace

RunFn add_plan(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "plan",
      "Predict what one training rank needs for a model and a tp x dp layout: memory (weights, gradients, "
      "optimizer shard, activations, buffers) against the device's memory, bytes each collective moves per step, "
      "and FLOPs and time per step. Computes only, allocates nothing. Examples: polyllama plan --model 7b --tp 8 "
      "--dp 8 --micro-batch 1 --seq 4096 --gpu-mem 80G; polyllama plan --model path/to/config.json --tp 2 --json; "
      "polyllama plan --device cpu --preset bench --seq 256 --micro-batch 4 --threads 2 --gpu-mem 8G");
  add_config_file(cmd);
  auto o = std::make_shared<PlanOpts>();
  o->model.add(cmd, "llama2-7b");
  cmd->add_option("--model", o->model_arg,
                  "model: a preset name, 7b or 13b (LLaMA-2's), or a Hugging Face config.json (or its folder); "
                  "overrides --preset")
      ->group("Model");
  cmd->add_option("--tp", o->pc.tp, "tensor-parallel ranks (must divide the heads, kv heads and intermediate size)")
      ->capture_default_str();
  cmd->add_option("--dp", o->pc.dp, "data-parallel ranks (ZeRO-1 shards the optimizer state over them)")
      ->capture_default_str();
  cmd->add_option("--micro-batch", o->pc.micro_batch, "sequences per micro-batch per data-parallel rank")
      ->capture_default_str();
  cmd->add_option("--seq,--seq-len", o->pc.seq, "tokens per sequence")->capture_default_str();
  cmd->add_option("--grad-accum", o->pc.grad_accum, "micro-batches per optimizer step")->capture_default_str();
  cmd->add_option("--device", o->pc.device,
                  "cuda: bf16 mixed precision (f32 master, grads and AdamW state; bf16 working weights and "
                  "activations); cpu: f32 everything")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();
  cmd->add_option("--threads", o->pc.cpu_threads, "cpu: OpenMP threads per rank (sizes the attention scratch)")
      ->capture_default_str();
  cmd->add_flag("--recompute", o->pc.recompute,
                "activation recomputation: keep each layer's input only, recompute the layer in backward");
  cmd->add_option("--recompute-layers", o->pc.recompute_layers,
                  "with --recompute (implied): recompute only the first N layers, the others keep their activations; "
                  "memory traded for time layer by layer (default: every layer)");
  cmd->add_flag("--shard-master", o->pc.shard_master,
                "cuda: shard the f32 master weights over dp too (ZeRO-1 in full; all-gather bf16 weights)");
  cmd->add_option(
         "--gpu-mem,--mem", o->mem,
         "memory of one rank's device: 80G, 80GiB, 81920M (powers of 1024); on cpu the RAM one process may use")
      ->capture_default_str();
  cmd->add_option("--reserve", o->reserve,
                  "memory the runtime holds outside the model's buffers (default: 1G on cuda for the CUDA context "
                  "and NCCL; on cpu 176M, this build's measured process baseline, plus OpenBLAS's 32M per thread)");
  cmd->add_option(
      "--gpu-tflops", o->pc.peak_tflops,
      "peak dense TFLOP/s of one rank (default: 989 for cuda, H100/H200 bf16; 0.2 for cpu, two cores' sgemm)");
  cmd->add_option("--mfu", o->pc.mfu, "fraction of the peak a training step reaches")->capture_default_str();
  cmd->add_option("--tp-gbps", o->pc.tp_gbps,
                  "bus bandwidth (GB/s, as nccl-tests reports it) of the tensor-parallel links (default: 300 for "
                  "cuda, NVLink inside a node; 5 for cpu)");
  cmd->add_option("--dp-gbps", o->pc.dp_gbps,
                  "bus bandwidth (GB/s) between data-parallel ranks (default: 25 for cuda, one 200 Gb/s InfiniBand "
                  "port per GPU; 5 for cpu)");
  cmd->add_flag("--json", o->json, "print the plan as one JSON line instead of the table");
  return [cmd, o]() {
    if (!cmd->parsed()) return 0;
    o->pc.model = resolve_model(*o);
    o->pc.mem_bytes = parse_mem_size(o->mem, "--gpu-mem");
    o->pc.reserve_bytes = o->reserve.empty() ? -1 : parse_mem_size(o->reserve, "--reserve");
    const Plan plan = make_plan(o->pc);
    if (o->json)
      print_json_summary(true, plan.to_json().dump());
    else
      std::fputs(plan.table().c_str(), stdout);
    return 0;
  };
}

}  // namespace polyllama::cli
