#include <algorithm>
#include <memory>

#include "polyllama/core/log.hpp"
#include "polyllama/data/sft_stream.hpp"
#include "polyllama/tokenizer/fast_bpe.hpp"
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
    const Truncation trunc = parse_truncation(o->truncation);

    const double t0 = now_seconds();
    SftRecords rec;
    for (const std::string& f : o->data) read_sft_file(f, tpl, o->skip_invalid, rec);
    if (rec.skipped > 0) {
      log_warn(fmt("sft: skipped %lld invalid records, e.g.:", static_cast<long long>(rec.skipped)));
      for (const std::string& e : rec.skip_examples) log_warn("  " + e);
    }
    std::string why;
    const std::unique_ptr<FastBpe> fast = FastBpe::create(tok.model_bytes(), &why);
    SftTokenizeOptions to;
    to.max_tokens = o->run.train.seq_len + 1;
    to.truncation = trunc;
    to.bos_id = tok.bos_id();
    to.eos_id = tok.eos_id();
    to.threads = o->run.threads > 0 ? o->run.threads : 2;
    std::vector<Conversation> train_convs, val_convs;
    for (size_t i = 0; i < rec.conversations.size(); ++i)
      (o->run.val_every > 0 && (i + 1) % static_cast<size_t>(o->run.val_every) == 0 ? val_convs : train_convs)
          .push_back(std::move(rec.conversations[i]));
    // FastBpe gives SentencePiece's ids exactly (tests/tokenizer/test_fast_bpe.cpp); SentencePiece itself otherwise.
    const EncodeFn encode = [&](const std::string& text, std::vector<int32_t>& ids) {
      if (fast)
        fast->encode(text, ids);
      else
        ids = tok.encode(text);
    };
    SftTokenStats st, vst;
    std::vector<SftExample> train_ex = tokenize_conversations(train_convs, tpl, encode, to, &st);
    std::vector<SftExample> val_ex = tokenize_conversations(val_convs, tpl, encode, to, &vst);
    log_info(fmt("sft data: %lld train + %lld validation examples, %lld tokens, %.1f%% of them trained | truncated "
                 "%lld, dropped %lld, invalid %lld | template %s | %.1fs",
                 static_cast<long long>(st.examples), static_cast<long long>(vst.examples),
                 static_cast<long long>(st.tokens), 100.0 * static_cast<double>(st.trained_tokens) /
                                                        static_cast<double>(std::max<int64_t>(1, st.tokens)),
                 static_cast<long long>(st.truncated + vst.truncated), static_cast<long long>(st.dropped + vst.dropped),
                 static_cast<long long>(rec.skipped), tpl.name.c_str(), now_seconds() - t0));

    SftPackingConfig pc;
    pc.seq_len = o->run.train.seq_len;
    pc.seed = o->run.train.seed;
    pc.open_bins = o->open_bins;
    pc.pack = !o->no_packing;
    pc.pad_id = tok.eos_id();
    const SftPackedStream train(std::move(train_ex), pc, "sft training examples");
    pc.shuffle = false;
    std::unique_ptr<SftPackedStream> val;
    if (!val_ex.empty()) val = std::make_unique<SftPackedStream>(std::move(val_ex), pc, "sft validation examples");
    log_info(fmt("sft packing: %lld rows of %lld positions per epoch, %.1f%% filled", static_cast<long long>(train.rows(0)),
                 static_cast<long long>(pc.seq_len), 100.0 * train.fill(0)));

    start.meta.chat_template_json = tpl.to_json();
    LoadedModel m = load_model(o->run, start);
    return run_training(o->run, start, *m.model, train, val.get());
  };
}

}  // namespace polyllama::cli
