// `polyllama data`: raw text / JSONL (optionally gzip) to token shards (DESIGN.md section 5). Every rank reads
// its share of the inputs (text_input.hpp), writes its own shards into OUT.tmp, and rank 0 gathers the ranks'
// counts, writes metadata.json and renames OUT.tmp to OUT.
#include <mpi.h>

#include <algorithm>
#include <fstream>
#include <memory>

#include <nlohmann/json.hpp>

#include "polyllama/core/error.hpp"
#include "polyllama/core/log.hpp"
#include "polyllama/data/shards.hpp"
#include "polyllama/data/text_input.hpp"
#include "polyllama/data/document_encoder.hpp"
#include "polyllama/parallel/parallel.hpp"
#include "polyllama/tokenizer/tokenizer.hpp"
#include "verbs.hpp"

namespace polyllama::cli {

namespace {

std::string eta_text(double seconds) {
  if (!(seconds >= 0) || seconds > 1e7) return "?";
  const auto s = static_cast<long long>(seconds + 0.5);
  return s >= 3600 ? fmt("%lldh%02lldm", s / 3600, s / 60 % 60) : fmt("%lldm%02llds", s / 60, s % 60);
}

}  // namespace

RunFn add_data(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "data", "Tokenize text or JSONL files (optionally .gz) into token shards for pretraining. Under mpirun the "
              "ranks split the inputs, by file and by byte ranges cut at document boundaries, and write in "
              "parallel; the result does not depend on the number of ranks. Example: mpirun -np 8 polyllama data "
              "--tokenizer zh.model --input corpus.jsonl.gz --out data/zh");
  add_config_file(cmd);
  struct Opts {
    std::vector<std::string> inputs;
    std::string tokenizer, out, encoder = "auto";
    TextInputOptions in;
    ShardPipelineOptions pipe;
    bool overwrite = false, json = false;
    double progress_interval = 10;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--input", o->inputs, "text or JSONL files, in order; .gz (gzip) is read transparently")
      ->required();
  cmd->add_option("--tokenizer", o->tokenizer, "SentencePiece .model to encode with")->required();
  cmd->add_option("--out", o->out, "output dataset directory (written as OUT.tmp, renamed when complete)")
      ->required();
  cmd->add_option("--format", o->in.format, "auto (.jsonl/.ndjson[.gz] are JSONL, the rest text), text or jsonl")
      ->capture_default_str();
  cmd->add_option("--text-field", o->in.text_field, "JSONL: top-level string field holding each document")
      ->capture_default_str();
  cmd->add_flag("--blank-line-docs", o->in.blank_line_docs,
                "text: a blank line ends a document (default: each file is one document)");
  cmd->add_flag("--skip-invalid", o->in.skip_invalid,
                "JSONL: count and skip malformed lines and lines without the text field (default: stop with "
                "FILE:LINE)");
  cmd->add_flag("--strict-utf8", o->in.strict_utf8,
                "stop (exit 1, naming FILE:LINE) at the first byte that is not UTF-8; by default such bytes are "
                "counted, reported at the end, and encoded as SentencePiece does (each as U+FFFD)");
  cmd->add_option("--max-shard-tokens", o->pipe.max_shard_tokens, "a rank starts a new shard after this many tokens")
      ->capture_default_str();
  add_threads_option(cmd, o->pipe.threads, "encoding threads per rank")->capture_default_str();
  cmd->add_option("--encoder", o->encoder,
                  "auto: polyllama's BPE encoder where the model allows it (LLaMA-style BPE; the same ids as "
                  "SentencePiece, many times faster; each rank checks its first documents against SentencePiece), "
                  "else SentencePiece; fast: require it; sentencepiece: always SentencePiece")
      ->capture_default_str()->check(CLI::IsMember({"auto", "fast", "sentencepiece"}));
  cmd->add_flag("--overwrite", o->overwrite, "replace an existing dataset at --out");
  cmd->add_option("--progress-interval", o->progress_interval, "seconds between progress lines (0: none)")
      ->capture_default_str();
  cmd->add_flag("--json", o->json, "print a one-line JSON summary at the end");

  return [cmd, o]() {
    if (!cmd->parsed()) return 0;
    int world_rank = 0, world_size = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world_size);
    const double t0 = now_seconds();
    // Rank 0 checks the inputs and prepares OUT.tmp first, so a bad input is reported once (main aborts the
    // job while the other ranks wait here).
    std::string tmp;
    std::unique_ptr<Tokenizer> tok_ptr;
    std::vector<InputFile> inputs;
    if (world_rank == 0) {
      o->in.validate();
      if (o->progress_interval < 0) fail_input("--progress-interval must be >= 0");
      tok_ptr = std::make_unique<Tokenizer>(Tokenizer::from_file(o->tokenizer));
      inputs = describe_inputs(o->inputs, o->in);
      tmp = prepare_output_dir(o->out, o->overwrite);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    if (world_rank != 0) {
      tok_ptr = std::make_unique<Tokenizer>(Tokenizer::from_file(o->tokenizer));
      inputs = describe_inputs(o->inputs, o->in);
      tmp = output_tmp_dir(o->out);
    }
    const Tokenizer& tok = *tok_ptr;
    o->pipe.vocab_size = tok.vocab_size();
    o->pipe.eos_id = static_cast<uint32_t>(tok.eos_id());
    if (tok.eos_id() < 0) fail_input(o->tokenizer + " has no EOS piece (eos_id -1); documents need a separator");

    double last = now_seconds();
    auto progress = [&](const PipelineProgress& p) {
      const double now = now_seconds();
      if (world_rank != 0 || o->progress_interval <= 0 || now - last < o->progress_interval) return;
      last = now;
      const double dt = now - t0, mib = static_cast<double>(p.bytes_done) / (1 << 20);
      const double frac =
          p.bytes_total > 0 ? static_cast<double>(p.bytes_done) / static_cast<double>(p.bytes_total) : 1;
      log_info(fmt("data: rank 0 %.0f%% of its %.1f MiB | %.2f MiB/s, %.0f tokens/s per rank (x%d ranks) | %lld "
                   "documents | ETA %s",
                   100 * frac, static_cast<double>(p.bytes_total) / (1 << 20), mib / dt,
                   static_cast<double>(p.tokens) / dt, world_size, static_cast<long long>(p.documents),
                   eta_text(frac > 0 ? dt * (1 - frac) / frac : -1).c_str()));
    };
    DocumentEncoder encoder(tok, o->encoder, o->tokenizer);
    log_info("data: encoder: " + encoder.description());
    const ChunkedEncode encode = encoder.chunked();
    const RankResult mine = tokenize_to_shards(inputs, o->in, o->pipe, encode, tmp, world_rank, world_size, progress);
    std::vector<RankResult> all;  // every rank's counts, in rank order, on rank 0
    for (const std::string& part : gather_strings(rank_result_to_json(mine), MPI_COMM_WORLD))
      all.push_back(rank_result_from_json(part));

    if (world_rank == 0) {
      DatasetMeta base;
      base.tokenizer_checksum = tok.checksum();
      base.vocab_size = tok.vocab_size();
      base.bos_id = tok.bos_id();
      base.eos_id = tok.eos_id();
      DatasetMeta meta = merge_rank_results(all, base);
      std::vector<std::string> examples;
      DocumentReader::Utf8Counts bad;  // summed over the ranks; the first in input order
      int64_t largest_chunk = 0;
      for (const RankResult& r : all) {
        for (const std::string& e : r.skip_examples)
          if (examples.size() < DocumentReader::max_examples) examples.push_back(e);
        bad.bytes += r.invalid_utf8.bytes;
        bad.lines += r.invalid_utf8.lines;
        if (bad.first.empty()) bad.first = r.invalid_utf8.first;
        largest_chunk = std::max(largest_chunk, r.largest_chunk);
      }
      const double seconds = now_seconds() - t0;
      meta.options_json = nlohmann::json{{"created_by", "polyllama " POLYLLAMA_VERSION},
                                         {"tokenizer_path", o->tokenizer},
                                         {"format", o->in.format},
                                         {"text_field", o->in.text_field},
                                         {"blank_line_docs", o->in.blank_line_docs},
                                         {"skip_invalid", o->in.skip_invalid},
                                         {"max_shard_tokens", o->pipe.max_shard_tokens},
                                         {"ranks", world_size},
                                         {"threads", o->pipe.threads},
                                         {"encoder", encoder.name()},
                                         {"strict_utf8", o->in.strict_utf8},
                                         {"invalid_utf8_bytes", bad.bytes},
                                         {"invalid_utf8_lines", bad.lines},
                                         {"largest_chunk_bytes", largest_chunk},
                                         {"seconds", seconds},
                                         {"skipped_examples", examples}}.dump();
      {
        std::ofstream f(tmp + "/tokenizer.model", std::ios::binary);
        f.write(tok.model_bytes().data(), static_cast<std::streamsize>(tok.model_bytes().size()));
        if (!f) fail_runtime("cannot write " + tmp + "/tokenizer.model", __FILE__, __LINE__);
      }
      write_dataset_metadata(tmp, meta);
      commit_output_dir(tmp, o->out);

      const double mib = static_cast<double>(meta.bytes) / (1 << 20);
      log_info(fmt("data: wrote %s: %lld documents, %lld tokens in %zu shards (%lld skipped, %lld empty) from %zu "
                   "inputs, %.1f MiB in %.1fs: %.2f MiB/s, %.0f tokens/s on %d ranks x %d threads",
                   o->out.c_str(), static_cast<long long>(meta.documents), static_cast<long long>(meta.tokens),
                   meta.shards.size(), static_cast<long long>(meta.skipped), static_cast<long long>(meta.empty),
                   meta.inputs.size(), mib, seconds, mib / seconds, static_cast<double>(meta.tokens) / seconds,
                   world_size, o->pipe.threads));
      if (meta.inputs.size() <= 20)
        for (const InputCounts& c : meta.inputs)
          log_info(fmt("  %s (%s%s): %lld documents, %lld tokens, %lld skipped, %lld empty", c.path.c_str(),
                       c.format.c_str(), c.gzip ? ", gzip" : "", static_cast<long long>(c.documents),
                       static_cast<long long>(c.tokens), static_cast<long long>(c.skipped),
                       static_cast<long long>(c.empty)));
      if (meta.documents == 0) log_warn("data: no documents in the inputs (all empty or skipped)");
      if (bad.bytes > 0)
        log_warn(fmt("data: %lld bytes on %lld lines are not valid UTF-8 (the first at %s); they were encoded as "
                     "SentencePiece does, each as U+FFFD (--strict-utf8 refuses such input)",
                     static_cast<long long>(bad.bytes), static_cast<long long>(bad.lines), bad.first.c_str()));
      if (encoder.cutter() && static_cast<size_t>(largest_chunk) > 16 * encode.chunk_bytes)
        log_warn(fmt("data: a document had %.1f MiB of text with no place to cut it (e.g. a long run of one "
                     "character), encoded as one piece; memory grows with such stretches",
                     static_cast<double>(largest_chunk) / (1 << 20)));
      if (meta.skipped > 0) {
        log_info(fmt("data: skipped %lld invalid records; the first:", static_cast<long long>(meta.skipped)));
        for (const std::string& e : examples) log_info("  " + e);
      }
      print_json_summary(o->json, nlohmann::json{{"out", o->out},
                                                 {"documents", meta.documents},
                                                 {"tokens", meta.tokens},
                                                 {"skipped", meta.skipped},
                                                 {"empty", meta.empty},
                                                 {"shards", meta.shards.size()},
                                                 {"input_bytes", meta.bytes},
                                                 {"seconds", seconds},
                                                 {"tokens_per_s", static_cast<double>(meta.tokens) / seconds},
                                                 {"bytes_per_s", static_cast<double>(meta.bytes) / seconds},
                                                 {"ranks", world_size},
                                                 {"threads", o->pipe.threads},
                                                 {"invalid_utf8_bytes", bad.bytes},
                                                 {"invalid_utf8_lines", bad.lines},
                                                 {"tokenizer_checksum", meta.tokenizer_checksum}}.dump());
    }
    MPI_Barrier(MPI_COMM_WORLD);  // every rank returns once the dataset is in place
    return 0;
  };
}

}  // namespace polyllama::cli
