// resize-vocab: every tensor but the vocabulary ones is copied bit for bit; old embedding and LM-head rows are
// bit-identical; each new row equals the mean it should, recomputed here in fp64 from the input checkpoint;
// new AdamW moment rows are zero; the logits over the original vocabulary are unchanged for inputs of
// original tokens (untied and tied heads); several passes over the old rows (a small memory budget) give the
// same file as one; bad inputs are refused.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "polyllama/backend/cpu/cpu_backend.hpp"
#include "polyllama/ckpt/checkpoint.hpp"
#include "polyllama/ckpt/resize_vocab.hpp"
#include "polyllama/ckpt/tensor_stream.hpp"
#include "polyllama/core/random.hpp"
#include "polyllama/model/llama.hpp"
#include "polyllama/tokenizer/extend.hpp"
#include "polyllama/tokenizer/sp_model.hpp"
#include "polyllama/tokenizer/tokenizer.hpp"
#include "polyllama/train/trainer.hpp"
#include "test_support.hpp"

namespace polyllama {
namespace {

using test::slurp;
using test::spit;

ModelConfig small_config(bool tied, int64_t vocab) {
  ModelConfig c;
  c.hidden_size = 32;
  c.intermediate_size = 64;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.vocab_size = vocab;  // the fixture tokenizer has 300 pieces
  c.max_position_embeddings = 64;
  c.tie_word_embeddings = tied;
  return c;
}

// Every tensor of a file, whole.
std::map<std::string, std::vector<float>> read_all(const std::string& path) {
  const TensorFileReader r(path);
  std::map<std::string, std::vector<float>> out;
  for (const std::string& n : r.names()) {
    const auto sh = r.shape(n);
    int64_t numel = 1;
    for (int64_t d : sh) numel *= d;
    std::vector<float> v(static_cast<size_t>(numel));
    r.read_rows(n, 0, sh.empty() ? 1 : sh[0], v.data());
    out[n] = std::move(v);
  }
  return out;
}

struct Fixture {
  std::string dir, base, merged_path, merged;
  ModelConfig cfg;
  std::string in_step;
};

// A checkpoint (with optimizer moments) of a small model under the fixture tokenizer, and an extension of
// that tokenizer by pieces trained on Chinese text.
Fixture make_fixture(const std::string& tag, bool tied, int64_t vocab = 300) {
  Fixture f;
  f.dir = test::temp_dir(tag);
  f.base = slurp(test::fixture("hf_tiny/tokenizer.model"));
  std::string zh;
  for (int r = 0; r < 40; ++r) zh += "学而时习之，不亦说乎？有朋自远方来，不亦乐乎？人不知而不愠，不亦君子乎？\n 中国 人民 文化\n";
  std::ofstream(f.dir + "/zh.txt") << zh;
  train_sentencepiece({f.dir + "/zh.txt"}, f.dir + "/zh.model", 340, SpModel::parse(f.base, "b").segmentation_flags());
  ExtendOptions opt;
  opt.pad_to_multiple = 16;  // some unused padding rows too
  f.merged = extend_vocabulary(f.base, "base", slurp(f.dir + "/zh.model"), "zh", opt).model_bytes;
  f.merged_path = f.dir + "/merged.model";
  std::ofstream(f.merged_path, std::ios::binary) << f.merged;

  f.cfg = small_config(tied, vocab);
  CpuBackend be(1);
  LlamaModel model(f.cfg, be, DType::f32);
  model.init_random(7, 0.5);
  std::vector<std::vector<float>> moments;
  std::vector<NamedTensor> optim;
  for (size_t i = 0; i < model.params().size(); ++i) {
    const Tensor p = model.param(i);
    for (const char* kind : {"exp_avg.", "exp_avg_sq."}) {
      moments.emplace_back(static_cast<size_t>(p.numel()));
      for (size_t k = 0; k < moments.back().size(); ++k)
        moments.back()[k] = static_cast<float>(random_uniform(3, moments.size(), k));
      Tensor t = p;
      t.data = moments.back().data();
      optim.push_back({kind + model.params()[i].name, t, {}});
    }
  }
  CheckpointMeta meta;
  meta.config_json = f.cfg.to_hf_json().dump();
  meta.trainer_json =
      R"({"step": 5, "consumed_samples": 40, "consumed_tokens": 1280, "optimizer_steps": 5, "global_batch": 8})";
  meta.tokenizer_bytes = f.base;
  f.in_step = save_checkpoint(f.dir + "/in/ckpt", 5, model_tensors(model), optim, meta);
  return f;
}

int run_cli(const std::string& args) {
  const int st = std::system((test::polyllama_binary() + " resize-vocab " + args + " >/dev/null 2>&1").c_str());
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

// Logits of `ids` for a checkpoint.
std::vector<float> logits_of(const std::string& step_dir, const std::vector<int32_t>& ids, int64_t* vocab) {
  const CheckpointMeta meta = read_meta(step_dir + "/model.h5");
  const ModelConfig cfg = ModelConfig::from_hf_json(nlohmann::json::parse(meta.config_json), step_dir);
  CpuBackend be(1);
  LlamaModel model(cfg, be, DType::f32);
  read_tensor_file(step_dir + "/model.h5", model_tensors(model));
  model.allocate_activations(1, static_cast<int64_t>(ids.size()));
  std::vector<float> logits(ids.size() * static_cast<size_t>(cfg.vocab_size));
  model.forward_logits(ids.data(), Tensor(logits.data(), DType::f32, {static_cast<int64_t>(ids.size()), cfg.vocab_size}));
  *vocab = cfg.vocab_size;
  return logits;
}

void expect_same_logits_on_old_vocab(const std::string& a, const std::string& b) {
  std::vector<int32_t> ids;
  for (int i = 0; i < 24; ++i) ids.push_back(static_cast<int32_t>(random_bits(11, 0, static_cast<uint64_t>(i)) % 300));
  int64_t va = 0, vb = 0;
  const auto la = logits_of(a, ids, &va), lb = logits_of(b, ids, &vb);
  ASSERT_GT(vb, va);
  double worst = 0, scale = 0;
  for (size_t t = 0; t < ids.size(); ++t)
    for (int64_t v = 0; v < va; ++v) {
      const double x = la[t * static_cast<size_t>(va) + static_cast<size_t>(v)];
      const double y = lb[t * static_cast<size_t>(vb) + static_cast<size_t>(v)];
      worst = std::max(worst, std::fabs(x - y));
      scale = std::max(scale, std::fabs(x));
    }
  std::printf("logits over the original %lld ids: max |diff| %.3g (logit scale %.3g)\n", static_cast<long long>(va),
              worst, scale);
  // The same weights and the same arithmetic per logit: only BLAS blocking over a longer head could reorder a
  // sum, which stays within a few fp32 ulps of the logit scale.
  EXPECT_LE(worst, 1e-6 * scale);
}

TEST(ResizeVocab, SubwordMeanUntiedWithOptimizerState) {
  const Fixture f = make_fixture("resize_sw", false);
  ASSERT_EQ(run_cli("--checkpoint " + f.dir + "/in --tokenizer " + f.merged_path + " --out " + f.dir + "/out"), 0);
  const std::string out_step = f.dir + "/out/ckpt/step_00000005";
  ASSERT_TRUE(std::filesystem::exists(out_step + "/optim.h5"));
  const int64_t old_rows = 300, new_rows = Tokenizer::from_bytes(f.merged, "m").vocab_size(), C = 32;
  ASSERT_GT(new_rows, old_rows + 16);
  const CheckpointMeta meta = read_meta(out_step + "/model.h5");
  EXPECT_EQ(meta.tokenizer_bytes, f.merged);
  EXPECT_EQ(nlohmann::json::parse(meta.config_json).at("vocab_size").get<int64_t>(), new_rows);
  EXPECT_EQ(nlohmann::json::parse(meta.trainer_json).at("consumed_samples"), 40);

  const auto in = read_all(f.in_step + "/model.h5"), out = read_all(out_step + "/model.h5");
  ASSERT_EQ(in.size(), out.size());
  const auto recipes = subword_recipes(f.base, f.merged, old_rows, "merged");
  const SpModel merged = SpModel::parse(f.merged, "m");
  for (const auto& [name, a] : in) {
    const std::vector<float>& b = out.at(name);
    if (!is_vocab_tensor(name)) {
      ASSERT_EQ(std::memcmp(a.data(), b.data(), a.size() * 4), 0) << name;
      continue;
    }
    ASSERT_EQ(b.size(), static_cast<size_t>(new_rows * C)) << name;
    ASSERT_EQ(std::memcmp(a.data(), b.data(), a.size() * 4), 0) << name << ": old rows changed";
    int64_t from_subwords = 0;
    for (int64_t k = 0; k < new_rows - old_rows; ++k) {
      const auto& rec = recipes[static_cast<size_t>(k)];
      const bool unused = merged.pieces[static_cast<size_t>(old_rows + k)].type == PieceType::unused;
      EXPECT_EQ(rec.empty(), unused);
      from_subwords += rec.empty() ? 0 : 1;
      for (int64_t c = 0; c < C; ++c) {
        double want = 0;
        if (rec.empty()) {
          for (int64_t r = 0; r < old_rows; ++r) want += a[static_cast<size_t>(r * C + c)];
          want /= static_cast<double>(old_rows);
        } else {
          for (const int32_t id : rec) want += a[static_cast<size_t>(id * C + c)];
          want /= static_cast<double>(rec.size());
        }
        // fp64 sums rounded once to fp32: within half an ulp, 2^-24 relative (plus the sums' own rounding).
        const float got = b[static_cast<size_t>((old_rows + k) * C + c)];
        ASSERT_NEAR(got, want, 1.2e-7 * std::fabs(want) + 1e-12) << name << " new row " << k << " col " << c;
      }
    }
    EXPECT_GT(from_subwords, 20);
  }
  // Optimizer moments: old rows identical, new rows zero, other tensors identical.
  const auto oin = read_all(f.in_step + "/optim.h5"), oout = read_all(out_step + "/optim.h5");
  ASSERT_EQ(oin.size(), oout.size());
  int grown = 0;
  for (const auto& [name, a] : oin) {
    const std::vector<float>& b = oout.at(name);
    ASSERT_EQ(std::memcmp(a.data(), b.data(), a.size() * 4), 0) << name;
    if (is_vocab_tensor(name)) {
      ++grown;
      ASSERT_EQ(b.size(), static_cast<size_t>(new_rows * C));
      for (size_t i = a.size(); i < b.size(); ++i) ASSERT_EQ(b[i], 0.0f) << name;
    } else {
      ASSERT_EQ(a.size(), b.size());
    }
  }
  EXPECT_EQ(grown, 4);  // exp_avg and exp_avg_sq of the embedding and the head
  expect_same_logits_on_old_vocab(f.in_step, out_step);

  // Refused: an existing output, a tokenizer that does not extend the checkpoint's, several ranks.
  EXPECT_EQ(run_cli("--checkpoint " + f.dir + "/in --tokenizer " + f.merged_path + " --out " + f.dir + "/out"), 1);
  EXPECT_EQ(run_cli("--checkpoint " + f.dir + "/in --tokenizer " + f.dir + "/zh.model --out " + f.dir + "/o2"), 1);
  EXPECT_EQ(run_cli("--checkpoint " + f.dir + "/nothing --tokenizer " + f.merged_path + " --out " + f.dir + "/o3"), 1);
  EXPECT_FALSE(std::filesystem::exists(f.dir + "/o2/ckpt/latest"));
}

TEST(ResizeVocab, MeanAndNormalWithTiedEmbeddings) {
  const Fixture f = make_fixture("resize_tied", true);
  ASSERT_EQ(run_cli("--checkpoint " + f.in_step + " --tokenizer " + f.merged_path + " --out " + f.dir +
                    "/mean --init mean"), 0);
  ASSERT_EQ(run_cli("--checkpoint " + f.in_step + " --tokenizer " + f.merged_path + " --out " + f.dir +
                    "/normal --init normal --std 0.05 --seed 9"), 0);
  const int64_t old_rows = 300, C = 32;
  const auto in = read_all(f.in_step + "/model.h5");
  const auto& a = in.at("model.embed_tokens.weight");
  EXPECT_EQ(in.count("lm_head.weight"), 0u);
  const auto mean = read_all(f.dir + "/mean/ckpt/step_00000005/model.h5").at("model.embed_tokens.weight");
  const auto normal = read_all(f.dir + "/normal/ckpt/step_00000005/model.h5").at("model.embed_tokens.weight");
  const int64_t new_rows = static_cast<int64_t>(mean.size()) / C;
  for (int64_t c = 0; c < C; ++c) {
    double want = 0;
    for (int64_t r = 0; r < old_rows; ++r) want += a[static_cast<size_t>(r * C + c)];
    want /= static_cast<double>(old_rows);
    for (int64_t r = old_rows; r < new_rows; ++r)
      ASSERT_NEAR(mean[static_cast<size_t>(r * C + c)], want, 1.2e-7 * std::fabs(want) + 1e-12);
  }
  // N(0, 0.05): sample mean and std of the new values, within 4 standard errors.
  double s = 0, s2 = 0;
  const auto n = static_cast<double>((new_rows - old_rows) * C);
  for (size_t i = static_cast<size_t>(old_rows * C); i < normal.size(); ++i) s += normal[i], s2 += normal[i] * normal[i];
  const double m = s / n, sd = std::sqrt(s2 / n - m * m);
  EXPECT_LT(std::fabs(m), 4 * 0.05 / std::sqrt(n));
  EXPECT_LT(std::fabs(sd - 0.05), 4 * 0.05 / std::sqrt(2 * n));
  EXPECT_EQ(std::memcmp(normal.data(), a.data(), a.size() * 4), 0);
  expect_same_logits_on_old_vocab(f.in_step, f.dir + "/mean/ckpt/step_00000005");
}

// A model padded beyond its tokenizer (320 rows, 300 pieces): the padding rows go to new pieces and are
// initialised like them; the 300 real rows stay.
TEST(ResizeVocab, PaddingRowsOfAPaddedModelBecomeNewRows) {
  const Fixture f = make_fixture("resize_padded", false, 320);
  ASSERT_EQ(run_cli("--checkpoint " + f.in_step + " --tokenizer " + f.merged_path + " --out " + f.dir +
                    "/mean --init mean"), 0);
  const int64_t C = 32;
  const auto in = read_all(f.in_step + "/model.h5"), out = read_all(f.dir + "/mean/ckpt/step_00000005/model.h5");
  for (const char* name : {"model.embed_tokens.weight", "lm_head.weight"}) {
    const auto &a = in.at(name), &b = out.at(name);
    ASSERT_EQ(a.size(), static_cast<size_t>(320 * C));
    ASSERT_EQ(b.size() % static_cast<size_t>(16 * C), 0u);
    EXPECT_EQ(std::memcmp(a.data(), b.data(), static_cast<size_t>(300 * C) * 4), 0);
    for (int64_t c = 0; c < C; ++c) {
      double want = 0;
      for (int64_t r = 0; r < 300; ++r) want += a[static_cast<size_t>(r * C + c)];
      want /= 300.0;
      for (size_t r = 300; r < b.size() / static_cast<size_t>(C); ++r)
        ASSERT_NEAR(b[r * static_cast<size_t>(C) + static_cast<size_t>(c)], want, 1.2e-7 * std::fabs(want) + 1e-12);
    }
  }
}

TEST(ResizeVocab, ManyPassesEqualOne) {
  const Fixture f = make_fixture("resize_passes", false);
  VocabResize plan;
  plan.old_rows = 300;
  plan.new_rows = Tokenizer::from_bytes(f.merged, "m").vocab_size();
  plan.recipes = subword_recipes(f.base, f.merged, 300, "merged");
  const ResizeFileStats one = resize_tensor_file(f.in_step + "/model.h5", f.dir + "/one.h5", plan, false, nullptr);
  plan.budget_bytes = 3 * 32 * 8;  // three new rows' sums per pass
  const ResizeFileStats many = resize_tensor_file(f.in_step + "/model.h5", f.dir + "/many.h5", plan, false, nullptr);
  EXPECT_EQ(one.passes, 2);  // one per grown tensor
  EXPECT_GT(many.passes, 20);
  EXPECT_EQ(read_all(f.dir + "/one.h5"), read_all(f.dir + "/many.h5"));
}

}  // namespace
}  // namespace polyllama
