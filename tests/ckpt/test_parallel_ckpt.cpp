// Checkpoint files are layout-free: tensors written as blocks by several ranks (split along rows, along
// columns, or replicated) read back whole, or as other blocks, on any number of ranks. Runs on one rank and,
// through ctest, under mpirun -np 2 (the blocks then really come from two processes writing one file).
#include <gtest/gtest.h>
#include <mpi.h>

#include <cstring>
#include <filesystem>
#include <vector>

#include "polyllama/ckpt/checkpoint.hpp"
#include "polyllama/ckpt/manifest.hpp"
#include "polyllama/ckpt/sha256.hpp"
#include "test_support.hpp"

using namespace polyllama;

namespace {

struct World {
  int rank = 0, size = 1;
  World() {
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
  }
};

// Value of element (i, j) of tensor t: distinct everywhere, so a misplaced block cannot go unnoticed.
float value(int t, int64_t i, int64_t j) { return static_cast<float>(t * 1000 + i * 37 + j) * 0.5f; }

// This rank's block of a (R, C) tensor under `spec`, filled from value().
std::vector<float> block_data(int t, const ShardSpec& spec) {
  std::vector<float> v;
  for (int64_t i = 0; i < spec.local_shape[0]; ++i)
    for (int64_t j = 0; j < spec.local_shape[1]; ++j)
      v.push_back(value(t, spec.global_offset[0] + i, spec.global_offset[1] + j));
  return v;
}

std::string shared_temp_dir(const World& w) {
  std::string dir;
  if (w.rank == 0) dir = test::temp_dir("pckpt");
  int n = static_cast<int>(dir.size());
  MPI_Bcast(&n, 1, MPI_INT, 0, MPI_COMM_WORLD);
  dir.resize(static_cast<size_t>(n));
  MPI_Bcast(dir.data(), n, MPI_CHAR, 0, MPI_COMM_WORLD);
  return dir;
}

}  // namespace

TEST(ParallelCheckpoint, BlocksFromEveryRankReadBackWholeAndAsOtherLayouts) {
  World w;
  const std::string dir = shared_temp_dir(w);
  const std::vector<int64_t> shape_a{6, 4}, shape_b{4, 6}, shape_c{1, 5};
  // a: rows split across ranks (column-parallel weights); b: columns split (row-parallel); c: replicated.
  const ShardSpec sa = ShardSpec::split(shape_a, 0, w.size, w.rank);
  const ShardSpec sb = ShardSpec::split(shape_b, 1, w.size, w.rank);
  const ShardSpec sc = ShardSpec::split(shape_c, 0, 1, 0, /*replica_id=*/w.rank);
  std::vector<float> a = block_data(0, sa), b = block_data(1, sb), c = block_data(2, sc);
  std::vector<NamedTensor> tensors = {
      {"a", Tensor(a.data(), DType::f32, {sa.local_shape[0], sa.local_shape[1]}), sa},
      {"b", Tensor(b.data(), DType::f32, {sb.local_shape[0], sb.local_shape[1]}), sb},
      {"c", Tensor(c.data(), DType::f32, {1, 5}), sc}};
  CheckpointMeta meta;
  meta.config_json = "{}";
  meta.tokenizer_bytes = "tok";
  const std::string step_dir = save_checkpoint(dir + "/ckpt", 7, tensors, {}, meta, MPI_COMM_WORLD);
  EXPECT_EQ(latest_checkpoint(dir + "/ckpt"), step_dir);

  // Whole tensors on every rank, as one process would load them.
  std::vector<float> fa(24), fb(24), fc(5);
  read_tensor_file(step_dir + "/model.h5", {{"a", Tensor(fa.data(), DType::f32, {6, 4}), {}},
                                           {"b", Tensor(fb.data(), DType::f32, {4, 6}), {}},
                                           {"c", Tensor(fc.data(), DType::f32, {1, 5}), {}}});
  EXPECT_EQ(fa, block_data(0, ShardSpec::full(shape_a)));
  EXPECT_EQ(fb, block_data(1, ShardSpec::full(shape_b)));
  EXPECT_EQ(fc, block_data(2, ShardSpec::full(shape_c)));

  // Another layout: `a` by columns in two halves, `b` by rows in two halves (as a tp = 2 run would shard them
  // differently); every rank reads both halves, which is what any dp x tp layout reduces to.
  for (int part = 0; part < 2; ++part) {
    const ShardSpec ra = ShardSpec::split(shape_a, 1, 2, part), rb = ShardSpec::split(shape_b, 0, 2, part);
    std::vector<float> ba(12), bb(12), cc(5);
    read_tensor_file(step_dir + "/model.h5", {{"a", Tensor(ba.data(), DType::f32, {6, 2}), ra},
                                             {"b", Tensor(bb.data(), DType::f32, {2, 6}), rb},
                                             {"c", Tensor(cc.data(), DType::f32, {1, 5}), {}}});
    EXPECT_EQ(ba, block_data(0, ra)) << "part " << part;
    EXPECT_EQ(bb, block_data(1, rb)) << "part " << part;
  }
  const CheckpointMeta back = read_meta(step_dir + "/model.h5");
  EXPECT_EQ(back.tokenizer_bytes, "tok");
  // manifest.json, hashed by the ranks together (file i by rank i mod size), holds each file's own SHA-256.
  const std::vector<ManifestEntry> manifest = read_manifest(step_dir);
  ASSERT_EQ(manifest.size(), 1u);
  EXPECT_EQ(manifest[0].name, "model.h5");
  EXPECT_EQ(manifest[0].sha256, sha256_file(step_dir + "/model.h5"));
  MPI_Barrier(MPI_COMM_WORLD);
  if (w.rank == 0) std::filesystem::remove_all(dir);
}

TEST(ParallelCheckpoint, RefusesBlocksThatDoNotTileTheTensor) {
  World w;
  const std::string dir = shared_temp_dir(w);
  // Every rank claims rows [0, 3) of a (6, 4) tensor as replica 0: with one rank half the tensor is missing,
  // with two the blocks overlap. Either way nothing may be written and every rank must fail.
  ShardSpec s = ShardSpec::split({6, 4}, 0, 2, 0);
  std::vector<float> a(12, 1.f);
  std::vector<NamedTensor> tensors = {{"a", Tensor(a.data(), DType::f32, {3, 4}), s}};
  CheckpointMeta meta;
  try {
    save_checkpoint(dir + "/ckpt", 1, tensors, {}, meta, MPI_COMM_WORLD);
    ADD_FAILURE() << "a layout that does not tile the tensor was accepted";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("blocks of 'a'"), std::string::npos) << what;
  }
  EXPECT_EQ(latest_checkpoint(dir + "/ckpt"), "");  // no checkpoint was published
  MPI_Barrier(MPI_COMM_WORLD);
  if (w.rank == 0) std::filesystem::remove_all(dir);
}

TEST(ParallelCheckpoint, ManifestIsHashedAcrossTheRanks) {
  World w;
  const std::string dir = shared_temp_dir(w);
  // Two files: with two ranks rank 0 hashes model.h5 and rank 1 optim.h5; every rank must see both digests.
  const ShardSpec s = ShardSpec::split({6, 4}, 0, w.size, w.rank);
  std::vector<float> a = block_data(0, s), m = block_data(1, s);
  CheckpointMeta meta;
  meta.config_json = "{}";
  meta.tokenizer_bytes = "tok";
  meta.trainer_json = R"({"step": 2, "consumed_samples": 2, "consumed_tokens": 2, "optimizer_steps": 2, "global_batch": 1})";
  const std::string step_dir =
      save_checkpoint(dir + "/ckpt", 2, {{"a", Tensor(a.data(), DType::f32, {s.local_shape[0], 4}), s}},
                      {{"a.exp_avg", Tensor(m.data(), DType::f32, {s.local_shape[0], 4}), s}}, meta, MPI_COMM_WORLD);
  const std::vector<ManifestEntry> manifest = read_manifest(step_dir);
  ASSERT_EQ(manifest.size(), 2u);
  for (const ManifestEntry& e : manifest) {
    uint64_t bytes = 0;
    EXPECT_EQ(e.sha256, sha256_file(step_dir + "/" + e.name, &bytes)) << e.name;
    EXPECT_EQ(e.bytes, bytes) << e.name;
  }
  MPI_Barrier(MPI_COMM_WORLD);
  if (w.rank == 0) std::filesystem::remove_all(dir);
}
