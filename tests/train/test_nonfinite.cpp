// The non-finite policy: a step whose loss or gradient norm is NaN or infinite makes no update (weights, AdamW
// moments and the optimizer's step count bit for bit unchanged); the trainer counts such steps and stops after
// max_bad_steps in a row without saving; a save refuses non-finite tensors before writing anything; pruning keeps
// the checkpoint `latest` names.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "polyllama/backend/cpu/cpu_backend.hpp"
#include "polyllama/ckpt/checkpoint.hpp"
#include "polyllama/train/train_step.hpp"
#include "polyllama/train/trainer.hpp"
#include "test_support.hpp"

using namespace polyllama;
namespace fs = std::filesystem;

namespace {

constexpr int32_t kPoisoned = 5;  // the token whose embedding row is set to infinity

ModelConfig tiny_config() {
  ModelConfig cfg = ModelConfig::preset("tiny");
  cfg.vocab_size = 32;
  return cfg;
}

std::vector<char> bytes_of(const Tensor& t) {
  const char* p = static_cast<const char*>(t.data);
  return std::vector<char>(p, p + t.bytes());
}

// Every parameter and both AdamW moments, as bytes.
std::vector<std::vector<char>> snapshot(const LlamaModel& m, const ZeroAdamW& opt) {
  std::vector<std::vector<char>> s;
  for (size_t i = 0; i < m.params().size(); ++i) s.push_back(bytes_of(m.param(i)));
  for (size_t i = 0; i < opt.slots().size(); ++i) {
    s.push_back(bytes_of(opt.exp_avg(i)));
    s.push_back(bytes_of(opt.exp_avg_sq(i)));
  }
  return s;
}

void poison_embedding_row(LlamaModel& m, int32_t token) {
  Tensor e = m.param(0);
  ASSERT_EQ(m.params()[0].name, "model.embed_tokens.weight");
  float* row = e.ptr<float>() + static_cast<int64_t>(token) * e.dim(1);
  for (int64_t j = 0; j < e.dim(1); ++j) row[j] = std::numeric_limits<float>::infinity();
}

}  // namespace

TEST(NonFinite, SkipDecision) {
  const double nan = std::nan(""), inf = std::numeric_limits<double>::infinity();
  EXPECT_TRUE(step_is_finite(2.5, 0.7));
  EXPECT_FALSE(step_is_finite(nan, 0.7));
  EXPECT_FALSE(step_is_finite(inf, 0.7));
  EXPECT_FALSE(step_is_finite(2.5, nan));
  EXPECT_FALSE(step_is_finite(2.5, -inf));
}

TEST(NonFinite, SkippedStepLeavesWeightsMomentsAndStepCountUnchanged) {
  const ModelConfig cfg = tiny_config();
  CpuBackend be(1);
  LlamaModel model(cfg, be);
  model.init_random(3, 0.02);
  const int64_t B = 2, T = 8;
  model.allocate_activations(B, T);
  const std::unique_ptr<ParallelContext> par = ParallelContext::single();
  OptimConfig oc;
  oc.grad_clip = 0.5;  // clipping armed: the skipped step must not carry it into the next one
  ZeroAdamW opt(oc, be, zero_slots_of(model), *par);
  std::vector<int32_t> in(static_cast<size_t>(B * T)), tg(in.size());
  for (size_t i = 0; i < in.size(); ++i) in[i] = static_cast<int32_t>(i % 7 + 8), tg[i] = static_cast<int32_t>(i % 5 + 8);
  // One good step, so the moments are not zero.
  const StepResult good = train_step(model, opt, *par, {in.data(), tg.data(), nullptr, 1}, 1e-3);
  ASSERT_FALSE(good.skipped);
  ASSERT_EQ(opt.steps_done(), 1);

  poison_embedding_row(model, kPoisoned);
  in[3] = kPoisoned;  // one position reads the infinite row: the loss and the gradients become NaN
  const auto before = snapshot(model, opt);
  const StepResult bad = train_step(model, opt, *par, {in.data(), tg.data(), nullptr, 1}, 1e-3);
  EXPECT_TRUE(bad.skipped);
  EXPECT_FALSE(std::isfinite(bad.loss) && std::isfinite(bad.grad_norm));
  EXPECT_EQ(opt.steps_done(), 1);
  const auto after = snapshot(model, opt);
  ASSERT_EQ(before.size(), after.size());
  for (size_t i = 0; i < before.size(); ++i) EXPECT_TRUE(before[i] == after[i]) << "tensor " << i << " changed";
}

TEST(NonFinite, TrainerStopsAfterMaxBadStepsWithoutSaving) {
  const std::string dir = test::temp_dir("nonfinite_trainer");
  const ModelConfig cfg = tiny_config();
  CpuBackend be(1);
  LlamaModel model(cfg, be);
  model.init_random(3, 0.02);
  TrainConfig tc;
  tc.run_dir = dir + "/run";
  tc.steps = 20;
  tc.seq_len = 8;
  tc.micro_batch = 2;
  tc.save_interval = 1;
  tc.max_bad_steps = 3;
  model.allocate_activations(tc.micro_batch, tc.seq_len);
  poison_embedding_row(model, kPoisoned);
  std::vector<int32_t> toks(400, kPoisoned);  // every window reads the infinite row
  TokenWindows train(toks, tc.seq_len, 7, "train");
  CheckpointMeta meta;
  meta.config_json = cfg.to_hf_json().dump();
  Trainer trainer(tc, OptimConfig{}, model, train, nullptr, meta);
  const auto [code, what] = test::error_of([&] { trainer.run(); });
  EXPECT_EQ(code, kExitRuntime);
  EXPECT_NE(what.find("3 steps in a row (1 to 3) had a non-finite loss or gradient norm"), std::string::npos) << what;
  EXPECT_NE(what.find("no checkpoint yet"), std::string::npos) << what;
  EXPECT_EQ(trainer.state().skipped_steps, 3);
  EXPECT_FALSE(fs::exists(tc.run_dir + "/ckpt")) << "a skipped step was saved";
  std::ifstream metrics(tc.run_dir + "/metrics.jsonl");
  std::string line;
  int lines = 0;
  while (std::getline(metrics, line)) {
    ++lines;
    EXPECT_NE(line.find("\"skipped\":true"), std::string::npos) << line;
    EXPECT_NE(line.find("\"skipped_steps\":" + std::to_string(lines)), std::string::npos) << line;
  }
  EXPECT_EQ(lines, 3);
}

TEST(NonFinite, SaveRefusesNonFiniteTensorsBeforeWriting) {
  const std::string root = test::temp_dir("nonfinite_save") + "/ckpt";
  std::vector<float> a(6, 1.0f), b(4, 2.0f);
  b[2] = std::nanf("");
  const std::vector<NamedTensor> model = {{"a.weight", Tensor(a.data(), DType::f32, {2, 3}), {}},
                                          {"b.weight", Tensor(b.data(), DType::f32, {4}), {}}};
  const auto [code, what] = test::error_of([&] { save_checkpoint(root, 7, model, {}, CheckpointMeta{}); });
  EXPECT_EQ(code, kExitRuntime);
  EXPECT_NE(what.find("tensor 'b.weight' holds NaN or infinite values"), std::string::npos) << what;
  EXPECT_FALSE(fs::exists(root + "/step_00000007"));
  EXPECT_FALSE(fs::exists(root + "/step_00000007.tmp"));
  EXPECT_EQ(first_non_finite(model), 1);
  b[2] = 0;
  EXPECT_EQ(first_non_finite(model), -1);
}

TEST(NonFinite, PruningKeepsTheCheckpointLatestNames) {
  const std::string root = test::temp_dir("nonfinite_prune");
  for (const char* n : {"step_00000001", "step_00000002", "step_00000003", "step_00000004", "step_00000002.tmp"})
    fs::create_directories(root + "/" + n);
  test::spit(root + "/latest", "step_00000002\n");
  prune_checkpoints(root, 2);
  EXPECT_EQ(list_step_dirs(root), (std::vector<std::string>{"step_00000002", "step_00000004"}));
  const std::vector<std::string> removed = remove_stale_tmp_dirs(root);
  ASSERT_EQ(removed.size(), 1u);
  EXPECT_NE(removed[0].find("step_00000002.tmp (0.0 MiB"), std::string::npos) << removed[0];
  EXPECT_FALSE(fs::exists(root + "/step_00000002.tmp"));
}

TEST(NonFinite, PruningNeverDeletesTheSaveAtSteps) {
  // pretrain --save-at 2,3 --keep-last 1: steps 2 and 3 stay and do not count; of the others only the newest
  // (and the one latest names) stay.
  const std::string root = test::temp_dir("nonfinite_prune_kept");
  for (const char* n : {"step_00000001", "step_00000002", "step_00000003", "step_00000004", "step_00000005"})
    fs::create_directories(root + "/" + n);
  test::spit(root + "/latest", "step_00000005\n");
  prune_checkpoints(root, 1, {2, 3});
  EXPECT_EQ(list_step_dirs(root), (std::vector<std::string>{"step_00000002", "step_00000003", "step_00000005"}));
}

TEST(NonFinite, TrainingRefusesToLoadNonFiniteWeights) {
  // A model.h5 with an infinite embedding row, written past save_checkpoint's check (which would refuse it).
  const std::string path = test::temp_dir("nonfinite_load") + "/model.h5";
  const ModelConfig cfg = tiny_config();
  CpuBackend be(1);
  LlamaModel bad(cfg, be);
  bad.init_random(3, 0.02);
  poison_embedding_row(bad, kPoisoned);
  CheckpointMeta meta;
  meta.config_json = cfg.to_hf_json().dump();
  write_tensor_file(path, model_tensors(bad), &meta);
  LlamaModel m(cfg, be);
  const auto [code, what] = test::error_of([&] { load_model_weights(path, m, /*require_finite=*/true); });
  EXPECT_EQ(code, kExitBadInput);
  EXPECT_NE(what.find("tensor 'model.embed_tokens.weight' holds NaN or infinite values"), std::string::npos) << what;
  EXPECT_EQ(test::error_of([&] { load_model_weights(path, m); }).first, 0);  // generate and eval still read it
}
