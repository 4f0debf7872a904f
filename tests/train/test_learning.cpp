// Training learns: on a real text, a small model's validation loss falls far below the unigram entropy of the
// text (the best any model that ignores context can do) within a few hundred steps.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <map>

#include <nlohmann/json.hpp>

#include "polyllama/backend/cpu/cpu_backend.hpp"
#include "polyllama/tokenizer/tokenizer.hpp"
#include "polyllama/train/trainer.hpp"
#include "test_support.hpp"

using namespace polyllama;

namespace {
// Entropy in nats of the token frequencies of a stream.
double unigram_entropy(const std::vector<int32_t>& toks) {
  std::map<int32_t, int64_t> counts;
  for (int32_t t : toks) ++counts[t];
  double h = 0;
  for (const auto& [t, c] : counts) {
    const double p = static_cast<double>(c) / static_cast<double>(toks.size());
    h -= p * std::log(p);
  }
  return h;
}
}  // namespace

TEST(Learning, LossFallsWellBelowUnigramEntropy) {
  std::string text = test::shared_data("corpora/en/tinyshakespeare_input.txt");
  if (text.empty()) GTEST_SKIP() << "../shared/data/corpora/en/tinyshakespeare_input.txt not present";
  const std::string dir = test::temp_dir("learning");
  train_sentencepiece({text}, dir + "/tok.model", 512, {{"minloglevel", "2"}});
  const Tokenizer tok = Tokenizer::from_file(dir + "/tok.model");
  TextCorpus corpus = tokenize_text_files({text}, tok, /*blank_line_docs=*/true, /*val_every=*/20);
  const double h_unigram = unigram_entropy(corpus.train);

  ModelConfig cfg = ModelConfig::preset("tiny");  // 64 wide, 2 layers, 4 heads / 2 kv
  cfg.vocab_size = tok.vocab_size();
  cfg.hidden_size = 128;
  cfg.intermediate_size = 352;
  CpuBackend be(2);
  LlamaModel model(cfg, be);
  model.init_random(1, 0.02);
  TrainConfig tc;
  tc.run_dir = dir + "/run";
  tc.steps = 300;
  tc.seq_len = 64;
  tc.micro_batch = 16;
  tc.log_interval = 100;
  tc.eval_batches = 0;  // the whole validation text
  model.allocate_activations(tc.micro_batch, tc.seq_len);
  OptimConfig oc;
  oc.lr = 3e-3;
  oc.min_lr = 3e-4;
  oc.warmup_steps = 30;
  TokenWindows train(std::move(corpus.train), tc.seq_len, 7, "train");
  TokenWindows val(std::move(corpus.val), tc.seq_len, 7, "val");
  CheckpointMeta meta;
  meta.config_json = cfg.to_hf_json().dump();
  meta.tokenizer_bytes = tok.model_bytes();
  Trainer trainer(tc, oc, model, train, &val, meta);
  const TrainResult r = trainer.run();

  std::printf("unigram entropy %.3f nats, first loss %.3f, final val loss %.3f\n", h_unigram, r.losses.front(),
              r.last_val_loss);
  RecordProperty("unigram_entropy", std::to_string(h_unigram));
  RecordProperty("val_loss", std::to_string(r.last_val_loss));
  // At init the loss is ln(vocab) = 6.24 nats (weights of std 0.02 give near-uniform logits); a context-free
  // model bottoms out at the unigram entropy (5.08 nats here). Measured: val loss 3.12 after 300 steps. The
  // bound asks for 1.5 nats below the unigram entropy, which only a model that uses context reaches, and leaves
  // 0.45 nats of margin for thread-count and libm differences.
  EXPECT_NEAR(r.losses.front(), std::log(static_cast<double>(cfg.vocab_size)), 0.1);
  EXPECT_LT(r.last_val_loss, h_unigram - 1.5);
  std::filesystem::remove_all(dir);
}
