// The planner against values worked out by hand for LLaMA-2-7B (hidden 4096, intermediate 11008, 32 layers,
// 32 heads of 128, vocabulary 32000), and its refusals. The sizes are exact integers: every tensor of this model
// is a multiple of 16 elements, so the arena's alignment adds nothing and equality is the right test.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "polyllama/backend/cpu/cpu_backend.hpp"
#include "polyllama/core/error.hpp"
#include "polyllama/model/llama.hpp"
#include "polyllama/train/plan.hpp"
#include "polyllama/optim/zero_adamw.hpp"
#include "polyllama/train/train_step.hpp"

namespace polyllama {
namespace {

PlanConfig llama2_7b(int64_t tp, int64_t dp) {
  PlanConfig c;
  c.model = ModelConfig::preset("llama2-7b");
  c.tp = tp, c.dp = dp, c.micro_batch = 1, c.seq = 4096, c.device = "cuda";
  c.mem_bytes = int64_t{80} << 30;
  return c;
}

TEST(Plan, Llama2_7bOneRank) {
  const Plan p = make_plan(llama2_7b(1, 1));
  // 32 layers x (4 C^2 attention + 3 C F MLP + 2 C norms) + 2 V C (embedding, head) + C (final norm).
  const int64_t per_layer = 4LL * 4096 * 4096 + 3LL * 4096 * 11008 + 2 * 4096;
  ASSERT_EQ(per_layer, 202383360);
  const int64_t params = 32 * per_layer + 2LL * 32000 * 4096 + 4096;
  ASSERT_EQ(params, 6738415616);  // the 6.74B of the model card
  EXPECT_EQ(p.params_total, params);
  EXPECT_EQ(p.params_rank, params);
  EXPECT_EQ(p.mem.weights, 4 * params);       // f32 master
  EXPECT_EQ(p.mem.weights_bf16, 2 * params);  // bf16 working copy
  EXPECT_EQ(p.mem.grads, 4 * params);
  EXPECT_EQ(p.mem.optimizer, 8 * params);  // m and v, unsharded at dp = 1
  EXPECT_TRUE(p.comms.empty());
  EXPECT_FALSE(p.fits);  // 16 bytes per parameter alone are 100 GiB
}

TEST(Plan, Llama2_7bTp8Dp8) {
  const Plan p = make_plan(llama2_7b(8, 8));
  // tp = 8: q, k, v, o split to 512 of 4096 rows/columns, gate, up, down to 1376 of 11008, the embedding and
  // head to 4000 of 32000 rows; the norms (2 per layer and the final one) stay whole.
  const int64_t per_layer = 4LL * 512 * 4096 + 3LL * 1376 * 4096 + 2 * 4096;
  const int64_t local = 32 * per_layer + 2LL * 4000 * 4096 + 4096;
  ASSERT_EQ(local, 842534912);
  EXPECT_EQ(p.params_rank, local);
  EXPECT_EQ(p.mem.weights, 4 * local);
  EXPECT_EQ(p.mem.grads, 4 * local);
  // ZeRO-1 over dp = 8: each rank's AdamW m and v cover 1/8 of its tp shard (842534912 / 8 = 105316864, a
  // multiple of 16).
  EXPECT_EQ(p.mem.optimizer, 2 * 4 * 105316864LL);

  // Activations, bf16 (B = 1, T = 4096, N = 4096 rows): per layer the replicated res_in, ln1, res_mid, ln2
  // (N x 4096 each), the split q, k, v, att (N x 512) and gate, up, act (N x 1376); f32 statistics: two rstd rows
  // (N) and the log-sum-exp (heads 4 x N). Plus res_final and lnf (N x 4096, bf16) and rstdf (N, f32).
  const int64_t N = 4096;
  const int64_t layer_bf16 = 4 * N * 4096 + 4 * N * 512 + 3 * N * 1376;
  const int64_t layer_f32 = 2 * N + 4 * N;
  const int64_t acts = 32 * (2 * layer_bf16 + 4 * layer_f32) + 2 * (2 * N * 4096) + 4 * N;
  EXPECT_EQ(p.mem.activations, acts);
  EXPECT_NEAR(static_cast<double>(acts) / (1 << 30), 5.573, 1e-3);

  // 2 forward + 2 backward all-reduces of (N, C) bf16 per layer, plus the embedding's and the LM head's.
  int64_t tp_allreduce_bytes = 0;
  for (const PlanCollective& c : p.comms)
    if (c.axis == "tp" && c.payload_bytes == N * 4096 * 2) tp_allreduce_bytes += c.count * c.payload_bytes;
  EXPECT_EQ(tp_allreduce_bytes, (4 * 32 + 2) * N * 4096 * 2);
  // dp: the f32 gradients reduce-scattered and the f32 weights all-gathered, each (dp-1)/dp of 4 x local.
  for (const PlanCollective& c : p.comms)
    if (c.axis == "dp") {
      EXPECT_EQ(c.payload_bytes, 4 * local);
      EXPECT_DOUBLE_EQ(c.wire_bytes, 7.0 / 8.0 * 4.0 * static_cast<double>(local));
    }

  // 6 N_matmul + 6 L T C per token, 8 dp ranks x 4096 tokens, over 64 ranks at 989 TFLOP/s x 0.4.
  const double matmul = static_cast<double>(32 * (4LL * 4096 * 4096 + 3LL * 4096 * 11008) + 32000LL * 4096);
  const double flops = (6.0 * matmul + 6.0 * 32 * 4096 * 4096) * 8 * 4096;
  EXPECT_DOUBLE_EQ(p.model_flops, flops);
  EXPECT_NEAR(p.compute_seconds, flops / (64 * 989e12 * 0.4), 1e-12);
  // Communication at the default bus bandwidths: tp's wire bytes (2 x 7/8 of each all-reduce's payload, 7/8 of
  // the cross-entropy's all-gather of 8 ranks' (lse, target) f32 pairs per row) over 300 GB/s, dp's (7/8 of the
  // f32 gradients and of the f32 weights) over 25 GB/s.
  const double tp_wire = 2.0 * 7.0 / 8.0 * (130.0 * N * 4096 * 2) + 7.0 / 8.0 * (8.0 * N * 2 * 4);
  EXPECT_NEAR(p.tp_comm_seconds, tp_wire / 300e9, 1e-12);
  EXPECT_NEAR(p.dp_comm_seconds, 2 * 7.0 / 8.0 * 4.0 * static_cast<double>(local) / 25e9, 1e-12);
  EXPECT_DOUBLE_EQ(p.step_seconds_max(), p.compute_seconds + p.tp_comm_seconds + p.dp_comm_seconds);
  EXPECT_TRUE(p.fits);
}

TEST(Plan, ShardedMasterAndRecompute) {
  PlanConfig c = llama2_7b(8, 8);
  c.shard_master = true;
  c.recompute = true;
  const Plan p = make_plan(c);
  EXPECT_EQ(p.mem.weights, 4 * 105316864LL);  // 1/8 of the f32 master
  // Recompute keeps res_in per layer plus one layer's inside (everything but res_in).
  const int64_t N = 4096;
  const int64_t inside = 2 * (3 * N * 4096 + 4 * N * 512 + 3 * N * 1376) + 4 * (2 * N + 4 * N);
  EXPECT_EQ(p.mem.activations, 32 * 2 * N * 4096 + inside + 2 * (2 * N * 4096) + 4 * N);
  EXPECT_GT(p.hardware_flops, p.model_flops);
  EXPECT_LT(p.hardware_flops, p.model_flops * 4.0 / 3.0);  // at most one more forward
}

TEST(Plan, CpuKeepsAttentionProbabilities) {
  PlanConfig c;
  c.model = ModelConfig::preset("tiny");  // C 64, F 176, 2 layers, 4 heads / 2 kv of 16, vocab 512
  c.device = "cpu", c.micro_batch = 2, c.seq = 32, c.cpu_threads = 3, c.mem_bytes = 1 << 30, c.reserve_bytes = 0;
  const Plan p = make_plan(c);
  const int64_t N = 64;
  // f32: per layer 4 N x C, 2 N x 64 (q, att), 2 N x 32 (k, v), 3 N x 176; rstd 2N; probabilities B H T T.
  const int64_t layer = 4 * N * 64 + 2 * N * 64 + 2 * N * 32 + 3 * N * 176 + 2 * N + 2 * 4 * 32 * 32;
  EXPECT_EQ(p.mem.activations, 4 * (2 * layer + 2 * N * 64 + N));
  EXPECT_EQ(p.mem.weights_bf16, 0);
  // Buffers: rope 2 x T x 8, logits chunk N x V, loss rows N, backward scratch, one T x T block per thread.
  const int64_t bufs = 2 * 32 * 8 + N * 512 + N + 2 * N * 64 + 2 * N * 64 + 2 * N * 32 + 3 * N * 176 + 3 * 32 * 32;
  EXPECT_EQ(p.mem.buffers, 4 * bufs);
  EXPECT_EQ(p.mem.total(), p.mem.weights + p.mem.grads + p.mem.optimizer + p.mem.activations + p.mem.buffers);
}

// The plan against what the code allocates: the model's and the optimizer's arenas, byte for byte, at tp = dp = 1
// (odd sizes so that the 16-element alignment counts, GQA, tied and untied; tests/cli/test_plan.sh covers a
// chunked LM head through the measured RSS).
TEST(Plan, MatchesTheCpuArenas) {
  for (bool tied : {false, true}) {
    ModelConfig m = ModelConfig::preset("tiny");
    m.hidden_size = 72, m.intermediate_size = 190, m.num_attention_heads = 6, m.num_key_value_heads = 2;
    m.vocab_size = 1003 + (tied ? 0 : 7), m.num_hidden_layers = 3, m.tie_word_embeddings = tied;
    CpuBackend be(2);
    LlamaModel model(m, be);
    model.allocate_activations(3, 29);
    const auto one = ParallelContext::single();
    ZeroAdamW opt(OptimConfig{}, be, zero_slots_of(model), *one);

    PlanConfig c;
    c.model = m, c.device = "cpu", c.cpu_threads = be.threads(), c.micro_batch = 3, c.seq = 29;
    c.mem_bytes = 1 << 30;
    const Plan p = make_plan(c);
    EXPECT_EQ(p.mem.weights, static_cast<int64_t>(model.parameter_bytes())) << tied;
    EXPECT_EQ(p.mem.grads, static_cast<int64_t>(model.parameter_bytes())) << tied;
    EXPECT_EQ(p.mem.optimizer, static_cast<int64_t>(opt.state_bytes())) << tied;
    EXPECT_EQ(p.mem.activations + p.mem.buffers, static_cast<int64_t>(model.activation_bytes())) << tied;
  }
}

TEST(Plan, Refusals) {
  PlanConfig c = llama2_7b(3, 1);  // 32 heads do not split over 3
  try {
    make_plan(c);
    FAIL() << "tp=3 accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), kExitBadInput);
    EXPECT_NE(std::string(e.what()).find("tp=3 does not divide num_attention_heads=32"), std::string::npos) << e.what();
  }
  c = llama2_7b(1, 1);
  c.model = ModelConfig::preset("llama3-8b");  // 8 kv heads
  c.tp = 16;
  EXPECT_THROW(make_plan(c), Error);
  c = llama2_7b(1, 1);
  c.recompute_layers = 33;  // the model has 32
  try {
    make_plan(c);
    FAIL() << "--recompute-layers 33 accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--recompute-layers 33 is outside [0, 32]"), std::string::npos) << e.what();
  }
  c = llama2_7b(2, 0);
  EXPECT_THROW(make_plan(c), Error);
  c = llama2_7b(1, 1);
  c.seq = 8192;  // beyond max_position_embeddings 4096
  EXPECT_THROW(make_plan(c), Error);
  c = llama2_7b(1, 1);
  c.device = "cpu", c.shard_master = true;
  EXPECT_THROW(make_plan(c), Error);

  EXPECT_EQ(parse_mem_size("80G", "m"), int64_t{80} << 30);
  EXPECT_EQ(parse_mem_size("80GiB", "m"), int64_t{80} << 30);
  EXPECT_EQ(parse_mem_size("81920M", "m"), int64_t{80} << 30);
  EXPECT_EQ(parse_mem_size("1.5T", "m"), int64_t{3} << 39);
  EXPECT_EQ(parse_mem_size("4096", "m"), 4096);
  for (const char* s : {"", "eighty", "80X", "-8G", "80 G", "G", "nan"})
    EXPECT_THROW(parse_mem_size(s, "m"), Error) << s;
}

TEST(Plan, JsonCarriesTheTable) {
  const Plan p = make_plan(llama2_7b(8, 8));
  const nlohmann::json j = p.to_json();
  EXPECT_EQ(j["memory_bytes"]["total"].get<int64_t>(), p.mem.total());
  EXPECT_EQ(j["world"].get<int64_t>(), 64);
  EXPECT_TRUE(j["fits"].get<bool>());
  EXPECT_NE(p.table().find("FITS"), std::string::npos);
}

}  // namespace
}  // namespace polyllama
