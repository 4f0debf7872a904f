// Whole-file integrity: a save writes manifest.json last with every file's size and SHA-256 (checked here against
// sha256_file, itself checked against sha256sum); a load verifies it before HDF5 reads anything, naming the file on
// a mismatch; resume falls back to the newest intact step; a checkpoint without a manifest still loads (warned);
// damaged attributes fail naming file and attribute.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "polyllama/ckpt/checkpoint.hpp"
#include "polyllama/ckpt/manifest.hpp"
#include "polyllama/ckpt/sha256.hpp"
#include "test_support.hpp"

using namespace polyllama;
namespace fs = std::filesystem;

namespace {

const char* kTrainer =
    R"({"step": 3, "consumed_samples": 12, "consumed_tokens": 384, "optimizer_steps": 3, "global_batch": 4})";

struct Saved {
  std::vector<float> w = std::vector<float>(6 * 5), m = std::vector<float>(6 * 5);
  CheckpointMeta meta;
};

// A checkpoint of one weight and one moment at `step` under root.
std::string save(const std::string& root, int64_t step, Saved& s) {
  for (size_t i = 0; i < s.w.size(); ++i) s.w[i] = 0.25f * static_cast<float>(i) + static_cast<float>(step);
  for (size_t i = 0; i < s.m.size(); ++i) s.m[i] = -0.5f * static_cast<float>(i);
  s.meta.config_json = R"({"model_type": "llama"})";
  s.meta.trainer_json = kTrainer;
  s.meta.tokenizer_bytes = "tokenizer bytes";
  return save_checkpoint(root, step, {{"w", Tensor(s.w.data(), DType::f32, {6, 5}), {}}},
                         {{"w.exp_avg", Tensor(s.m.data(), DType::f32, {6, 5}), {}}}, s.meta);
}

void flip_byte(const std::string& path, uint64_t at) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(static_cast<std::streamoff>(at));
  const int c = f.get();
  f.seekp(static_cast<std::streamoff>(at));
  f.put(static_cast<char>(c ^ 0x20));
}

}  // namespace

TEST(Manifest, SaveListsEveryFileWithItsSizeAndSha256) {
  const std::string dir = test::temp_dir("manifest");
  Saved s;
  const std::string step = save(dir + "/ckpt", 3, s);
  const std::vector<ManifestEntry> m = read_manifest(step);
  ASSERT_EQ(m.size(), 2u);
  EXPECT_EQ(m[0].name, "model.h5");
  EXPECT_EQ(m[1].name, "optim.h5");
  for (const ManifestEntry& e : m) {
    uint64_t bytes = 0;
    EXPECT_EQ(e.sha256, sha256_file(step + "/" + e.name, &bytes)) << e.name;
    EXPECT_EQ(e.bytes, bytes) << e.name;
  }
  // Nothing else in the directory: the .tmp of the manifest's atomic write is gone.
  std::vector<std::string> files;
  for (const auto& f : fs::directory_iterator(step)) files.push_back(f.path().filename().string());
  std::sort(files.begin(), files.end());
  EXPECT_EQ(files, (std::vector<std::string>{"manifest.json", "model.h5", "optim.h5"}));
  EXPECT_EQ(read_meta(step + "/model.h5").trainer_json, kTrainer);
  fs::remove_all(dir);
}

TEST(Manifest, AnyChangedFileFailsTheLoadNamingIt) {
  const std::string dir = test::temp_dir("manifest");
  Saved s;
  const std::string step = save(dir + "/ckpt", 3, s);
  // A byte in the superblock of optim.h5 (no tensor of model.h5 is affected, and HDF5 would never see it).
  flip_byte(step + "/optim.h5", 9);
  auto [code, what] = test::error_of([&] { read_meta(step + "/model.h5"); });
  EXPECT_EQ(code, kExitBadInput);
  EXPECT_NE(what.find(step + "/optim.h5: SHA-256"), std::string::npos) << what;
  flip_byte(step + "/optim.h5", 9);  // back as it was: verifies again
  EXPECT_EQ(test::error_of([&] { read_meta(step + "/model.h5"); }).first, 0);

  fs::resize_file(step + "/model.h5", fs::file_size(step + "/model.h5") - 1);
  std::tie(code, what) = test::error_of([&] { read_meta(step + "/model.h5"); });
  EXPECT_EQ(code, kExitBadInput);
  EXPECT_NE(what.find("model.h5 has "), std::string::npos) << what;
  EXPECT_NE(what.find("truncated"), std::string::npos) << what;

  fs::remove(step + "/optim.h5");
  fs::remove(step + "/model.h5");
  test::spit(step + "/model.h5", "x");
  std::tie(code, what) = test::error_of([&] { read_meta(step + "/model.h5"); });
  EXPECT_EQ(code, kExitBadInput);
  fs::remove_all(dir);
}

TEST(Manifest, DamagedManifestFailsNamingItAndTheField) {
  const std::string dir = test::temp_dir("manifest");
  Saved s;
  const std::string step = save(dir + "/ckpt", 3, s), path = step + "/manifest.json";
  const std::string good = test::slurp(path);
  struct Case {
    std::string text, want;
  };
  std::vector<Case> cases = {{"{", "not valid JSON"},
                             {R"({"format": "x", "version": 1, "files": []})", "'format'"},
                             {R"({"format": "polyllama checkpoint manifest", "version": 2, "files": []})", "'version'"},
                             {R"({"format": "polyllama checkpoint manifest", "version": 1, "files": []})",
                              "does not list model.h5"},
                             {R"({"format": "polyllama checkpoint manifest", "version": 1, "files": [{"name":
                                 "../x", "bytes": 1, "sha256": "00"}]})", "files[0].name"}};
  nlohmann::json j = nlohmann::json::parse(good);
  j["files"][0]["sha256"] = std::string(64, 'g');
  cases.push_back({j.dump(), "files[0].sha256"});
  j = nlohmann::json::parse(good);
  j["files"][1].erase("bytes");
  cases.push_back({j.dump(), "files[1].'bytes' is missing"});
  for (const Case& c : cases) {
    test::spit(path, c.text);
    const auto [code, what] = test::error_of([&] { read_meta(step + "/model.h5"); });
    EXPECT_EQ(code, kExitBadInput) << c.text;
    EXPECT_NE(what.find(path), std::string::npos) << what;
    EXPECT_NE(what.find(c.want), std::string::npos) << what;
  }
  fs::remove_all(dir);
}

TEST(Manifest, ResumeFallsBackToTheNewestIntactCheckpoint) {
  const std::string dir = test::temp_dir("manifest"), root = dir + "/ckpt";
  Saved s1, s2;
  save(root, 1, s1);
  const std::string step2 = save(root, 2, s2);
  flip_byte(step2 + "/model.h5", fs::file_size(step2 + "/model.h5") / 2);
  std::string note;
  EXPECT_EQ(find_resume_checkpoint(root, /*repair=*/true, &note), root + "/step_00000001");
  EXPECT_NE(note.find("latest names step_00000002, which does not load"), std::string::npos) << note;
  EXPECT_NE(note.find("SHA-256"), std::string::npos) << note;
  EXPECT_NE(note.find("rebuilt it from step_00000001"), std::string::npos) << note;
  EXPECT_EQ(test::slurp(root + "/latest"), "step_00000001\n");
  fs::remove_all(dir);
}

TEST(Manifest, CheckpointWithoutManifestLoadsWithAWarning) {
  const std::string dir = test::temp_dir("manifest");
  Saved s;
  const std::string step = save(dir + "/ckpt", 3, s);
  fs::remove(step + "/manifest.json");  // as saved before manifests
  testing::internal::CaptureStderr();
  EXPECT_EQ(read_meta(step + "/model.h5").tokenizer_bytes, "tokenizer bytes");
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("has no manifest.json"), std::string::npos) << err;
  std::vector<float> w(30);
  read_tensor_file(step + "/model.h5", {{"w", Tensor(w.data(), DType::f32, {6, 5}), {}}});
  EXPECT_EQ(w, s.w);
  fs::remove_all(dir);
}

TEST(Manifest, AttributesThatDoNotParseFailNamingFileAndAttribute) {
  const std::string f = "RUN/ckpt/step_00000003/model.h5";
  CheckpointMeta m;
  m.config_json = R"({"model_type": "llama"})";
  m.trainer_json = kTrainer;
  EXPECT_EQ(test::error_of([&] { check_meta(m, f); }).first, 0);
  struct Case {
    std::string config, trainer, want;
  };
  const std::vector<Case> cases = {
      {"{\"model_type\": ", kTrainer, "attribute 'config' is not valid JSON"},
      {"[1]", kTrainer, "attribute 'config' is not a JSON object"},
      {m.config_json, "{\"step\": 3", "attribute 'trainer_state' is not valid JSON"},
      {m.config_json, R"({"consumed_samples": 1, "consumed_tokens": 1, "optimizer_steps": 1, "global_batch": 1})",
       "attribute 'trainer_state': 'step' is missing"},
      {m.config_json, R"({"step": "3", "consumed_samples": 1, "consumed_tokens": 1, "optimizer_steps": 1,
                          "global_batch": 1})", "'step' must be an integer >= 0, got \"3\""},
      {m.config_json, R"({"step": 3, "consumed_samples": 1, "consumed_tokens": 1, "optimizer_steps": 1})",
       "'micro_batch' is missing"},
      {m.config_json, R"({"step": 3, "consumed_samples": -1, "consumed_tokens": 1, "optimizer_steps": 1,
                          "global_batch": 1})", "'consumed_samples' must be an integer >= 0, got -1"}};
  for (const Case& c : cases) {
    m.config_json = c.config;
    m.trainer_json = c.trainer;
    const auto [code, what] = test::error_of([&] { check_meta(m, f); });
    EXPECT_EQ(code, kExitBadInput) << c.want;
    EXPECT_NE(what.find(f + ": "), std::string::npos) << what;
    EXPECT_NE(what.find(c.want), std::string::npos) << what;
  }
}
