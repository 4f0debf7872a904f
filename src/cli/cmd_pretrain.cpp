#include <mpi.h>

#include <algorithm>
#include <filesystem>
#include <memory>

#include <nlohmann/json.hpp>

#include "polyllama/backend/cpu/cpu_backend.hpp"
#include "polyllama/core/log.hpp"
#include "polyllama/data/sampler.hpp"
#include "polyllama/tokenizer/tokenizer.hpp"
#include "polyllama/train/trainer.hpp"
#include "train_options.hpp"
#include "verbs.hpp"

namespace polyllama::cli {

namespace {

// A `polyllama data` dataset (or blend of them) as the trainer's sample stream. Evaluation windows follow the
// blend (sample w of the validation stream), so a bounded evaluation weighs the languages as training does.
class PackedStream final : public SampleStream {
 public:
  explicit PackedStream(PackedSampler s) : s_(std::move(s)) {}
  void sample(int64_t i, int32_t* in, int32_t* tgt) const override { s_.sample(i, in, tgt); }
  int64_t windows() const override { return s_.windows(); }
  int64_t seq_len() const override { return s_.seq_len(); }
  void window(int64_t w, int32_t* in, int32_t* tgt) const override { s_.sample(w, in, tgt); }
  const PackedSampler& sampler() const { return s_; }

 private:
  PackedSampler s_;
};

struct TrainingData {
  std::unique_ptr<SampleStream> train, val;
};

bool is_dataset_spec(const std::string& spec) {
  const auto colon = spec.find(':');
  const std::string dir = colon == std::string::npos ? spec : spec.substr(colon + 1);
  return std::filesystem::is_regular_file(std::filesystem::path(dir) / "metadata.json");
}

// --data is either plain-text files (tokenized here, in memory) or `polyllama data` directories, optionally
// weighted as WEIGHT:DIR (read through the sampler, blended).
TrainingData load_data(const std::vector<std::string>& specs, const Tokenizer& tok, const ModelConfig& cfg,
                       const TrainConfig& t, bool blank_line_docs, int64_t val_every) {
  TrainingData d;
  const auto n_sets = std::count_if(specs.begin(), specs.end(), is_dataset_spec);
  if (n_sets > 0 && n_sets != static_cast<std::ptrdiff_t>(specs.size()))
    fail_input("--data mixes `polyllama data` directories and text files; tokenize the text files with "
               "`polyllama data` too, or pass text files only");
  const double t0 = now_seconds();
  if (n_sets > 0) {
    SamplerConfig sc;
    sc.seq_len = t.seq_len;
    sc.seed = t.seed;
    sc.val_every = val_every;
    sc.vocab_size = cfg.vocab_size;
    const std::vector<DataSource> sources = parse_data_sources(specs);
    auto train = std::make_unique<PackedStream>(PackedSampler(sources, sc, DataSplit::train, tok.checksum()));
    for (int k = 0; k < train->sampler().datasets(); ++k)
      log_info(fmt("data: %s: %lld documents, %lld tokens, weight %.3f", sources[static_cast<size_t>(k)].dir.c_str(),
                   static_cast<long long>(train->sampler().documents(k)),
                   static_cast<long long>(train->sampler().tokens(k)), train->sampler().weight(k)));
    d.train = std::move(train);
    if (val_every > 0) {
      try {
        d.val = std::make_unique<PackedStream>(PackedSampler(sources, sc, DataSplit::validation, tok.checksum()));
      } catch (const Error& e) {  // a held-out split shorter than one window: train without validation
        log_warn(std::string("no validation loss: ") + e.what());
      }
    }
    return d;
  }
  TextCorpus corpus = tokenize_text_files(specs, tok, blank_line_docs, val_every);
  log_info(fmt("data: %lld documents, %zu train tokens, %zu validation tokens (tokenized in %.1fs)",
               static_cast<long long>(corpus.documents), corpus.train.size(), corpus.val.size(), now_seconds() - t0));
  const bool has_val = corpus.val.size() > static_cast<size_t>(t.seq_len);
  d.train = std::make_unique<TokenWindows>(std::move(corpus.train), t.seq_len, t.seed, "training text");
  if (has_val) d.val = std::make_unique<TokenWindows>(std::move(corpus.val), t.seq_len, t.seed, "validation text");
  return d;
}

}  // namespace

RunFn add_pretrain(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "pretrain",
      "Continued pretraining on `polyllama data` datasets (blended by weight) or plain text. Resumes from "
      "RUN/ckpt/latest when present (written by `init` or an earlier run), else starts from --init-from. Example: "
      "polyllama pretrain --run-dir run --data zh.txt --steps 300 --seq-len 128 --micro-batch 8");
  add_config_file(cmd);
  struct Opts {
    TrainOptions run;
    std::vector<std::string> data;
    bool blank_line_docs = false;
  };
  auto o = std::make_shared<Opts>();
  add_train_options(cmd, o->run);
  cmd->add_option("--data", o->data,
                  "what to train on: `polyllama data` directories, each optionally weighted as WEIGHT:DIR "
                  "(0.9:zh 0.1:en blends 90/10), or plain-text files tokenized in memory")
      ->required();
  cmd->add_flag("--blank-line-docs", o->blank_line_docs, "a blank line ends a document (default: one per file)");

  return [cmd, o]() {
    if (!cmd->parsed()) return 0;
    const StartPoint start = find_start(o->run, "pretrain");
    LoadedModel m = load_model(o->run, start);
    const TrainingData data =
        load_data(o->data, *start.tokenizer, start.cfg, o->run.train, o->blank_line_docs, o->run.val_every);
    return run_training(o->run, start, *m.model, *data.train, data.val.get());
  };
}

}  // namespace polyllama::cli
