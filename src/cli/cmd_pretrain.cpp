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
      "Continued pretraining on `polyllama data` datasets (blended by weight) or plain text. Resumes from RUN/ckpt/latest when present (written by `init` or an "
      "earlier run), else starts from --init-from. Example: polyllama pretrain --run-dir run --data zh.txt "
      "--steps 300 --seq-len 128 --micro-batch 8");
  add_config_file(cmd);
  struct Opts {
    TrainConfig train;
    OptimConfig optim;
    std::vector<std::string> data;
    std::string init_from;
    bool no_resume = false, blank_line_docs = false, json = false;
    int64_t val_every = 20;
    int threads = 0;
  };
  auto o = std::make_shared<Opts>();
  TrainConfig& t = o->train;
  OptimConfig& op = o->optim;
  cmd->add_option("--run-dir", t.run_dir, "run directory: ckpt/, metrics.jsonl")->required();
  cmd->add_option("--data", o->data,
                  "what to train on: `polyllama data` directories, each optionally weighted as WEIGHT:DIR "
                  "(0.9:zh 0.1:en blends 90/10), or plain-text files tokenized in memory")
      ->required();
  cmd->add_option("--init-from", o->init_from, "checkpoint step directory to start from when RUN has none");
  cmd->add_flag("--no-resume", o->no_resume, "refuse to continue an existing run directory");
  cmd->add_flag("--blank-line-docs", o->blank_line_docs, "a blank line ends a document (default: one per file)");
  cmd->add_option("--val-every", o->val_every, "every Nth document is held out for validation (0: none)")
      ->capture_default_str();
  cmd->add_option("--steps", t.steps, "optimizer steps in the whole run")->capture_default_str();
  cmd->add_option("--seq-len", t.seq_len, "tokens per sequence")->capture_default_str();
  cmd->add_option("--micro-batch", t.micro_batch, "sequences per forward/backward")->capture_default_str();
  cmd->add_option("--global-batch", t.global_batch, "sequences per optimizer step (multiple of micro-batch)");
  cmd->add_option("--log-interval", t.log_interval, "steps between progress lines")->capture_default_str();
  cmd->add_option("--eval-interval", t.eval_interval, "steps between validation losses (0: at the end)");
  cmd->add_option("--eval-batches", t.eval_batches, "micro-batches per validation (0: all)")->capture_default_str();
  cmd->add_option("--save-interval", t.save_interval, "steps between checkpoints (0: at the end)");
  cmd->add_option("--keep-last", t.keep_last, "checkpoints to keep (0: all)");
  cmd->add_option("--seed", t.seed, "data-order seed")->capture_default_str();
  cmd->add_option("--lr", op.lr, "peak learning rate")->capture_default_str()->group("Optimizer");
  cmd->add_option("--min-lr", op.min_lr, "learning rate at the end of cosine decay")->capture_default_str()->group("Optimizer");
  cmd->add_option("--warmup-steps", op.warmup_steps, "linear warmup steps")->capture_default_str()->group("Optimizer");
  cmd->add_option("--weight-decay", op.weight_decay, "AdamW decoupled weight decay (not on norms)")
      ->capture_default_str()->group("Optimizer");
  cmd->add_option("--beta1", op.beta1, "AdamW beta1")->capture_default_str()->group("Optimizer");
  cmd->add_option("--beta2", op.beta2, "AdamW beta2")->capture_default_str()->group("Optimizer");
  cmd->add_option("--adam-eps", op.eps, "AdamW epsilon")->capture_default_str()->group("Optimizer");
  cmd->add_option("--grad-clip", op.grad_clip, "max global gradient norm (0: off)")->capture_default_str()->group("Optimizer");
  cmd->add_option("--threads", o->threads, "CPU threads (default: OMP_NUM_THREADS or all cores)");
  cmd->add_flag("--json", o->json, "print a one-line JSON summary at the end");

  return [cmd, o]() {
    if (!cmd->parsed()) return 0;
    int world_size = 1;
    MPI_Comm_size(MPI_COMM_WORLD, &world_size);
    if (world_size > 1)
      fail_input("pretrain runs on one rank in this version (data and tensor parallelism come with --tp); "
                 "launched with " + std::to_string(world_size) + " ranks");
    o->train.validate();
    o->optim.validate();
    const std::string ckpt_root = o->train.run_dir + "/ckpt";
    std::string start = latest_checkpoint(ckpt_root);
    if (!start.empty() && o->no_resume && !read_meta(start + "/model.h5").trainer_json.empty())
      fail_input(o->train.run_dir + " already holds a training checkpoint (" + start +
                 "); remove --no-resume to continue it or choose a new --run-dir");
    const bool resuming = !start.empty();
    if (start.empty()) start = o->init_from;
    if (start.empty())
      fail_input(o->train.run_dir + " has no checkpoint: run `polyllama init --run-dir " + o->train.run_dir +
                 "` first, or pass --init-from STEP_DIR");
    const CheckpointMeta meta = read_meta(start + "/model.h5");
    const ModelConfig cfg = ModelConfig::from_hf_json(nlohmann::json::parse(meta.config_json), start + "/model.h5");
    const Tokenizer tok = Tokenizer::from_bytes(meta.tokenizer_bytes, start + "/model.h5");
    if (o->train.seq_len > cfg.max_position_embeddings)
      fail_input("--seq-len " + std::to_string(o->train.seq_len) + " exceeds the model's max_position_embeddings " +
                 std::to_string(cfg.max_position_embeddings));

    CpuBackend be(o->threads);
    LlamaModel model(cfg, be, DType::f32);
    read_tensor_file(start + "/model.h5", model_tensors(model));
    model.allocate_activations(o->train.micro_batch, o->train.seq_len);

    const TrainingData data = load_data(o->data, tok, cfg, o->train, o->blank_line_docs, o->val_every);
    log_info(fmt("model: %.2fM params, %lld layers, hidden %lld, heads %lld/%lld kv, vocab %lld | %zu MiB weights, "
                 "%zu MiB activations | %d threads",
                 static_cast<double>(cfg.total_params()) / 1e6, static_cast<long long>(cfg.num_hidden_layers),
                 static_cast<long long>(cfg.hidden_size), static_cast<long long>(cfg.num_attention_heads),
                 static_cast<long long>(cfg.num_key_value_heads), static_cast<long long>(cfg.vocab_size),
                 model.parameter_bytes() >> 20, model.activation_bytes() >> 20, be.threads()));
    Trainer trainer(o->train, o->optim, model, *data.train, data.val.get(), meta);
    if (resuming) trainer.resume_from(start);  // --init-from takes weights only: a new run starts at step 0
    install_stop_signal_handlers();
    const TrainResult r = trainer.run();
    print_json_summary(o->json, nlohmann::json{{"step", trainer.state().step},
                                               {"consumed_tokens", trainer.state().consumed_tokens},
                                               {"loss", r.losses.empty() ? -1.0 : r.losses.back()},
                                               {"val_loss", r.last_val_loss},
                                               {"tokens_per_s", r.tokens_per_s},
                                               {"stopped_by_signal", r.stopped_by_signal}}.dump());
    return r.stopped_by_signal ? static_cast<int>(kExitSignal) : 0;
  };
}

}  // namespace polyllama::cli
