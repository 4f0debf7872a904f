// Tensor- and data-parallel training equals one process: for every layout tp x dp <= world (tp, dp in
// {1, 2, 4}), five optimizer steps of a GQA model (8 heads, 4 kv heads) with gradient clipping active give the
// same losses and the same final weights, block by block, as the single-process run with the same global
// batch, within 1e-5 relative (fp32: the layouts only reorder sums, ~1e-7 per rounding over a few hundred
// terms). And a checkpoint written at tp 2 x dp 2 resumes at tp 1 x dp 1, tp 4 x dp 1 and tp 1 x dp 4 with the
// losses of the uninterrupted run. Runs on one rank (layout 1 x 1) and, through ctest, under mpirun -np 2 and 4.
#include <gtest/gtest.h>
#include <mpi.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <nlohmann/json.hpp>
#include <vector>

#include "polyllama/backend/cpu/cpu_backend.hpp"
#include "polyllama/core/random.hpp"
#include "polyllama/train/trainer.hpp"
#include "test_support.hpp"

using namespace polyllama;

namespace {

using test::world_rank;
using test::world_size;

// fp32: the layouts reorder sums (tp: the row-parallel outputs, the input gradients of the column-parallel
// layers, the vocab-parallel softmax; dp: the gradient sums), ~1e-7 per rounding. AdamW then divides each
// gradient by its own magnitude, so an element whose gradient is a near-cancellation (|g| ~ 1e-7) turns that
// rounding into a different update of up to lr (measured: up to 6e-5 relative with eps = 1e-8). Its effect is
// bounded by lr * |dg| / eps, so the fp32 runs use eps = 1e-5 (|dg| <= 1e-9 for the largest gradients, the tied
// embedding's, gives <= 3e-7 absolute against weights of ~0.2, i.e. ~1e-6 relative; typical gradients here are
// 1e-3..1e-2, so eps still leaves AdamW's normalisation in place). The fp64 runs keep PyTorch's eps = 1e-8 and
// agree to 1e-9: the parallel algorithm itself is exact.
constexpr double kTol32 = 1e-5, kTol64 = 1e-9;

ModelConfig gqa_config(bool tied) {
  ModelConfig c = ModelConfig::preset("tiny");
  c.num_attention_heads = 8;  // head_dim 8
  c.num_key_value_heads = 4;
  c.tie_word_embeddings = tied;
  return c;  // hidden 64, 176 features, 2 layers, vocab 512
}

std::vector<int32_t> tokens(int64_t n, int64_t vocab) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)  // a learnable pattern with noise, so losses move
    t[static_cast<size_t>(i)] = static_cast<int32_t>((i * 7 + (mix64(static_cast<uint64_t>(i)) % 5)) % vocab);
  return t;
}

TrainConfig train_config(const std::string& run_dir, int64_t steps) {
  TrainConfig tc;
  tc.run_dir = run_dir;
  tc.steps = steps;
  tc.seq_len = 16;
  tc.micro_batch = 2;
  tc.global_batch = 8;  // accumulation 4 / 2 / 1 at dp 1 / 2 / 4
  tc.log_interval = 1000;
  return tc;
}

OptimConfig optim_config(DType dt) {
  OptimConfig oc;
  oc.eps = dt == DType::f32 ? 1e-5 : 1e-8;
  oc.lr = 3e-3;
  oc.min_lr = 3e-4;
  oc.warmup_steps = 2;
  oc.grad_clip = 0.5;  // below the early gradient norms: clipping by the global norm is exercised
  return oc;
}

// A directory every participating rank agrees on.
std::string shared_dir(MPI_Comm comm, const std::string& tag) {
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  std::string dir;
  if (rank == 0) dir = test::temp_dir(tag);
  int n = static_cast<int>(dir.size());
  MPI_Bcast(&n, 1, MPI_INT, 0, comm);
  dir.resize(static_cast<size_t>(n));
  MPI_Bcast(dir.data(), n, MPI_CHAR, 0, comm);
  return dir;
}

struct TrainRun {
  std::vector<double> losses;
  std::vector<std::vector<double>> blocks;  // this rank's block of every parameter
  std::vector<ShardSpec> specs;
  std::string ckpt_dir;
};

// Trains on `comm` at tp x (size / tp); from `resume_dir` when given (weights and optimizer state).
TrainRun train(MPI_Comm comm, int tp, bool tied, DType dt, int64_t steps, const std::string& run_dir,
               int64_t save_interval = 0, const std::string& resume_dir = "") {
  int size = 1;
  MPI_Comm_size(comm, &size);
  ParallelContext pc(ParallelDims::from_tp(tp, size), comm);
  CpuBackend be(1);
  const ModelConfig cfg = gqa_config(tied);
  LlamaModel model(cfg, be, dt, false, &pc);
  TrainConfig tc = train_config(run_dir, steps);
  tc.save_interval = save_interval;
  model.init_random(11, 0.05);
  if (!resume_dir.empty()) load_model_weights(resume_dir + "/model.h5", model);
  model.allocate_activations(tc.micro_batch, tc.seq_len);
  TokenWindows data(tokens(4000, cfg.vocab_size), tc.seq_len, 3, "train");
  CheckpointMeta meta;
  meta.config_json = cfg.to_hf_json().dump();
  meta.tokenizer_bytes = "none";
  Trainer trainer(tc, optim_config(dt), model, data, nullptr, meta);
  if (!resume_dir.empty()) trainer.resume_from(resume_dir);
  TrainRun r;
  r.losses = trainer.run().losses;
  for (size_t i = 0; i < model.params().size(); ++i) {
    const Tensor p = model.param(i);
    if (dt == DType::f32)
      r.blocks.emplace_back(p.ptr<float>(), p.ptr<float>() + p.numel());
    else
      r.blocks.emplace_back(p.ptr<double>(), p.ptr<double>() + p.numel());
    r.specs.push_back(model.params()[i].shard);
  }
  return r;
}

// The block `s` of a full (rows, cols) or (n) tensor.
std::vector<double> block_of(const std::vector<double>& full, const ShardSpec& s) {
  if (s.global_shape.size() == 1)
    return {full.begin() + s.global_offset[0], full.begin() + s.global_offset[0] + s.local_shape[0]};
  std::vector<double> out;
  for (int64_t i = 0; i < s.local_shape[0]; ++i)
    for (int64_t j = 0; j < s.local_shape[1]; ++j)
      out.push_back(full[static_cast<size_t>((s.global_offset[0] + i) * s.global_shape[1] + s.global_offset[1] + j)]);
  return out;
}

void expect_same(const TrainRun& got, const TrainRun& ref, const std::string& what, double tol, size_t first_step = 0) {
  ASSERT_EQ(got.losses.size() + first_step, ref.losses.size()) << what;
  for (size_t s = 0; s < got.losses.size(); ++s)
    EXPECT_NEAR(got.losses[s], ref.losses[s + first_step], tol * std::abs(ref.losses[s + first_step]))
        << what << " step " << s + first_step + 1;
  for (size_t i = 0; i < got.blocks.size(); ++i) {
    const std::vector<double> want = block_of(ref.blocks[i], got.specs[i]);
    ASSERT_EQ(want.size(), got.blocks[i].size()) << what << " param " << i;
    EXPECT_LT(test::max_rel_err(got.blocks[i].data(), want.data(), static_cast<int64_t>(want.size())), tol)
        << what << " param " << i;
  }
}


// The first n ranks of the world (MPI_COMM_NULL on the others).
MPI_Comm first_ranks(int n) {
  MPI_Comm c = MPI_COMM_NULL;
  MPI_Comm_split(MPI_COMM_WORLD, world_rank() < n ? 0 : MPI_UNDEFINED, world_rank(), &c);
  return c;
}

}  // namespace

TEST(ParallelTraining, EveryLayoutEqualsOneProcess) {
  // One rank has no layout but the reference itself: comparing a run with itself could not fail.
  if (world_size() < 2) GTEST_SKIP() << "needs 2 or more ranks (mpirun -np 2)";
  for (DType dt : {DType::f32, DType::f64})
    for (bool tied : {false, true}) {
      if (dt == DType::f64 && tied) continue;  // the tied head's sharing is exercised in fp32
      const double tol = dt == DType::f32 ? kTol32 : kTol64;
      // Every rank computes the single-process reference on its own.
      const TrainRun ref = train(MPI_COMM_SELF, 1, tied, dt, 5, test::temp_dir("ref"));
      ASSERT_EQ(ref.losses.size(), 5u);
      EXPECT_GT(ref.losses[0] - ref.losses[4], 0.05) << "the losses should move";
      for (int tp : {1, 2, 4})
        for (int dp : {1, 2, 4}) {
          if (tp * dp > 4 || tp * dp > world_size() || tp * dp == 1) continue;
          MPI_Comm comm = first_ranks(tp * dp);
          if (comm != MPI_COMM_NULL) {
            const std::string what = "tp " + std::to_string(tp) + " x dp " + std::to_string(dp) +
                                     (tied ? " (tied head)" : "") + (dt == DType::f64 ? " fp64" : " fp32");
            expect_same(train(comm, tp, tied, dt, 5, shared_dir(comm, "layout")), ref, what, tol);
            MPI_Comm_free(&comm);
          }
          MPI_Barrier(MPI_COMM_WORLD);
        }
    }
}

TEST(ParallelTraining, CheckpointAtTp2Dp2ResumesAtOtherLayouts) {
  if (world_size() < 4) GTEST_SKIP() << "needs 4 ranks (mpirun -np 4)";
  const TrainRun ref = train(MPI_COMM_SELF, 1, false, DType::f32, 6, test::temp_dir("ref6"));
  MPI_Comm four = first_ranks(4);
  std::string step3;
  if (four != MPI_COMM_NULL) {
    const std::string dir = shared_dir(four, "reshard");
    const TrainRun r = train(four, 2, false, DType::f32, 6, dir, /*save_interval=*/3);
    expect_same(r, ref, "tp 2 x dp 2, uninterrupted", kTol32);
    step3 = dir + "/ckpt/step_00000003";
    MPI_Comm_free(&four);
  }
  for (auto [tp, dp] : {std::pair{1, 1}, {4, 1}, {1, 4}}) {
    MPI_Comm comm = first_ranks(tp * dp);
    if (comm != MPI_COMM_NULL) {
      const TrainRun r = train(comm, tp, false, DType::f32, 6, shared_dir(comm, "resumed"), 0, step3);
      expect_same(r, ref, "resumed at tp " + std::to_string(tp) + " x dp " + std::to_string(dp), kTol32, 3);
      MPI_Comm_free(&comm);
    }
    MPI_Barrier(MPI_COMM_WORLD);
  }
}
