// `polyllama eval`: the benchmarks (eval/task.hpp and src/eval/tasks/), answered by the engine (eval/engine.hpp)
// over the data-parallel groups of the launch (eval/runner.hpp), perplexity per language (eval/perplexity.hpp), and
// the results files (eval/results.hpp).
#include <mpi.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>

#include "polyllama/backend/cpu/cpu_backend.hpp"
#include "polyllama/ckpt/checkpoint.hpp"
#include "polyllama/ckpt/model_io.hpp"
#include "polyllama/core/atomic_file.hpp"
#include "polyllama/core/log.hpp"
#include "polyllama/eval/perplexity.hpp"
#include "polyllama/eval/results.hpp"
#include "polyllama/eval/runner.hpp"
#include "verbs.hpp"

namespace polyllama::cli {

namespace {

using json = nlohmann::json;

struct Opts {
  std::string ckpt, out, dump_prompts, dtype = "f32";
  std::vector<std::string> tasks, ppl_files;
  EvalOptions eval;
  EngineConfig engine;
  PplConfig ppl;
  int tp = 1, threads = 0;
  bool json = false;
};

std::vector<std::string> split_commas(const std::vector<std::string>& items) {
  std::vector<std::string> out;
  for (const std::string& s : items) {
    std::stringstream ss(s);
    std::string part;
    while (std::getline(ss, part, ','))
      if (!part.empty()) out.push_back(part);
  }
  return out;
}

// Logs rank 0's progress at most every 10 seconds, with the rate and ETA.
struct ProgressLog {
  std::string what;
  double t0 = now_seconds(), last = t0;
  void operator()(int64_t done, int64_t total) {
    const double now = now_seconds();
    if (now - last < 10 && done < total) return;
    last = now;
    const double rate = static_cast<double>(done) / std::max(1e-9, now - t0);
    log_info(fmt("eval: %s: rank 0 %lld/%lld questions | %.2f questions/s | ETA %.0fs", what.c_str(),
                 static_cast<long long>(done), static_cast<long long>(total), rate,
                 static_cast<double>(total - done) / std::max(1e-9, rate)));
  }
};

int run(Opts& o) {
  int world_rank = 0, world_size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world_size);
  const ParallelDims dims = ParallelDims::from_tp(o.tp, world_size);  // fails early, naming the numbers
  o.eval.subjects = split_commas(o.eval.subjects);
  const std::vector<std::string> names = split_commas(o.tasks);
  if (names.empty()) fail_input("--tasks: name at least one of ceval, mmlu, agieval, gaokao, ppl");
  if (o.eval.method != "" && o.eval.method != "loglik" && o.eval.method != "generate")
    fail_input("--method " + o.eval.method + ": expected loglik or generate");
  o.engine.validate();

  // Every task's questions, read and rendered on every rank (the same on each).
  std::vector<std::unique_ptr<Task>> tasks;
  std::vector<TaskRun> runs;
  bool want_ppl = false;
  for (const std::string& n : names) {
    if (n == "ppl") {
      want_ppl = true;
      continue;
    }
    if (o.eval.bench_dir.empty()) fail_input("--tasks " + n + " needs --bench-dir DIR (the benchmarks' files)");
    tasks.push_back(make_task(n));
    // --subjects: names for this task (TASK:SUBJECT) and unqualified names (every task); a task none of them names
    // runs whole.
    EvalOptions eo = o.eval;
    eo.subjects.clear();
    for (const std::string& sub : o.eval.subjects) {
      const auto colon = sub.find(':');
      if (colon == std::string::npos)
        eo.subjects.push_back(sub);
      else if (sub.substr(0, colon) == n)
        eo.subjects.push_back(sub.substr(colon + 1));
    }
    TaskRun r;
    r.task = tasks.back()->name();
    r.version = tasks.back()->version();
    r.num_fewshot = tasks.back()->num_fewshot(eo);
    r.questions = tasks.back()->load(eo, &r.skipped, &r.skip_examples);
    r.split = r.questions.empty() ? o.eval.split : r.questions[0].split;  // AGIEval's and GAOKAO's files: "test"
    if (r.skipped > 0 && world_rank == 0) {
      log_warn(fmt("%s: skipped %lld invalid rows, e.g.:", r.task.c_str(), static_cast<long long>(r.skipped)));
      for (const std::string& e : r.skip_examples) log_warn("  " + e);
    }
    if (world_rank == 0)
      log_info(fmt("eval: %s: %zu questions (%s split, %lld-shot)", r.task.c_str(), r.questions.size(),
                   r.split.c_str(), static_cast<long long>(r.num_fewshot)));
    runs.push_back(std::move(r));
  }
  if (want_ppl && o.ppl_files.empty()) fail_input("--tasks ppl needs --ppl-files LABEL:PATH ...");
  if (!want_ppl && !o.ppl_files.empty()) fail_input("--ppl-files is read by --tasks ppl");

  if (!o.dump_prompts.empty()) {  // the prompts alone, no model
    if (world_rank == 0) {
      std::string lines;
      for (const TaskRun& r : runs)
        for (const Question& q : r.questions)
          lines += json{{"task", q.task}, {"subject", q.subject}, {"category", q.category}, {"index", q.index},
                        {"id", q.id}, {"scoring", q.scoring == Scoring::letters ? "letters" : "generate"},
                        {"labels", q.labels}, {"gold", q.gold}, {"prompt", q.prompt}}
                       .dump(-1, ' ', false, json::error_handler_t::replace) +
                   "\n";
      write_file_atomically(o.dump_prompts, lines);
      log_info("wrote the prompts of " + std::to_string(runs.size()) + " tasks to " + o.dump_prompts);
    }
    return 0;
  }
  if (o.ckpt.empty()) fail_input("eval needs --ckpt RUN_DIR|STEP_DIR (or --dump-prompts FILE to see the prompts)");
  if (o.out.empty()) fail_input("eval needs --out DIR for its results");
  if (o.dtype != "f32" && o.dtype != "f64") fail_input("--dtype " + o.dtype + ": expected f32 or f64");

  const std::string dir = resolve_step_dir(o.ckpt, "--ckpt"), h5 = dir + "/model.h5";
  const CheckpointMeta meta = read_meta(h5);
  const ModelConfig cfg = ModelConfig::from_hf_json(json::parse(meta.config_json), h5);
  validate_tensor_parallel(cfg, o.tp);
  if (o.ppl.seq == 0) o.ppl.seq = std::min<int64_t>(1024, cfg.max_position_embeddings);
  if (o.ppl.stride == 0) o.ppl.stride = std::max<int64_t>(1, o.ppl.seq / 2);
  if (want_ppl) o.ppl.validate(cfg);
  const ParallelContext par(dims, MPI_COMM_WORLD);
  const Tokenizer tok = Tokenizer::from_bytes(meta.tokenizer_bytes, h5);
  CpuBackend be(o.threads);
  LlamaModel model(cfg, be, o.dtype == "f64" ? DType::f64 : DType::f32, /*mixed_precision=*/false,
                   o.tp > 1 ? &par : nullptr);
  load_model_weights(h5, model);  // this rank's shard of each tensor
  if (world_rank == 0)
    log_info(fmt("eval: %s, %.2fM parameters, %s | %d ranks: tp %d x dp %d", dir.c_str(),
                 static_cast<double>(cfg.total_params()) / 1e6, be.description().c_str(), world_size, dims.tp,
                 dims.dp));

  const double t0 = now_seconds();
  json stats = json::object();
  for (size_t k = 0; k < runs.size(); ++k) {
    TaskRun& r = runs[k];
    ProgressLog log{r.task};
    EngineStats st;
    r.responses = answer_distributed(model, tok, o.engine, par, r.questions,
                                     world_rank == 0 ? EvalProgressFn(std::ref(log)) : EvalProgressFn(), &st);
    if (world_rank == 0) {
      for (size_t i = 0; i < r.questions.size(); ++i)
        r.scores.push_back(tasks[k]->score(r.questions[i], r.responses[i]));
      stats[r.task] = {{"questions", st.questions}, {"prompt_tokens", st.prompt_tokens},
                       {"computed_tokens", st.computed_tokens}, {"generated_tokens", st.generated_tokens},
                       {"seconds", st.seconds}, {"questions_per_s", st.questions / std::max(1e-9, st.seconds)}};
      log_info(fmt("eval: %s: %lld questions in %.1fs (%.2f/s); %lld prompt tokens, %lld computed (shared few-shot "
                   "prefixes computed once)",
                   r.task.c_str(), static_cast<long long>(st.questions), st.seconds,
                   static_cast<double>(st.questions) / std::max(1e-9, st.seconds),
                   static_cast<long long>(st.prompt_tokens), static_cast<long long>(st.computed_tokens)));
    }
  }
  std::vector<PplResult> ppl;
  if (want_ppl) {
    std::vector<PplSource> sources;
    for (const std::string& s : o.ppl_files) sources.push_back(parse_ppl_source(s));
    model.allocate_activations(1, o.ppl.seq);
    ppl = evaluate_perplexity(model, tok, par, sources, o.ppl);
  }
  if (world_rank != 0) return 0;

  const json config = {{"model", "polyllama"},
                       {"checkpoint", dir},
                       {"params", cfg.total_params()},
                       {"tokenizer_checksum", tok.checksum()},
                       {"bench_dir", o.eval.bench_dir},
                       {"split", o.eval.split},
                       {"method", o.eval.method.empty() ? "default" : o.eval.method},
                       {"prompt_style", o.eval.prompt_style.empty() ? "official" : o.eval.prompt_style},
                       {"limit", o.eval.limit},
                       {"batch_size", o.engine.batch_size},
                       {"dtype", o.dtype},
                       {"ranks", world_size},
                       {"tp", dims.tp},
                       {"ppl_seq", want_ppl ? json(o.ppl.seq) : json(nullptr)},
                       {"ppl_stride", want_ppl ? json(o.ppl.stride) : json(nullptr)},
                       {"timing", stats},
                       {"seconds", now_seconds() - t0}};
  write_results(o.out, runs, ppl, config);
  const json res = results_json(runs, ppl, config);
  json summary = {{"out", o.out}};
  for (const TaskRun& r : runs) {
    const json& m = res.at("results").at(r.task);
    summary[r.task] = m.contains("acc,none") ? m.at("acc,none") : json(nullptr);
    if (m.contains("acc,none"))
      log_info(fmt("eval: %s: acc %.2f%% ± %.2f (question-weighted), %.2f%% (mean over subjects), score %.2f%%",
                   r.task.c_str(), 100 * m.at("acc,none").get<double>(), 100 * m.at("acc_stderr,none").get<double>(),
                   100 * m.at("acc_subject_mean,none").get<double>(), 100 * m.at("score,none").get<double>()));
  }
  for (const PplResult& p : ppl) {
    summary["ppl_" + p.source.label] = p.perplexity();
    log_info(fmt("eval: perplexity %s: %.3f per token, %s bits/char, %s bits/byte (%lld documents, %lld tokens)",
                 p.source.label.c_str(), p.perplexity(),
                 p.chars > 0 ? fmt("%.4f", p.bits_per_char()).c_str() : "-",
                 p.bytes > 0 ? fmt("%.4f", p.bits_per_byte()).c_str() : "-", static_cast<long long>(p.documents),
                 static_cast<long long>(p.tokens)));
  }
  log_info("eval: wrote " + o.out + "/results.json, results.md and the samples");
  print_json_summary(o.json, summary.dump());
  return 0;
}

}  // namespace

RunFn add_eval(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "eval",
      "Evaluate a checkpoint: C-Eval, MMLU (5-shot, letter log-probabilities), AGIEval, GAOKAO-Bench (their official "
      "prompts and scoring) from the benchmarks' own release files, and perplexity per language (token level, and "
      "bits per character and byte, which compare tokenizers). Under mpirun the subjects are split over the ranks "
      "(--tp N groups hold one model each). Writes OUT/results.json (lm-evaluation-harness layout), results.md and "
      "samples_<task>.jsonl. Examples: polyllama eval --ckpt sft --tasks ceval,mmlu --bench-dir bench --out ev | "
      "mpirun -np 4 polyllama eval --ckpt run --tasks ppl --ppl-files zh:heldout_zh.txt en:heldout_en.txt --out ev | "
      "polyllama eval --tasks ceval --bench-dir bench --dump-prompts prompts.jsonl");
  add_config_file(cmd);
  auto o = std::make_shared<Opts>();
  cmd->add_option("--ckpt", o->ckpt, "checkpoint: a run directory (its ckpt/latest) or a step directory");
  cmd->add_option("--tasks", o->tasks, "comma-separated: ceval, mmlu, agieval, gaokao, ppl")->required();
  cmd->add_option("--bench-dir", o->eval.bench_dir,
                  "directory with the benchmarks as released: ceval/{dev,val,test}/ and subject_mapping.json, "
                  "mmlu/{dev,val,test}/, agieval/*.jsonl (+ few_shot_prompts.csv), gaokao/*.json + Obj_Prompt.json");
  cmd->add_option("--out", o->out, "results directory (created)");
  cmd->add_option("--split", o->eval.split, "ceval, mmlu: val (scored) or test (predictions only)")
      ->check(CLI::IsMember({"val", "test"}))
      ->capture_default_str();
  cmd->add_option("--num-fewshot", o->eval.num_fewshot,
                  "examples before each question (default: each benchmark's own, 5 for ceval and mmlu, 0 for agieval "
                  "and gaokao)");
  cmd->add_option("--method", o->eval.method,
                  "loglik: the option letters' next-token log-probabilities (the default for single-answer "
                  "multiple choice); generate: greedy generation and the benchmark's answer extraction (always for "
                  "several-answer and cloze questions)");
  cmd->add_option("--prompt-style", o->eval.prompt_style, "a named variant of a task's prompt (default: official)");
  cmd->add_option("--subjects", o->eval.subjects,
                  "only these subjects / AGIEval tasks / GAOKAO files (comma-separated); TASK:SUBJECT names one "
                  "task's (ceval:computer_network,mmlu:virology), a bare name applies to every task");
  cmd->add_option("--limit", o->eval.limit, "the first N questions of each subject (0: all)")->capture_default_str();
  cmd->add_flag("--skip-invalid", o->eval.skip_invalid, "count and report malformed rows instead of stopping");
  cmd->add_option("--batch-size", o->engine.batch_size, "questions per forward pass")->capture_default_str();
  cmd->add_option("--prefill-chunk", o->engine.prefill_chunk, "tokens per row per forward pass")->capture_default_str();
  cmd->add_option("--max-new-tokens", o->engine.max_new_tokens,
                  "generated answers: at most this many tokens (default: each benchmark's own)");
  cmd->add_option("--ppl-files", o->ppl_files,
                  "perplexity sources, LABEL:PATH (text or JSONL, optionally .gz, or a `polyllama data` directory), "
                  "e.g. zh:heldout_zh.txt en:heldout_en.txt");
  cmd->add_option("--ppl-seq", o->ppl.seq,
                  "perplexity: positions per window (default: 1024, or max_position_embeddings when smaller)");
  cmd->add_option("--ppl-stride", o->ppl.stride,
                  "perplexity: how far each window advances (default: half a window; = --ppl-seq: no overlap)");
  cmd->add_option("--ppl-max-docs", o->ppl.max_documents, "perplexity: the first N documents of each source (0: all)");
  cmd->add_option("--text-field", o->ppl.input.text_field, "perplexity, JSONL: the field holding the text")
      ->capture_default_str();
  cmd->add_flag("--blank-line-docs", o->ppl.input.blank_line_docs,
                "perplexity, text files: a blank line ends a document (default: one per file)");
  cmd->add_option("--dump-prompts", o->dump_prompts,
                  "write every question's exact prompt, labels and gold answer as JSONL to this file and stop (no "
                  "model needed)");
  cmd->add_option("--tp", o->tp, "tensor-parallel ranks per model; the launched ranks / tp split the subjects")
      ->capture_default_str();
  cmd->add_option("--threads", o->threads, "CPU threads (default: OMP_NUM_THREADS or all cores)");
  cmd->add_option("--dtype", o->dtype, "compute dtype on the CPU: f32 or f64")->capture_default_str();
  cmd->add_flag("--json", o->json, "print a one-line JSON summary (accuracy per task, perplexity per source)");
  return [cmd, o]() { return cmd->parsed() ? run(*o) : 0; };
}

}  // namespace polyllama::cli
