#include <mpi.h>

#include <cstdio>

#include <nlohmann/json.hpp>

#include "polyllama/core/error.hpp"
#include "polyllama/core/log.hpp"
#include "polyllama/data/text_input.hpp"
#include "polyllama/tokenizer/stats.hpp"
#include "polyllama/tokenizer/tokenizer.hpp"
#include "verbs.hpp"

namespace polyllama::cli {

namespace {

RunFn add_train(CLI::App* tok) {
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

RunFn add_stats(CLI::App* tok) {
  auto* stats = tok->add_subcommand(
      "stats", "Fertility per input file and Unicode script: characters, tokens, tokens per character and per "
               "whitespace word (scripts written with spaces), and the share of byte-fallback pieces, for one or "
               "more tokenizers side by side. Example: polyllama tokenizer stats --tokenizer llama2.model "
               "zh.model --input zh.txt en.txt");
  add_config_file(stats);
  struct Opts {
    std::vector<std::string> tokenizers, inputs;
    TextInputOptions in;
    bool json = false;
  };
  auto o = std::make_shared<Opts>();
  stats->add_option("--tokenizer", o->tokenizers, "SentencePiece .model files to compare")
      ->required()->check(CLI::ExistingFile);
  stats->add_option("--input", o->inputs, "text or JSONL files (optionally .gz), each reported separately")
      ->required()->check(CLI::ExistingFile);
  stats->add_option("--format", o->in.format, "auto (.jsonl/.ndjson[.gz] are JSONL), text or jsonl")
      ->capture_default_str();
  stats->add_option("--text-field", o->in.text_field, "JSONL field holding the text")->capture_default_str();
  stats->add_flag("--blank-line-docs", o->in.blank_line_docs,
                  "text: a blank line ends a document (default: each file is one document); each document is "
                  "encoded on its own, with SentencePiece's leading space, as `data` does");
  stats->add_flag("--skip-invalid", o->in.skip_invalid, "JSONL: skip malformed lines instead of failing");
  stats->add_flag("--json", o->json, "print one JSON document instead of the tables");
  return [stats, o]() {
    if (!stats->parsed()) return 0;
    std::vector<StatsTokenizer> toks;
    std::vector<TokenizerInfo> infos;
    for (const std::string& path : o->tokenizers) {
      const Tokenizer t = Tokenizer::from_file(path);
      toks.emplace_back(t.model_bytes(), path);
      infos.push_back({path, t.checksum(), t.vocab_size(), toks.back().byte_pieces()});
    }
    std::vector<const StatsTokenizer*> ptrs;
    for (const StatsTokenizer& t : toks) ptrs.push_back(&t);
    std::vector<TextStats> results;
    TextStats all;
    all.name = "all inputs";
    for (const InputFile& in : describe_inputs(o->inputs, o->in)) {
      TextStats s;
      s.name = in.path;
      DocumentReader reader({in}, plan_pieces({in}, o->in, 0, 1), o->in);
      std::string text;
      int64_t file = 0;
      while (reader.next(text, file)) add_document_stats(text, ptrs, s);
      if (reader.counts()[0].skipped > 0)
        log_warn(fmt("%s: skipped %lld invalid lines, first: %s", in.path.c_str(),
                     static_cast<long long>(reader.counts()[0].skipped), reader.skip_examples().front().c_str()));
      all.merge(s);
      results.push_back(std::move(s));
    }
    if (results.size() > 1) results.push_back(all);
    int world_rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
    if (world_rank != 0) return 0;
    if (o->json) print_json_summary(true, stats_json(infos, results));
    else std::fputs(stats_table(infos, results).c_str(), stdout);
    std::fflush(stdout);
    return 0;
  };
}

}  // namespace

RunFn add_tokenizer(CLI::App& app) {
  auto* tok = app.add_subcommand("tokenizer", "SentencePiece tokenizers: `tokenizer train`, `tokenizer stats`");
  tok->require_subcommand(1);
  RunFn train = add_train(tok), stats = add_stats(tok);
  return [train, stats]() {
    const int rc = train();
    return rc != 0 ? rc : stats();
  };
}

}  // namespace polyllama::cli
