// The planner's formulas, all in this file. The parameters and the optimizer state are not re-derived: they come
// from the lists and functions the code allocates from, so they cannot disagree with it:
//   parameters, gradients, bf16 working copy: llama_param_specs and tp_shard (src/model/llama_sharding.cpp), the
//     list LlamaModel::register_params allocates; validate_tensor_parallel refuses what the model refuses
//   optimizer state: ZeroAdamW::moment_elems and zero_row_range (src/optim/zero_adamw.cpp), ZeRO-1's rows
//   arena alignment: Arena::padded_elems (src/core/arena.cpp)
// The other sizes mirror an allocation in the code they name, so when that code changes the plan changes with it:
//   activations and scratch: LlamaModel::allocate_activations (src/model/llama_params.cpp, with and without
//     --recompute)
//   attention state: Backend::attention_saved_elems / attention_scratch_elems (backend/cpu, backend/cuda)
//   CUDA workspaces: CudaBackend::Context (src/backend/cuda/context.hpp)
// Tensor parallelism is Megatron's without sequence parallelism: q/k/v and gate/up split by output rows (heads,
// intermediate units), o and down by input columns, the embedding and LM head by vocabulary rows; RMSNorm
// weights and every (tokens, hidden) activation are replicated on each tp rank.
#include "polyllama/train/plan.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "polyllama/core/arena.hpp"
#include "polyllama/core/error.hpp"
#include "polyllama/model/llama_sharding.hpp"
#include "polyllama/optim/zero_adamw.hpp"

namespace polyllama {

namespace {

constexpr int64_t kMiB = int64_t{1} << 20;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// An Arena's layout: each tensor starts on a 16-element boundary (Arena::padded_elems).
struct ArenaSize {
  int64_t elems = 0;
  void add(int64_t n) { elems += Arena::padded_elems(n); }
  int64_t bytes(int64_t elem_size) const { return elems * elem_size; }
};

std::string str(int64_t v) { return std::to_string(v); }

}  // namespace

void PlanConfig::validate() const {
  model.validate();
  auto bad = [](const std::string& m) { fail_input("plan: " + m); };
  if (tp < 1 || dp < 1) bad("--tp and --dp must be at least 1, got tp=" + str(tp) + " dp=" + str(dp));
  if (micro_batch < 1 || seq < 1 || grad_accum < 1)
    bad("--micro-batch, --seq and --grad-accum must be at least 1, got " + str(micro_batch) + ", " + str(seq) + ", " +
        str(grad_accum));
  if (seq > model.max_position_embeddings)
    bad("--seq " + str(seq) + " exceeds the model's max_position_embeddings " + str(model.max_position_embeddings));
  (void)recomputed_layers();  // fails on a --recompute-layers beyond the model's layers
  if (device != "cpu" && device != "cuda") bad("--device must be cpu or cuda, got '" + device + "'");
  // Megatron splits whole heads: every tp rank needs the same number of query heads and of kv heads.
  if (model.num_attention_heads % tp != 0)
    bad("tp=" + str(tp) + " does not divide num_attention_heads=" + str(model.num_attention_heads) +
        " (tensor parallelism splits whole heads; pick a tp that divides it)");
  if (model.num_key_value_heads % tp != 0)
    bad("tp=" + str(tp) + " does not divide num_key_value_heads=" + str(model.num_key_value_heads) +
        " (each tp rank holds whole kv heads; pick a tp that divides it)");
  if (model.intermediate_size % tp != 0)
    bad("tp=" + str(tp) + " does not divide intermediate_size=" + str(model.intermediate_size));
  validate_tensor_parallel(model, static_cast<int>(tp));  // and everything else the model refuses (the vocabulary)
  if (device == "cpu" && cpu_threads < 1) bad("--threads must be at least 1");
  if (shard_master && device != "cuda")
    bad("--shard-master needs --device cuda: on the CPU the ops read the f32 weights themselves");
  if (mem_bytes <= 0) bad("--gpu-mem must be a positive size such as 80G, got " + str(mem_bytes) + " bytes");
  if (!(mfu > 0 && mfu <= 1)) bad("--mfu must lie in (0, 1], got " + std::to_string(mfu));
  if (peak_tflops < 0) bad("--gpu-tflops must be positive");
  if (tp_gbps < 0 || dp_gbps < 0) bad("--tp-gbps and --dp-gbps must be positive");
}

int64_t parse_mem_size(const std::string& s, const std::string& what) {
  auto bad = [&]() -> int64_t {
    fail_input(what + ": '" + s + "' is not a memory size; write it like 80G, 80GiB, 81920M or 1.5T (powers of 1024)");
  };
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(s, &used);
  } catch (const std::exception&) {
    return bad();
  }
  std::string unit = s.substr(used);
  if (unit.size() > 1 && (unit.substr(1) == "iB" || unit.substr(1) == "B")) unit = unit.substr(0, 1);
  double mult = 1;
  if (unit.empty() || unit == "B")
    mult = 1;
  else if (unit == "K" || unit == "k")
    mult = 1024.0;
  else if (unit == "M")
    mult = 1024.0 * 1024;
  else if (unit == "G")
    mult = 1024.0 * 1024 * 1024;
  else if (unit == "T")
    mult = 1024.0 * 1024 * 1024 * 1024;
  else
    return bad();
  if (!(v >= 0) || !std::isfinite(v) || v * mult > 9e18) return bad();
  return static_cast<int64_t>(v * mult);
}

Plan make_plan(const PlanConfig& in) {
  in.validate();
  Plan p;
  p.cfg = in;
  const ModelConfig& m = in.model;
  const bool cuda = in.device == "cuda";
  const int64_t C = m.hidden_size, L = m.num_hidden_layers, D = m.head_dim(), T = in.seq, B = in.micro_batch;
  const int64_t N = B * T;  // rows of one micro-batch
  const int64_t tp = in.tp, dp = in.dp;
  // One tp rank's share (validate() made sure every split divides, as the model requires).
  const int64_t Hl = m.num_attention_heads / tp, KVl = m.num_key_value_heads / tp, Fl = m.intermediate_size / tp;
  const int64_t Vl = m.vocab_size / tp;
  const int64_t act = cuda ? 2 : 4;  // activation and working-weight element: bf16 on cuda, f32 on cpu
  const int64_t f32 = 4;             // parameters, gradients, optimizer state and statistics: always f32

  // --- parameters of one rank: the model's own list, each tensor's tp shard (every tp rank holds the same
  // shapes); ZeRO-1 moments of the dp rank holding the most ---
  std::vector<std::vector<int64_t>> local;
  ArenaSize params;
  for (const ParamSpec& s : llama_param_specs(m)) {
    const ShardSpec shard = tp_shard(s.full_dims, s.split, static_cast<int>(tp), 0);
    local.push_back(shard.local_shape);
    params.add(shard.local_numel());
  }
  p.params_total = m.total_params();
  p.params_rank = params.elems;
  int64_t shard = 0;  // one moment's elements (and, with shard_master, the f32 weights') on the fullest dp rank
  for (int64_t d = 0; d < dp; ++d) {
    ArenaSize moments;
    for (const std::vector<int64_t>& shape : local)
      moments.add(ZeroAdamW::moment_elems(shape, static_cast<int>(dp), static_cast<int>(d)));
    shard = std::max(shard, moments.elems);
  }

  PlanMemory& mem = p.mem;
  mem.weights = (in.shard_master ? shard : params.elems) * f32;
  mem.weights_bf16 = cuda ? params.bytes(2) : 0;  // the working copy: whole, the ops read all of it
  mem.grads = params.bytes(f32);                  // whole: reduce-scattered after backward, not freed
  mem.optimizer = 2 * shard * f32;                // exp_avg + exp_avg_sq

  // --- activations kept for backward ---
  // Attention's saved state per layer: the probabilities (B, H, T, T) on the CPU, the log-sum-exp (B, H, T) on
  // CUDA (flash-style backward recomputes the probabilities).
  const int64_t saved = cuda ? B * Hl * T : B * Hl * T * T;
  ArenaSize acts, stats;       // acts_ in the activation dtype, stats_ in f32
  auto layer_inside = [&]() {  // what a layer computes from its input
    acts.add(N * C);           // ln1 (replicated)
    stats.add(N);              // rstd1
    acts.add(N * Hl * D);      // q
    acts.add(N * KVl * D);     // k
    acts.add(N * KVl * D);     // v
    stats.add(saved);          // attention saved state
    acts.add(N * Hl * D);      // att
    acts.add(N * C);           // res_mid (replicated)
    acts.add(N * C);           // ln2 (replicated)
    stats.add(N);              // rstd2
    acts.add(N * Fl);          // gate
    acts.add(N * Fl);          // up
    acts.add(N * Fl);          // act = silu(gate) * up
  };
  // With recompute one set serves every layer and only each layer's input, the residual stream, is kept.
  // With --recompute-layers R only layers [0, R) share it; the others keep theirs.
  const int64_t R = in.recomputed_layers();
  if (R > 0) layer_inside();
  for (int64_t l = 0; l < L; ++l) {
    acts.add(N * C);  // res_in
    if (l >= R) layer_inside();
  }
  acts.add(N * C);  // res_final
  acts.add(N * C);  // lnf
  stats.add(N);     // rstdf
  mem.activations = acts.bytes(act) + stats.bytes(f32);

  // --- buffers: live for the whole run, not per layer ---
  ArenaSize bufs, bufstats;
  bufstats.add(T * (D / 2));  // rope cos
  bufstats.add(T * (D / 2));  // rope sin
  // The LM head runs in row chunks of at most 16M logits (128M on cuda) of the rank's vocabulary slice.
  const int64_t budget = cuda ? int64_t{128} << 20 : int64_t{16} << 20;
  const int64_t max_rows = std::max<int64_t>(64, budget / Vl);
  const int64_t nchunks = ceil_div(N, max_rows), head_chunk = ceil_div(N, nchunks);
  bufs.add(head_chunk * Vl);  // logits chunk, overwritten by its gradient
  bufstats.add(N);            // loss per row
  if (tp > 1) bufstats.add(tp * head_chunk * 2);  // vocab-parallel cross-entropy: every rank's (lse, target) per row
  // Backward scratch shared by all layers: dres, dln, datt, dq, dk, dv, dact, dgate, dup.
  for (int64_t n : {N * C, N * C, N * Hl * D, N * Hl * D, N * KVl * D, N * KVl * D, N * Fl, N * Fl, N * Fl})
    bufs.add(n);
  if (cuda) {
    // Flash backward: delta (B, H, T) plus an f32 dq accumulator (B, T, H, D), each 256-byte aligned.
    const int64_t rows = B * Hl * T;
    const int64_t ws = ceil_div(rows * 4, 256) * 256 + ceil_div(rows * D * 4, 256) * 256;
    bufstats.add(ceil_div(ws, 4));
  } else {
    bufstats.add(static_cast<int64_t>(in.cpu_threads) * T * T);  // one dS block (T, T) per thread
  }
  mem.buffers = bufs.bytes(act) + bufstats.bytes(f32);
  if (cuda) mem.buffers += 64 * kMiB + 4 * N * 4;  // cuBLASLt workspace + reduction buffer; staged token ids

  // The runtime outside the arenas. cuda: the CUDA context with cuBLASLt's kernels (~0.5 GiB on an H100) and
  // NCCL's channel buffers; 1 GiB is a round allowance. cpu: the peak RSS of `polyllama bench` on the tiny
  // preset, 175-180 MiB for this project's build (MPI, HDF5, and the CUDA runtime and cuBLASLt it links; a
  // build without CUDA starts lower), plus OpenBLAS's packing buffer, 32 MiB per thread, which large GEMMs touch
  // in full (measured: tests/cli/test_plan.sh).
  mem.reserve = in.reserve_bytes >= 0 ? in.reserve_bytes
                                      : (cuda ? 1024 * kMiB : (176 + 32 * static_cast<int64_t>(in.cpu_threads)) * kMiB);

  // --- communication per optimizer step, per rank ---
  const int64_t micro = in.grad_accum;
  auto add = [&](const std::string& what, const std::string& kind, const std::string& axis, int64_t group,
                 int64_t count, int64_t payload) {
    if (group <= 1 || count == 0) return;
    const double pg = static_cast<double>(group);
    const double factor = kind == "all-reduce" ? 2.0 * (pg - 1) / pg : (pg - 1) / pg;
    p.comms.push_back(
        {what, kind, axis, group, count, payload, factor * static_cast<double>(payload) * static_cast<double>(count)});
  };
  // Forward: the row-parallel o_proj and down_proj outputs are partial sums over tp (2 per layer); recompute
  // repeats the o_proj one (the recomputed layer stops before down_proj). The embedding's rows are spread over
  // tp: its output is a partial sum too.
  add("o/down outputs (forward)", "all-reduce", "tp", tp, micro * (L * 2 + R), N * C * act);
  add("embedding output (forward)", "all-reduce", "tp", tp, micro, N * C * act);
  // Backward: the input gradients of the column-parallel q/k/v and gate/up and of the LM head are partial sums.
  add("q/k/v, gate/up input grads (backward)", "all-reduce", "tp", tp, micro * L * 2, N * C * act);
  add("LM head input grad (backward)", "all-reduce", "tp", tp, micro, N * C * act);
  // Vocab-parallel cross-entropy: every rank's (log-sum-exp, target logit) per row, all-gathered per chunk.
  add("cross-entropy (lse, target) per row", "all-gather", "tp", tp, micro * nchunks, tp * head_chunk * 2 * f32);
  // ZeRO-1: gradients reduce-scattered to the shard owners, updated weights all-gathered (bf16 when the master
  // is sharded, else the f32 weights themselves).
  add("gradients (ZeRO-1)", "reduce-scatter", "dp", dp, 1, params.bytes(f32));
  add("updated weights (ZeRO-1)", "all-gather", "dp", dp, 1, params.bytes(in.shard_master ? 2 : f32));

  // --- FLOPs and time ---
  p.tokens_per_step = N * micro * dp;
  p.model_flops = m.train_flops(p.tokens_per_step, T);
  p.hardware_flops = p.model_flops;
  if (R > 0) {  // one more forward of each recomputed layer up to (not including) down_proj, attention included
    const int64_t kvd = m.num_key_value_heads * D;
    const double layer_fwd = 2.0 * static_cast<double>(2 * C * C + 2 * C * kvd + 2 * C * m.intermediate_size) +
                             2.0 * static_cast<double>(T) * static_cast<double>(C);
    p.hardware_flops += static_cast<double>(R) * layer_fwd * static_cast<double>(p.tokens_per_step);
  }
  p.peak_tflops = in.peak_tflops > 0 ? in.peak_tflops : (cuda ? 989.0 : 0.2);
  p.compute_seconds = p.hardware_flops / (static_cast<double>(tp * dp) * p.peak_tflops * 1e12 * in.mfu);
  // Default bus bandwidths, round allowances: cuda tp inside a node over NVLink (nccl-tests all-reduce busbw on
  // H100 SXM is 350-480 GB/s), dp across nodes over one 200 Gb/s InfiniBand port per GPU; cpu: MPI through shared
  // memory. Megatron's tp all-reduces sit between the matmuls; dp's reduce-scatter can overlap the backward pass.
  p.tp_gbps = in.tp_gbps > 0 ? in.tp_gbps : (cuda ? 300.0 : 5.0);
  p.dp_gbps = in.dp_gbps > 0 ? in.dp_gbps : (cuda ? 25.0 : 5.0);
  for (const PlanCollective& c : p.comms)
    (c.axis == "tp" ? p.tp_comm_seconds : p.dp_comm_seconds) +=
        c.wire_bytes / ((c.axis == "tp" ? p.tp_gbps : p.dp_gbps) * 1e9);
  p.fits = mem.total() <= in.mem_bytes;
  return p;
}

double Plan::comm_wire_bytes() const {
  double s = 0;
  for (const PlanCollective& c : comms) s += c.wire_bytes;
  return s;
}

}  // namespace polyllama
