// The planner against what the code allocates and refuses at tp and dp > 1: on every rank of each layout the world
// allows (tp 1, 2, 4 x dp 1, 2, 4), the plan's weights, gradients, ZeRO-1 optimizer state and activations equal
// the bytes the rank's LlamaModel and ZeroAdamW hold, for the dp rank holding the most (the plan sizes the fullest
// rank; every rank's arenas are compared with the largest among them). Odd sizes make ZeRO's rows split unevenly
// (197 MLP features over dp 2 leave 98 and 99 rows; a 1006-row vocabulary over tp 2 leaves 503 rows per tp rank,
// 251 and 252 over dp 2), and the test checks that the dp ranks' states do differ. Exact integers: equality. A
// vocabulary the model refuses to split is refused by the plan too. Skipped on one rank (tests/train/test_plan.cpp
// covers tp = dp = 1); run through ctest under mpirun -np 2 and 4.
#include <gtest/gtest.h>
#include <mpi.h>

#include <algorithm>

#include "polyllama/backend/cpu/cpu_backend.hpp"
#include "polyllama/model/llama.hpp"
#include "polyllama/optim/zero_adamw.hpp"
#include "polyllama/train/plan.hpp"
#include "polyllama/train/train_step.hpp"
#include "test_support.hpp"

using namespace polyllama;

namespace {

// Splits evenly over tp (as the model requires) and unevenly over dp.
ModelConfig odd_config(bool tied, int tp) {
  ModelConfig m = ModelConfig::preset("tiny");
  m.hidden_size = 96, m.intermediate_size = tp == 1 ? 197 : 196, m.num_attention_heads = 8;
  m.num_key_value_heads = 4, m.vocab_size = tp == 4 ? 1004 : 1006, m.num_hidden_layers = 3;
  m.tie_word_embeddings = tied;
  return m;
}

int64_t reduce(MPI_Comm comm, size_t v, MPI_Op op) {
  int64_t mine = static_cast<int64_t>(v), out = 0;
  MPI_Allreduce(&mine, &out, 1, MPI_INT64_T, op, comm);
  return out;
}
int64_t max_over(MPI_Comm comm, size_t v) { return reduce(comm, v, MPI_MAX); }

}  // namespace

TEST(PlanParallel, MatchesEveryRanksArenas) {
  if (test::world_size() < 2) GTEST_SKIP() << "needs 2 or more ranks (mpirun -np 2)";
  for (int tp : {1, 2, 4})
    for (int dp : {1, 2, 4}) {
      if (tp * dp > test::world_size() || tp * dp == 1) continue;
      MPI_Comm comm = MPI_COMM_NULL;
      MPI_Comm_split(MPI_COMM_WORLD, test::world_rank() < tp * dp ? 0 : MPI_UNDEFINED, test::world_rank(), &comm);
      if (comm != MPI_COMM_NULL) {
        for (bool tied : {false, true}) {
          const std::string what = "tp " + std::to_string(tp) + " x dp " + std::to_string(dp) + (tied ? " tied" : "");
          ParallelContext pc(ParallelDims{tp, dp}, comm);
          CpuBackend be(1);
          const ModelConfig m = odd_config(tied, tp);
          LlamaModel model(m, be, DType::f32, false, &pc);
          model.allocate_activations(3, 29);
          ZeroAdamW opt(OptimConfig{}, be, zero_slots_of(model), pc);

          PlanConfig c;
          c.model = m, c.tp = tp, c.dp = dp, c.device = "cpu", c.cpu_threads = be.threads();
          c.micro_batch = 3, c.seq = 29, c.mem_bytes = 1 << 30;
          const Plan p = make_plan(c);
          EXPECT_EQ(p.mem.weights, max_over(comm, model.parameter_bytes())) << what;
          EXPECT_EQ(p.mem.grads, max_over(comm, model.parameter_bytes())) << what;
          EXPECT_EQ(p.mem.optimizer, max_over(comm, opt.state_bytes())) << what;
          EXPECT_EQ(p.mem.activations + p.mem.buffers, max_over(comm, model.activation_bytes())) << what;
          // The dp ranks' states really differ (uneven rows): the plan had to find the fullest.
          if (dp > 1) EXPECT_LT(reduce(comm, opt.state_bytes(), MPI_MIN), max_over(comm, opt.state_bytes())) << what;
        }
        MPI_Comm_free(&comm);
      }
      MPI_Barrier(MPI_COMM_WORLD);
    }
}

TEST(PlanParallel, RefusesWhatTheModelRefuses) {
  if (test::world_size() < 2) GTEST_SKIP() << "needs 2 or more ranks (mpirun -np 2)";
  MPI_Comm comm = MPI_COMM_NULL;
  MPI_Comm_split(MPI_COMM_WORLD, test::world_rank() < 2 ? 0 : MPI_UNDEFINED, test::world_rank(), &comm);
  if (comm != MPI_COMM_NULL) {
    ModelConfig m = odd_config(false, 2);
    m.vocab_size = 1003;  // does not split over tp 2
    ParallelContext pc(ParallelDims{2, 1}, comm);
    CpuBackend be(1);
    const auto model_error = test::error_of([&] { LlamaModel model(m, be, DType::f32, false, &pc); });
    PlanConfig c;
    c.model = m, c.tp = 2, c.device = "cpu", c.micro_batch = 1, c.seq = 16, c.mem_bytes = 1 << 30;
    const auto plan_error = test::error_of([&] { make_plan(c); });
    EXPECT_EQ(model_error.first, kExitBadInput) << model_error.second;
    EXPECT_EQ(plan_error.first, kExitBadInput) << plan_error.second;
    EXPECT_NE(plan_error.second.find("vocab_size = 1003 does not divide by --tp 2"), std::string::npos)
        << plan_error.second;
    MPI_Comm_free(&comm);
  }
  MPI_Barrier(MPI_COMM_WORLD);
}
