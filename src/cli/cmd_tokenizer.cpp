#include <mpi.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "polyllama/core/error.hpp"
#include "polyllama/core/atomic_file.hpp"
#include "polyllama/core/log.hpp"
#include "polyllama/data/fertility.hpp"
#include "polyllama/tokenizer/extend.hpp"
#include "polyllama/tokenizer/sp_model.hpp"
#include "polyllama/tokenizer/stats.hpp"
#include "polyllama/tokenizer/tokenizer.hpp"
#include "verbs.hpp"

namespace polyllama::cli {

namespace {

std::map<std::string, std::string> parse_spm_overrides(const std::vector<std::string>& spm) {
  std::map<std::string, std::string> overrides;
  for (const std::string& kv : spm) {
    const auto eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) fail_input("--spm wants KEY=VALUE, got '" + kv + "'");
    overrides[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  return overrides;
}

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
    train_sentencepiece(o->inputs, o->out, o->vocab, parse_spm_overrides(o->spm));
    const Tokenizer t = Tokenizer::from_file(o->out);
    log_info(fmt("wrote %s: %lld pieces, checksum %s", o->out.c_str(), static_cast<long long>(t.vocab_size()),
                 t.checksum().c_str()));
    print_json_summary(o->json, nlohmann::json{{"model", o->out}, {"vocab_size", t.vocab_size()},
                                               {"checksum", t.checksum()}}.dump());
    return 0;
  };
}

RunFn add_extend(CLI::App* tok) {
  auto* cmd = tok->add_subcommand(
      "extend", "Append a target-language model's pieces to a base tokenizer (LLaMA's): every base piece keeps its "
                "id, score and type, new pieces get the ids after them. The pieces come from --add OTHER.model, or "
                "from a model trained here on --train-on with the base's own settings. Prints the fertility of "
                "both tokenizers on --report (default: the --train-on files). Example: polyllama tokenizer extend "
                "--base llama2.model --train-on zh.txt --new-pieces 20000 --out llama2-zh.model");
  add_config_file(cmd);
  struct Opts {
    std::string base, add, out, scores = "below";
    std::vector<std::string> train_on, spm, report;
    int64_t new_pieces = 20000;
    ExtendOptions ext;
    TextInputOptions in;
    bool json = false;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--base", o->base, "the tokenizer to extend (its ids stay valid)")->required()->check(CLI::ExistingFile);
  auto* add = cmd->add_option("--add", o->add, "a SentencePiece model whose new pieces are appended")
                  ->check(CLI::ExistingFile);
  auto* train = cmd->add_option("--train-on", o->train_on,
                                "text files to train the new pieces on (instead of --add), with the base's model "
                                "type, byte fallback, digit/script splitting and normalizer")
                    ->check(CLI::ExistingFile);
  add->excludes(train);
  cmd->add_option("--new-pieces", o->new_pieces,
                  "--train-on: vocabulary size of the model trained there; pieces the base already has, and "
                  "filtered ones, are not added, so fewer are")
      ->capture_default_str();
  cmd->add_option("--spm", o->spm, "--train-on: override a SentencePiece trainer flag, KEY=VALUE");
  cmd->add_option("--out", o->out, "the merged model, ending in .model (with --train-on the trained model is kept "
                                   "beside it as STEM.train.model)")->required();
  cmd->add_flag("--keep-ascii", o->ext.keep_ascii,
                "keep new pieces containing ASCII letters or digits, or made only of ASCII and spaces (dropped by "
                "default: they would change how numbers and English are split)");
  cmd->add_option("--scores", o->scores,
                  "new pieces' scores: below (under the base's lowest, in the new model's order: base merges "
                  "always win) or zero (as Chinese-LLaMA)")
      ->check(CLI::IsMember({"below", "zero"}))->capture_default_str();
  cmd->add_option("--max-new", o->ext.max_new, "add at most this many pieces, first in the new model's order (0: all)")
      ->capture_default_str();
  cmd->add_option("--pad-to-multiple", o->ext.pad_to_multiple,
                  "round the vocabulary up to a multiple of this with unused pieces (tensor cores, tp x 128; 1: "
                  "no padding)")
      ->capture_default_str();
  cmd->add_option("--report", o->report, "text/JSONL files for the before/after fertility report")
      ->check(CLI::ExistingFile);
  cmd->add_option("--text-field", o->in.text_field, "JSONL field holding the text (--report)")->capture_default_str();
  cmd->add_flag("--json", o->json, "print a one-line JSON summary");
  return [cmd, o, add, train]() {
    if (!cmd->parsed()) return 0;
    if (!add->count() && !train->count()) fail_input("tokenizer extend: give --add OTHER.model or --train-on FILES");
    const std::string suffix = ".model";
    if (o->out.size() <= suffix.size() || o->out.compare(o->out.size() - suffix.size(), suffix.size(), suffix))
      fail_input("tokenizer extend: --out must end in .model, got " + o->out);
    o->ext.scores = o->scores == "zero" ? NewPieceScores::zero : NewPieceScores::below;
    o->ext.validate();
    int world_rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
    const std::string base_bytes = Tokenizer::from_file(o->base).model_bytes();
    std::string add_path = o->add;
    if (!o->train_on.empty()) {
      add_path = o->out.substr(0, o->out.size() - suffix.size()) + ".train.model";
      if (world_rank == 0) {
        auto flags = SpModel::parse(base_bytes, o->base).segmentation_flags();
        for (const auto& [k, v] : parse_spm_overrides(o->spm)) flags[k] = v;
        log_info(fmt("training %lld pieces on %zu file(s) with the base's settings (model_type %s, byte_fallback "
                     "%s, split_digits %s, normalizer %s) -> %s",
                     static_cast<long long>(o->new_pieces), o->train_on.size(), flags["model_type"].c_str(),
                     flags["byte_fallback"].c_str(), flags["split_digits"].c_str(),
                     flags["normalization_rule_name"].c_str(), add_path.c_str()));
        train_sentencepiece(o->train_on, add_path, o->new_pieces, flags);
      }
      MPI_Barrier(MPI_COMM_WORLD);
    }
    const ExtendResult r = extend_vocabulary(base_bytes, o->base, Tokenizer::from_file(add_path).model_bytes(),
                                             add_path, o->ext);
    if (world_rank == 0) write_file_atomically(o->out, r.model_bytes);
    const int64_t total = r.base_pieces + r.added + r.padding;
    log_info(fmt("%s: %lld base pieces + %lld new + %lld unused padding = %lld (of %lld candidates: %lld already "
                 "in the base, %lld with ASCII letters/digits or ASCII only, %lld over --max-new)",
                 o->out.c_str(), static_cast<long long>(r.base_pieces), static_cast<long long>(r.added),
                 static_cast<long long>(r.padding), static_cast<long long>(total),
                 static_cast<long long>(r.candidates), static_cast<long long>(r.skipped_present),
                 static_cast<long long>(r.skipped_ascii), static_cast<long long>(r.skipped_cap)));
    const std::vector<std::string>& report = o->report.empty() ? o->train_on : o->report;
    nlohmann::json fert;
    if (!report.empty()) {
      const StatsReport s = fertility({{o->base, base_bytes}, {o->out, r.model_bytes}}, report, o->in);
      if (world_rank == 0 && !o->json) std::fputs(stats_table(s.infos, s.results).c_str(), stdout);
      fert = nlohmann::json::parse(stats_json(s.infos, s.results));
    }
    print_json_summary(o->json && world_rank == 0,
                       nlohmann::json{{"model", o->out},
                                      {"vocab_size", total},
                                      {"base_pieces", r.base_pieces},
                                      {"added", r.added},
                                      {"padding", r.padding},
                                      {"skipped_present", r.skipped_present},
                                      {"skipped_ascii", r.skipped_ascii},
                                      {"skipped_cap", r.skipped_cap},
                                      {"checksum", fnv1a64_hex(r.model_bytes.data(), r.model_bytes.size())},
                                      {"fertility", fert}}
                           .dump());
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
    std::vector<std::pair<std::string, std::string>> models;  // (path, bytes)
    for (const std::string& path : o->tokenizers) models.emplace_back(path, Tokenizer::from_file(path).model_bytes());
    const StatsReport r = fertility(models, o->inputs, o->in);
    int world_rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
    if (world_rank != 0) return 0;
    if (o->json) print_json_summary(true, stats_json(r.infos, r.results));
    else std::fputs(stats_table(r.infos, r.results).c_str(), stdout);
    std::fflush(stdout);
    return 0;
  };
}

}  // namespace

RunFn add_tokenizer(CLI::App& app) {
  auto* tok = app.add_subcommand(
      "tokenizer", "SentencePiece tokenizers: `tokenizer train`, `tokenizer extend`, `tokenizer stats`");
  tok->require_subcommand(1);
  std::vector<RunFn> verbs = {add_train(tok), add_extend(tok), add_stats(tok)};
  return [verbs]() {
    for (const RunFn& v : verbs)
      if (const int rc = v(); rc != 0) return rc;
    return 0;
  };
}

}  // namespace polyllama::cli
