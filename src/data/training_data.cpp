#include "polyllama/data/training_data.hpp"

#include <algorithm>
#include <filesystem>

#include "polyllama/core/error.hpp"
#include "polyllama/core/log.hpp"
#include "polyllama/data/sampler.hpp"
#include "polyllama/data/sft_stream.hpp"
#include "polyllama/data/token_windows.hpp"
#include "polyllama/data/document_encoder.hpp"

namespace polyllama {

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

bool is_dataset_spec(const std::string& spec) {
  const auto colon = spec.find(':');
  const std::string dir = colon == std::string::npos ? spec : spec.substr(colon + 1);
  return std::filesystem::is_regular_file(std::filesystem::path(dir) / "metadata.json");
}

}  // namespace

TrainingData load_pretrain_data(const PretrainDataConfig& cfg, const Tokenizer& tok, int64_t vocab_size) {
  TrainingData d;
  const auto n_sets = std::count_if(cfg.specs.begin(), cfg.specs.end(), is_dataset_spec);
  if (n_sets > 0 && n_sets != static_cast<std::ptrdiff_t>(cfg.specs.size()))
    fail_input("--data mixes `polyllama data` directories and text files; tokenize the text files with "
               "`polyllama data` too, or pass text files only");
  const double t0 = now_seconds();
  if (n_sets > 0) {
    SamplerConfig sc;
    sc.seq_len = cfg.seq_len;
    sc.seed = cfg.seed;
    sc.val_every = cfg.val_every;
    sc.vocab_size = vocab_size;
    const std::vector<DataSource> sources = parse_data_sources(cfg.specs);
    auto train = std::make_unique<PackedStream>(PackedSampler(sources, sc, DataSplit::train, tok.checksum()));
    for (int k = 0; k < train->sampler().datasets(); ++k)
      log_info(fmt("data: %s: %lld documents, %lld tokens, weight %.3f", sources[static_cast<size_t>(k)].dir.c_str(),
                   static_cast<long long>(train->sampler().documents(k)),
                   static_cast<long long>(train->sampler().tokens(k)), train->sampler().weight(k)));
    d.train = std::move(train);
    if (cfg.val_every > 0) {
      try {
        d.val = std::make_unique<PackedStream>(PackedSampler(sources, sc, DataSplit::validation, tok.checksum()));
      } catch (const Error& e) {  // a held-out split shorter than one window: train without validation
        log_warn(std::string("no validation loss: ") + e.what());
      }
    }
    return d;
  }
  TextCorpus corpus = tokenize_text_files(cfg.specs, tok, cfg.blank_line_docs, cfg.val_every);
  log_info(fmt("data: %lld documents, %zu train tokens, %zu validation tokens (tokenized in %.1fs)",
               static_cast<long long>(corpus.documents), corpus.train.size(), corpus.val.size(), now_seconds() - t0));
  const bool has_val = corpus.val.size() > static_cast<size_t>(cfg.seq_len);
  d.train = std::make_unique<TokenWindows>(std::move(corpus.train), cfg.seq_len, cfg.seed, "training text");
  if (has_val) d.val = std::make_unique<TokenWindows>(std::move(corpus.val), cfg.seq_len, cfg.seed, "validation text");
  return d;
}

TrainingData load_sft_data(const SftDataConfig& cfg, const ChatTemplate& tpl, const Tokenizer& tok) {
  const double t0 = now_seconds();
  SftRecords rec;
  for (const std::string& f : cfg.files) read_sft_file(f, tpl, cfg.skip_invalid, rec);
  if (rec.skipped > 0) {
    log_warn(fmt("sft: skipped %lld invalid records, e.g.:", static_cast<long long>(rec.skipped)));
    for (const std::string& e : rec.skip_examples) log_warn("  " + e);
  }
  DocumentEncoder encoder(tok, "auto", "the checkpoint's tokenizer");
  SftTokenizeOptions to;
  to.max_tokens = cfg.seq_len + 1;
  to.truncation = cfg.truncation;
  to.bos_id = tok.bos_id();
  to.eos_id = tok.eos_id();
  to.threads = cfg.threads;
  std::vector<Conversation> train_convs, val_convs;
  for (size_t i = 0; i < rec.conversations.size(); ++i)
    (cfg.val_every > 0 && (i + 1) % static_cast<size_t>(cfg.val_every) == 0 ? val_convs : train_convs)
        .push_back(std::move(rec.conversations[i]));
  if (cfg.max_examples > 0) {
    // After the validation split, so every SFT size is validated on the same held-out examples.
    if (static_cast<size_t>(cfg.max_examples) > train_convs.size())
      fail_input(fmt("--max-examples %lld: the instruction files hold only %zu training examples (%zu records, every "
                     "%lldth held out for validation)",
                     static_cast<long long>(cfg.max_examples), train_convs.size(), rec.conversations.size(),
                     static_cast<long long>(cfg.val_every)));
    std::vector<Conversation> kept;
    for (size_t i : sft_subset(train_convs.size(), static_cast<size_t>(cfg.max_examples), cfg.seed))
      kept.push_back(std::move(train_convs[i]));
    log_info(fmt("sft data: --max-examples %lld of %zu training examples (seed %llu)",
                 static_cast<long long>(cfg.max_examples), train_convs.size(),
                 static_cast<unsigned long long>(cfg.seed)));
    train_convs = std::move(kept);
  }
  const EncodeFn encode = encoder.fn();
  SftTokenStats st, vst;
  std::vector<SftExample> train_ex = tokenize_conversations(train_convs, tpl, encode, to, &st);
  std::vector<SftExample> val_ex = tokenize_conversations(val_convs, tpl, encode, to, &vst);
  log_info(fmt("sft data: %lld train + %lld validation examples, %lld tokens, %.1f%% of them trained | truncated "
               "%lld, dropped %lld, invalid %lld | template %s | %.1fs",
               static_cast<long long>(st.examples), static_cast<long long>(vst.examples),
               static_cast<long long>(st.tokens),
               100.0 * static_cast<double>(st.trained_tokens) / static_cast<double>(std::max<int64_t>(1, st.tokens)),
               static_cast<long long>(st.truncated + vst.truncated), static_cast<long long>(st.dropped + vst.dropped),
               static_cast<long long>(rec.skipped), tpl.name.c_str(), now_seconds() - t0));

  SftPackingConfig pc;
  pc.seq_len = cfg.seq_len;
  pc.seed = cfg.seed;
  pc.open_bins = cfg.open_bins;
  pc.pack = cfg.pack;
  pc.pad_id = tok.eos_id();
  TrainingData d;
  auto train = std::make_unique<SftPackedStream>(std::move(train_ex), pc, "sft training examples");
  log_info(fmt("sft packing: %lld rows of %lld positions per epoch, %.1f%% filled",
               static_cast<long long>(train->rows(0)), static_cast<long long>(pc.seq_len), 100.0 * train->fill(0)));
  d.train = std::move(train);
  pc.shuffle = false;
  if (!val_ex.empty()) d.val = std::make_unique<SftPackedStream>(std::move(val_ex), pc, "sft validation examples");
  return d;
}

}  // namespace polyllama
