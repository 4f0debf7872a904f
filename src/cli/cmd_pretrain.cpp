// `polyllama pretrain`: continued pretraining (data: data/training_data.hpp; the loop: train/trainer.hpp).
#include <memory>

#include "polyllama/data/training_data.hpp"
#include "train_options.hpp"
#include "verbs.hpp"

namespace polyllama::cli {

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
    PretrainDataConfig dc;
    dc.specs = o->data, dc.seq_len = o->run.train.seq_len, dc.seed = o->run.train.seed;
    dc.val_every = o->run.val_every, dc.blank_line_docs = o->blank_line_docs;
    const TrainingData data = load_pretrain_data(dc, *start.tokenizer, start.cfg.vocab_size);
    return run_training(o->run, start, *m.model, *data.train, data.val.get());
  };
}

}  // namespace polyllama::cli
