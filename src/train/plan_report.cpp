// The plan as a table a person reads and as one JSON object (the numbers themselves are in plan.cpp).
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

#include "polyllama/core/log.hpp"
#include "polyllama/train/plan.hpp"

namespace polyllama {

namespace {

// The table's unit: GiB for plans of GiBs, MiB below (a CPU test config).
std::string in_unit(double bytes, bool gib) {
  return gib ? fmt("%9.2f GiB", bytes / (1024.0 * 1024 * 1024)) : fmt("%9.1f MiB", bytes / (1024.0 * 1024));
}

std::string human_bytes(double b) {
  if (b >= 1024.0 * 1024 * 1024) return fmt("%.2f GiB", b / (1024.0 * 1024 * 1024));
  if (b >= 1024.0 * 1024) return fmt("%.1f MiB", b / (1024.0 * 1024));
  if (b >= 1024.0) return fmt("%.1f KiB", b / 1024.0);
  return fmt("%.0f B", b);
}

}  // namespace

nlohmann::json Plan::to_json() const {
  const ModelConfig& m = cfg.model;
  nlohmann::json comm = nlohmann::json::array();
  for (const PlanCollective& c : comms)
    comm.push_back({{"what", c.what},
                    {"kind", c.kind},
                    {"axis", c.axis},
                    {"group", c.group},
                    {"count", c.count},
                    {"payload_bytes", c.payload_bytes},
                    {"wire_bytes", c.wire_bytes}});
  return {{"model", m.to_hf_json()},
          {"params", params_total},
          {"params_per_rank", params_rank},
          {"tp", cfg.tp},
          {"dp", cfg.dp},
          {"world", cfg.tp * cfg.dp},
          {"micro_batch", cfg.micro_batch},
          {"seq_len", cfg.seq},
          {"grad_accum", cfg.grad_accum},
          {"tokens_per_step", tokens_per_step},
          {"device", cfg.device},
          {"recompute", cfg.recomputed_layers() > 0},
          {"recompute_layers", cfg.recomputed_layers()},
          {"shard_master", cfg.shard_master},
          {"memory_bytes",
           {{"weights", mem.weights},
            {"weights_bf16", mem.weights_bf16},
            {"grads", mem.grads},
            {"optimizer", mem.optimizer},
            {"activations", mem.activations},
            {"buffers", mem.buffers},
            {"reserve", mem.reserve},
            {"total", mem.total()},
            {"limit", cfg.mem_bytes}}},
          {"fits", fits},
          {"comm", comm},
          {"comm_wire_bytes", comm_wire_bytes()},
          {"model_flops", model_flops},
          {"hardware_flops", hardware_flops},
          {"peak_tflops", peak_tflops},
          {"mfu", cfg.mfu},
          {"tp_gbps", tp_gbps},
          {"dp_gbps", dp_gbps},
          {"compute_seconds", compute_seconds},
          {"tp_comm_seconds", tp_comm_seconds},
          {"dp_comm_seconds", dp_comm_seconds},
          {"step_seconds_min", step_seconds_min()},
          {"step_seconds_max", step_seconds_max()},
          {"tokens_per_second_max", static_cast<double>(tokens_per_step) / step_seconds_min()},
          {"tokens_per_second_min", static_cast<double>(tokens_per_step) / step_seconds_max()}};
}

std::string Plan::table() const {
  const ModelConfig& m = cfg.model;
  const bool cuda = cfg.device == "cuda";
  std::string s;
  s += fmt("model: %.3fB params (hidden %lld, %lld layers, %lld heads / %lld kv, intermediate %lld, vocab %lld)\n",
         static_cast<double>(params_total) / 1e9, static_cast<long long>(m.hidden_size),
         static_cast<long long>(m.num_hidden_layers), static_cast<long long>(m.num_attention_heads),
         static_cast<long long>(m.num_key_value_heads), static_cast<long long>(m.intermediate_size),
         static_cast<long long>(m.vocab_size));
  const std::string recompute_note =
      cfg.recomputed_layers() > 0 ? fmt(", recompute %lld of %lld layers", static_cast<long long>(cfg.recomputed_layers()),
                                        static_cast<long long>(cfg.model.num_hidden_layers))
                                  : "";
  s +=
      fmt("layout: tp=%lld x dp=%lld = %lld ranks on %s (%s)%s; micro-batch %lld x seq %lld x grad-accum %lld x dp "
        "= %lld tokens per step\n",
        static_cast<long long>(cfg.tp), static_cast<long long>(cfg.dp), static_cast<long long>(cfg.tp * cfg.dp),
        cfg.device.c_str(), cuda ? "bf16 compute, f32 master" : "f32", recompute_note.c_str(),
        static_cast<long long>(cfg.micro_batch), static_cast<long long>(cfg.seq),
        static_cast<long long>(cfg.grad_accum), static_cast<long long>(tokens_per_step));
  s += fmt("\nmemory per rank (%lld parameters in this rank's tensor-parallel shard)\n",
         static_cast<long long>(params_rank));
  const bool gib = mem.total() >= (int64_t{4} << 30);
  auto row = [&](const char* what, int64_t bytes, const std::string& note) {
    s += fmt("  %-14s %s  %s\n", what, in_unit(static_cast<double>(bytes), gib).c_str(), note.c_str());
  };
  row("weights", mem.weights,
      cfg.shard_master ? fmt("f32 master, 1/%lld (ZeRO-1)", static_cast<long long>(cfg.dp))
                       : std::string(cuda ? "f32 master, whole" : "f32, whole"));
  if (cuda) row("weights bf16", mem.weights_bf16, "working copy the ops read");
  row("grads", mem.grads, "f32, whole");
  row("optimizer", mem.optimizer, fmt("AdamW m + v, f32, 1/%lld (ZeRO-1)", static_cast<long long>(cfg.dp)));
  row("activations", mem.activations,
      std::string(cfg.recomputed_layers() == cfg.model.num_hidden_layers ? "each layer's input + one layer's"
                  : cfg.recomputed_layers() > 0 ? "recomputed layers' inputs + one layer's, the rest whole"
                                                : "every layer's, kept for backward") +
          (cuda ? " (bf16; f32 statistics)" : " (f32, attention probabilities included)"));
  row("buffers", mem.buffers,
      "logits chunk, backward and attention scratch, rope tables" + std::string(cuda ? ", cuBLASLt workspace" : ""));
  row("reserve", mem.reserve,
      cuda ? "CUDA context, NCCL (allowance, --reserve)" : "process baseline and OpenBLAS buffers (--reserve)");
  s += "  ---------------------------\n";
  row("total", mem.total(),
      fmt("of %s: %s", human_bytes(static_cast<double>(cfg.mem_bytes)).c_str(), fits ? "FITS" : "DOES NOT FIT"));
  if (!fits)
    s += fmt("  over by %s: raise --tp (or --dp, for the optimizer shard), lower --micro-batch%s%s\n",
           human_bytes(static_cast<double>(mem.total() - cfg.mem_bytes)).c_str(),
           cfg.recomputed_layers() == cfg.model.num_hidden_layers ? "" : ", add --recompute (or more --recompute-layers)",
           cuda && !cfg.shard_master ? ", add --shard-master" : "");

  s += "\ncommunication per step per rank (ring algorithms)\n";
  if (comms.empty()) s += "  none (one rank)\n";
  for (const PlanCollective& c : comms)
    s += fmt("  %-2s %-14s x%-6lld %10s each  %10s sent  %s\n", c.axis.c_str(), c.kind.c_str(),
           static_cast<long long>(c.count), human_bytes(static_cast<double>(c.payload_bytes)).c_str(),
           human_bytes(c.wire_bytes).c_str(), c.what.c_str());
  if (!comms.empty()) s += fmt("  total sent: %s\n", human_bytes(comm_wire_bytes()).c_str());

  s += fmt("\ncompute per step: %.3g model FLOPs", model_flops);
  if (hardware_flops > model_flops) s += fmt(" (%.3g with the recomputed forward)", hardware_flops);
  s +=
      fmt("\ntime per step: compute %.3f s (%.0f%% of %.4g TFLOP/s per rank); communication %.3f s over tp (%.0f GB/s), "
        "%.3f s over dp (%.0f GB/s)\n",
        compute_seconds, 100.0 * cfg.mfu, peak_tflops, tp_comm_seconds, tp_gbps, dp_comm_seconds, dp_gbps);
  s += fmt("  %.3f s (%.0f tokens/s) with communication hidden, %.3f s (%.0f tokens/s) with none hidden\n",
         step_seconds_min(), static_cast<double>(tokens_per_step) / step_seconds_min(), step_seconds_max(),
         static_cast<double>(tokens_per_step) / step_seconds_max());
  return s;
}

}  // namespace polyllama
