#include <nlohmann/json.hpp>

#include "polyllama/core/error.hpp"
#include "polyllama/core/log.hpp"
#include "polyllama/tokenizer/tokenizer.hpp"
#include "verbs.hpp"

namespace polyllama::cli {

RunFn add_tokenizer(CLI::App& app) {
  auto* tok = app.add_subcommand("tokenizer", "SentencePiece tokenizers: `tokenizer train`");
  tok->require_subcommand(1);
  auto* train = tok->add_subcommand(
      "train", "Train a SentencePiece model with LLaMA's settings (bpe, byte_fallback, split_digits, identity "
               "normalization, unk/bos/eos = 0/1/2). Example: polyllama tokenizer train --input zh.txt "
               "--vocab-size 20000 --out zh.model");
  add_config_file(train);
  struct Opts {
    std::vector<std::string> inputs, spm;
    std::string out;
    int64_t vocab = 32000;
    bool json = false;
  };
  auto o = std::make_shared<Opts>();
  train->add_option("--input", o->inputs, "text files, one sentence or paragraph per line")->required();
  train->add_option("--vocab-size", o->vocab, "pieces in the model")->capture_default_str();
  train->add_option("--out", o->out, "output path, ending in .model (a .vocab is written beside it)")->required();
  train->add_option("--spm", o->spm,
                    "override any SentencePiece trainer flag as KEY=VALUE, e.g. --spm model_type=unigram "
                    "--spm character_coverage=1.0 --spm input_sentence_size=2000000");
  train->add_flag("--json", o->json, "print a one-line JSON summary");
  return [train, o]() {
    if (!train->parsed()) return 0;
    std::map<std::string, std::string> overrides;
    for (const std::string& kv : o->spm) {
      const auto eq = kv.find('=');
      if (eq == std::string::npos || eq == 0) fail_input("--spm wants KEY=VALUE, got '" + kv + "'");
      overrides[kv.substr(0, eq)] = kv.substr(eq + 1);
    }
    train_sentencepiece(o->inputs, o->out, o->vocab, overrides);
    const Tokenizer t = Tokenizer::from_file(o->out);
    log_info(fmt("wrote %s: %lld pieces, checksum %s", o->out.c_str(), static_cast<long long>(t.vocab_size()),
                 t.checksum().c_str()));
    print_json_summary(o->json, nlohmann::json{{"model", o->out}, {"vocab_size", t.vocab_size()},
                                               {"checksum", t.checksum()}}.dump());
    return 0;
  };
}

}  // namespace polyllama::cli
