// `polyllama sft`: instruction tuning (data: data/training_data.hpp; the loop: train/trainer.hpp).
#include <memory>

#include "polyllama/data/training_data.hpp"
#include "train_options.hpp"
#include "verbs.hpp"

namespace polyllama::cli {

RunFn add_sft(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "sft",
      "Instruction tuning: loss on answer tokens only, examples packed into rows without attending to each other. "
      "Reads Alpaca/BELLE records (instruction, input, output) and conversations ({conversations: [{from, value}]} "
      "or {messages: [{role, content}]}) as JSON lines or a JSON array, .gz too. Starts like pretrain (resumes "
      "RUN/ckpt/latest, else --init-from). Example: polyllama sft --run-dir sft --init-from pt/ckpt/latest "
      "--data belle.jsonl --template alpaca --steps 1000 --seq-len 512 --micro-batch 8 --lr 2e-5");
  add_config_file(cmd);
  struct Opts {
    TrainOptions run;
    std::vector<std::string> data;
    std::string tpl = "alpaca", truncation = "cut", tokenizer;
    bool skip_invalid = false, no_packing = false;
    int open_bins = 64;
    int64_t max_examples = 0;
  };
  auto o = std::make_shared<Opts>();
  add_train_options(cmd, o->run);
  cmd->add_option("--data", o->data, "instruction files (.json array or .jsonl, optionally .gz)")->required();
  cmd->add_option("--template", o->tpl,
                  "prompt template: plain, alpaca, llama2-chat, chinese-llama2, vicuna, or a JSON template file "
                  "(README: Instruction tuning); stored in the checkpoint for `generate --chat`")
      ->capture_default_str();
  cmd->add_option("--truncation", o->truncation,
                  "examples longer than seq-len + 1 tokens: cut (keep the start, drop it if no answer token is "
                  "left) or drop")
      ->capture_default_str();
  cmd->add_option("--max-examples", o->max_examples,
                  "train on N of the training examples (after the --val-every split, so validation is the same for "
                  "every N): those a --seed-keyed draw ranks first, so a smaller N is a subset of a larger one under "
                  "the same seed, as the study's SFT sizes (1K, 5K, ...) are; 0: all")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->add_flag("--skip-invalid", o->skip_invalid, "count and skip malformed records instead of stopping");
  cmd->add_option("--open-bins", o->open_bins, "packing: rows kept open for first-fit (1: next fit)")
      ->capture_default_str();
  cmd->add_flag("--no-packing", o->no_packing, "one example per row, padded (slower; for comparison)");
  cmd->add_option("--tokenizer", o->tokenizer,
                  "the tokenizer you expect the checkpoint to have; a different one is refused (the checkpoint's "
                  "own tokenizer is always the one used)");

  return [cmd, o]() {
    if (!cmd->parsed()) return 0;
    StartPoint start = find_start(o->run, "sft");
    const Tokenizer& tok = *start.tokenizer;
    if (!o->tokenizer.empty()) {
      const Tokenizer want = Tokenizer::from_file(o->tokenizer);
      if (want.checksum() != tok.checksum())
        fail_input("--tokenizer " + o->tokenizer + " (checksum " + want.checksum() + ") differs from the tokenizer of " +
                   start.dir + " (checksum " + tok.checksum() + ")");
    }
    const ChatTemplate tpl = ChatTemplate::load(o->tpl);
    SftDataConfig dc;
    dc.files = o->data, dc.truncation = parse_truncation(o->truncation), dc.skip_invalid = o->skip_invalid;
    dc.seq_len = o->run.train.seq_len, dc.seed = o->run.train.seed, dc.val_every = o->run.val_every;
    dc.max_examples = o->max_examples, dc.open_bins = o->open_bins, dc.pack = !o->no_packing, dc.threads = o->run.threads > 0 ? o->run.threads : 2;
    const TrainingData data = load_sft_data(dc, tpl, tok);
    start.meta.chat_template_json = tpl.to_json();
    LoadedModel m = load_model(o->run, start);
    return run_training(o->run, start, *m.model, *data.train, data.val.get());
  };
}

}  // namespace polyllama::cli
