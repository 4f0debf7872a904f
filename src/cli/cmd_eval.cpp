// `polyllama eval`: the benchmarks (eval/task.hpp and src/eval/tasks/), answered by the engine (eval/engine.hpp)
// over the data-parallel groups of the launch (eval/runner.hpp), perplexity per language (eval/perplexity.hpp), the
// response-quality task (eval/responses.hpp: answers, the judge, code-switching), and the results files
// (eval/results.hpp).
#include <mpi.h>

#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>

#include "polyllama/backend/cpu/cpu_backend.hpp"
#include "polyllama/ckpt/checkpoint.hpp"
#include "polyllama/ckpt/model_io.hpp"
#include "polyllama/core/atomic_file.hpp"
#include "polyllama/core/log.hpp"
#include "polyllama/eval/perplexity.hpp"
#include "polyllama/eval/responses.hpp"
#include "polyllama/eval/results.hpp"
#include "polyllama/eval/runner.hpp"
#include "verbs.hpp"

namespace polyllama::cli {

namespace {

using json = nlohmann::json;

constexpr int64_t kResponsesMaxNewTokens = 512;  // the responses task's answers unless --max-new-tokens

struct Opts {
  std::string ckpt, out, dump_prompts, dtype = "f32";
  std::vector<std::string> tasks, ppl_files;
  EvalOptions eval;
  EngineConfig engine;
  PplConfig ppl;
  int tp = 1, threads = 0;
  bool json = false;
  // --tasks responses
  std::string responses, judge_only, tpl, system, judge_cache;
  SamplingConfig sampling;
  JudgeConfig judge;
  std::string cs_language = "zh";
  std::vector<std::string> cs_allow;
  int cs_min_run = 2;
  // Given without their task, judge or model: an error.
  std::vector<CLI::Option*> responses_only, judge_flags, generation_flags;
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
  std::string what, unit = "questions";
  double t0 = now_seconds(), last = t0;
  void operator()(int64_t done, int64_t total) {
    const double now = now_seconds();
    if (now - last < 10 && done < total) return;
    last = now;
    const double rate = static_cast<double>(done) / std::max(1e-9, now - t0);
    log_info(fmt("eval: %s: rank 0 %lld/%lld %s | %.2f %s/s | ETA %.0fs", what.c_str(), static_cast<long long>(done),
                 static_cast<long long>(total), unit.c_str(), rate, unit.c_str(),
                 static_cast<double>(total - done) / std::max(1e-9, rate)));
  }
};

bool given(const std::vector<CLI::Option*>& opts, std::string* name) {
  for (const CLI::Option* opt : opts)
    if (opt->count() > 0) return *name = opt->get_name(), true;
  return false;
}

// The --cs-* settings: "none" in --cs-allow is an explicitly empty list.
CodeSwitchConfig code_switch_config(const Opts& o) {
  CodeSwitchConfig c;
  c.language = o.cs_language;
  c.min_run = o.cs_min_run;
  const std::vector<std::string> allow = split_commas(o.cs_allow);
  c.allow_given = !o.cs_allow.empty();
  if (!(allow.size() == 1 && allow[0] == "none")) c.allow = allow;
  for (const std::string& a : c.allow)
    if (a == "none") fail_input("--cs-allow: \"none\" stands alone (an empty list); got " + o.cs_allow[0]);
  c.validate();
  return c;
}

// The judge's settings when --judge-url or --judge-model is given (validated), else nullptr.
std::unique_ptr<JudgeConfig> judge_config(const Opts& o) {
  std::string flag;
  if (o.judge.url.empty() && o.judge.model.empty()) {
    if (given(o.judge_flags, &flag)) fail_input(flag + " applies with --judge-url and --judge-model (the judge)");
    return nullptr;
  }
  auto c = std::make_unique<JudgeConfig>(o.judge);
  c->cache_path = o.judge_cache.empty() ? o.out + "/judge_cache.jsonl" : o.judge_cache == "none" ? "" : o.judge_cache;
  c->validate();
  return c;
}

void log_responses_summary(const ResponsesRun& run, const json& res, json& summary) {
  const json& m = res.at("results").at("responses");
  std::string scores;
  for (const char* k : {"ACC", "F", "INFO", "LC", "H", "AVG"})
    scores += fmt(" %s %s", k, m.at(std::string(k) + ",none").is_null() ? "-" :
                                   fmt("%.2f", m.at(std::string(k) + ",none").get<double>()).c_str());
  log_info(fmt("eval: responses: %zu answers; ", run.records.size()) +
           (run.judged ? "judge " + run.judge_model + fmt(": %lld scored, %lld unscored;",
                                                          static_cast<long long>(m.at("scored").get<int64_t>()),
                                                          static_cast<long long>(m.at("unscored").get<int64_t>())) +
                             scores
                       : std::string("not judged")) +
           fmt("; code-switched %lld (%.1f%%)", static_cast<long long>(m.at("code_switched").get<int64_t>()),
               100 * m.at("code_switch_rate,none").get<double>()));
  summary["responses"] = {{"AVG", m.at("AVG,none")}, {"scored", m.at("scored")},
                          {"code_switch_rate", m.at("code_switch_rate,none")}};
}

// --judge-only ANSWERS.jsonl: an earlier run's answers judged again, no model (world rank 0; the others idle).
int judge_only(const Opts& o, int world_rank) {
  if (!o.ckpt.empty())
    fail_input("--judge-only loads no model: drop --ckpt (the answers come from " + o.judge_only + ")");
  if (!o.responses.empty()) fail_input("--judge-only reads its answers file, not --responses: give one of the two");
  std::string flag;
  if (given(o.generation_flags, &flag)) fail_input(flag + " shapes the answers; --judge-only generates none");
  if (o.out.empty()) fail_input("--judge-only needs --out DIR for its results");
  const CodeSwitchConfig cs = code_switch_config(o);
  const std::unique_ptr<JudgeConfig> judge = judge_config(o);
  if (!judge) fail_input("--judge-only needs the judge: --judge-url URL --judge-model NAME");
  if (world_rank != 0) return 0;
  ResponsesRun run;
  run.source = o.judge_only;
  run.records = read_response_records(o.judge_only, o.cs_language, cs);
  run.generation = run.records[0].generation;
  log_info(fmt("eval: --judge-only: %zu answers from ", run.records.size()) + o.judge_only);
  std::filesystem::create_directories(o.out);
  const double t0 = now_seconds();
  detect_response_code_switching(cs, run);
  judge_responses(*judge, run);
  const json config = {{"answers", o.judge_only}, {"judge_model", judge->model}, {"seconds", now_seconds() - t0}};
  update_responses_results(o.out, run, config);
  json summary = {{"out", o.out}};
  log_responses_summary(run, responses_results_json(run), summary);
  log_info("eval: wrote " + o.out + "/responses.jsonl, results.json and results.md");
  print_json_summary(o.json, summary.dump());
  return 0;
}

int run(Opts& o) {
  int world_rank = 0, world_size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world_size);
  const ParallelDims dims = ParallelDims::from_tp(o.tp, world_size);  // fails early, naming the numbers
  o.eval.subjects = split_commas(o.eval.subjects);
  std::vector<std::string> names = split_commas(o.tasks);
  if (!o.judge_only.empty()) {
    if (!(names.empty() || (names.size() == 1 && names[0] == "responses")))
      fail_input("--judge-only judges the responses task's answers alone: drop --tasks or give --tasks responses");
    return judge_only(o, world_rank);
  }
  if (names.empty()) fail_input("--tasks: name at least one of ceval, mmlu, agieval, gaokao, ppl, responses");
  if (o.eval.method != "" && o.eval.method != "loglik" && o.eval.method != "generate")
    fail_input("--method " + o.eval.method + ": expected loglik or generate");
  o.engine.validate();

  // Every task's questions, read and rendered on every rank (the same on each).
  std::vector<std::unique_ptr<Task>> tasks;
  std::vector<TaskRun> runs;
  bool want_ppl = false, want_responses = false;
  for (const std::string& n : names) {
    if (n == "ppl" || n == "responses") {
      (n == "ppl" ? want_ppl : want_responses) = true;
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

  // The responses task: its instructions (read on every rank, the same on each), settings and judge.
  std::string flag;
  if (!want_responses && given(o.responses_only, &flag)) fail_input(flag + " applies to --tasks responses");
  if (want_responses && o.responses.empty())
    fail_input("--tasks responses needs --responses INSTRUCTIONS.jsonl (id, category, instruction per line)");
  if (want_responses && !o.dump_prompts.empty())
    fail_input("--dump-prompts writes the benchmarks' prompts; a response prompt is the chat template's rendering, "
               "written to OUT/responses.jsonl (\"prompt\")");
  std::vector<ResponseItem> items;
  CodeSwitchConfig cs;
  std::unique_ptr<JudgeConfig> judge;
  ResponsesGenConfig rgen;
  if (want_responses) {
    if (o.out.empty()) fail_input("eval needs --out DIR for its results");
    cs = code_switch_config(o);
    judge = judge_config(o);
    items = read_instructions(o.responses, o.cs_language, cs);
    rgen.gen.sampling = o.sampling;
    rgen.gen.max_new_tokens = o.engine.max_new_tokens > 0 ? o.engine.max_new_tokens : kResponsesMaxNewTokens;
    rgen.gen.batch_size = o.engine.batch_size;
    rgen.gen.prefill_chunk = o.engine.prefill_chunk;
    rgen.system = o.system;
    rgen.gen.validate();
  }

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
  std::unique_ptr<ChatTemplate> tpl;  // the responses task's
  if (want_responses) {
    tpl = chat_template_for(o.tpl, meta, h5);
    if (!tpl)
      fail_input(dir + " holds no chat template (it was not instruction-tuned by `polyllama sft`): --tasks responses "
                 "needs one; pass --template NAME (" + [] {
                   std::string names;
                   for (const std::string& n : ChatTemplate::builtin_names()) names += (names.empty() ? "" : ", ") + n;
                   return names;
                 }() + ") or a template JSON file");
    rgen.template_name = o.tpl.empty() ? tpl->name + " (checkpoint)" : o.tpl;
    if (world_rank == 0)
      log_info(fmt("eval: responses: %zu instructions from ", items.size()) + o.responses + "; " +
               rgen.to_json().dump() + (judge ? "; judge " + judge->model : std::string("; no judge")));
  }
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
  ResponsesRun rrun;
  if (want_responses) {
    ProgressLog log{"responses", "answers"};
    GenStats st;
    const std::vector<ResponseAnswer> answers = answer_instructions(
        model, tok, *tpl, rgen, par, items, world_rank == 0 ? EvalProgressFn(std::ref(log)) : EvalProgressFn(), &st);
    if (world_rank == 0) {
      rrun.source = o.responses;
      rrun.generation = rgen.to_json();
      for (size_t i = 0; i < items.size(); ++i)
        rrun.records.push_back({items[i], answers[i], rrun.generation, false, {}, {}});
      stats["responses"] = {{"answers", items.size()}, {"prompt_tokens", st.prompt_tokens},
                            {"generated_tokens", st.generated_tokens}, {"seconds", st.seconds},
                            {"generated_tokens_per_s", static_cast<double>(st.generated_tokens) /
                                                           std::max(1e-9, st.seconds)}};
      log_info(fmt("eval: responses: %zu answers in %.1fs, %lld prompt + %lld generated tokens (%.1f generated "
                   "tokens/s)",
                   items.size(), st.seconds, static_cast<long long>(st.prompt_tokens),
                   static_cast<long long>(st.generated_tokens),
                   static_cast<double>(st.generated_tokens) / std::max(1e-9, st.seconds)));
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

  if (want_responses) {  // stage 2, on this rank only: code-switching, then the judge
    std::filesystem::create_directories(o.out);
    detect_response_code_switching(cs, rrun);
    if (judge) judge_responses(*judge, rrun);
  }
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
  const ResponsesRun* responses = want_responses ? &rrun : nullptr;
  write_results(o.out, runs, ppl, config, responses);
  const json res = results_json(runs, ppl, config, responses);
  json summary = {{"out", o.out}};
  if (want_responses) log_responses_summary(rrun, res, summary);
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
  log_info("eval: wrote " + o.out + "/results.json, results.md and the samples" +
           (want_responses ? std::string(" (responses.jsonl)") : std::string()));
  print_json_summary(o.json, summary.dump());
  return 0;
}

}  // namespace

RunFn add_eval(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "eval",
      "Evaluate a checkpoint: C-Eval, MMLU (5-shot, letter log-probabilities), AGIEval, GAOKAO-Bench (their official "
      "prompts and scoring) from the benchmarks' own release files, perplexity per language (token level, and "
      "bits per character and byte, which compare tokenizers), and response quality (answers to instructions "
      "through the chat template, scored 0-3 on ACC, F, INFO, LC, H by a judge model behind an OpenAI-compatible "
      "API, and the code-switching rate). Under mpirun the subjects and instructions are split over the ranks "
      "(--tp N groups hold one model each). Writes OUT/results.json (lm-evaluation-harness layout), results.md and "
      "samples_<task>.jsonl (responses.jsonl). Examples: polyllama eval --ckpt sft --tasks ceval,mmlu --bench-dir "
      "bench --out ev | "
      "mpirun -np 4 polyllama eval --ckpt run --tasks ppl --ppl-files zh:heldout_zh.txt en:heldout_en.txt --out ev | "
      "polyllama eval --ckpt sft --tasks responses --responses share/responses/zh_instructions.jsonl --judge-url "
      "https://api.openai.com/v1 --judge-model gpt-4o --out ev | "
      "polyllama eval --judge-only ev/responses.jsonl --judge-url http://127.0.0.1:8000/v1 --judge-model judge "
      "--out ev | "
      "polyllama eval --tasks ceval --bench-dir bench --dump-prompts prompts.jsonl");
  add_config_file(cmd);
  auto o = std::make_shared<Opts>();
  cmd->add_option("--ckpt", o->ckpt, "checkpoint: a run directory (its ckpt/latest) or a step directory");
  cmd->add_option("--tasks", o->tasks, "comma-separated: ceval, mmlu, agieval, gaokao, ppl, responses");
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
                  "generated answers: at most this many tokens (default: each benchmark's own; responses: 512)");
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
  // --tasks responses
  const std::string R = "responses: ";
  auto& ro = o->responses_only;
  ro.push_back(cmd->add_option("--responses", o->responses,
                               R + "the instructions, JSONL: {\"id\", \"category\", \"instruction\", \"input\"?, "
                                   "\"reference\"?, \"language\"?} per line (share/responses/zh_instructions.jsonl)"));
  auto& gf = o->generation_flags;
  gf.push_back(cmd->add_option("--template", o->tpl,
                               R + "chat template, a built-in name or a JSON file (default: the checkpoint's, "
                                   "from sft)"));
  gf.push_back(cmd->add_option("--system", o->system, R + "system prompt (default: the template's)"));
  SamplingConfig& sp = o->sampling;
  gf.push_back(cmd->add_option("--temperature", sp.temperature, R + "0: greedy; > 0: sample from softmax(logits / T)")
                   ->capture_default_str());
  gf.push_back(cmd->add_option("--top-k", sp.top_k, R + "sample among the k most likely tokens (0: all)")
                   ->capture_default_str());
  gf.push_back(cmd->add_option("--top-p", sp.top_p, R + "nucleus: the smallest set of most likely tokens reaching p")
                   ->capture_default_str());
  gf.push_back(cmd->add_option("--repetition-penalty", sp.repetition_penalty, R + "1: off; 1.1-1.3 typical")
                   ->capture_default_str());
  gf.push_back(cmd->add_option("--seed", sp.seed, R + "sampling seed; an answer's draws depend on it and its line only")
                   ->capture_default_str());
  ro.insert(ro.end(), gf.begin(), gf.end());
  JudgeConfig& j = o->judge;
  auto& jf = o->judge_flags;
  ro.push_back(cmd->add_option("--judge-url", j.url,
                               R + "the judge's OpenAI-compatible endpoint, with its /v1 (https://api.openai.com/v1, "
                                   "http://127.0.0.1:8000/v1 for vLLM or polyllama serve); without it: no scores"));
  ro.push_back(cmd->add_option("--judge-model", j.model, R + "the judge model as the endpoint names it (gpt-4o)"));
  jf.push_back(cmd->add_option("--judge-key-env", j.key_env,
                               R + "environment variable holding the API key (never printed, logged or written; unset "
                                   "or empty: no key, as a local vLLM)")
                   ->capture_default_str());
  jf.push_back(cmd->add_option("--judge-concurrency", j.concurrency, R + "judge requests in flight at most")
                   ->capture_default_str());
  jf.push_back(cmd->add_option("--judge-timeout", j.timeout_s, R + "seconds per judge request")->capture_default_str());
  jf.push_back(cmd->add_option("--judge-retries", j.max_retries,
                               R + "retries of a judge request after 429, 5xx, a timeout or a connection error")
                   ->capture_default_str());
  jf.push_back(cmd->add_option("--judge-backoff", j.backoff_base_s,
                               R + "retry k waits uniform(0, min(max, base * 2^(k-1))) seconds, or Retry-After")
                   ->capture_default_str());
  jf.push_back(cmd->add_option("--judge-backoff-max", j.backoff_max_s, R + "the longest retry wait, seconds")
                   ->capture_default_str());
  jf.push_back(cmd->add_option("--judge-max-tokens", j.max_tokens, R + "tokens of the judge's reply at most")
                   ->capture_default_str());
  jf.push_back(cmd->add_option("--judge-temperature", j.temperature, R + "the judge's sampling temperature")
                   ->capture_default_str());
  jf.push_back(cmd->add_option("--judge-cache", o->judge_cache,
                               R + "JSONL cache of the judge's replies: a rerun sends nothing it already sent "
                                   "(default: OUT/judge_cache.jsonl; none: no cache)"));
  ro.insert(ro.end(), jf.begin(), jf.end());
  cmd->add_option("--judge-only", o->judge_only,
                  R + "judge the answers of an earlier run's OUT/responses.jsonl (no model, no --ckpt: a login node "
                      "with network) and update OUT's results");
  ro.push_back(cmd->add_option("--cs-language", o->cs_language,
                               R + "code-switching: the answers' language where a record has no \"language\"")
                   ->capture_default_str());
  ro.push_back(cmd->add_option("--cs-allow", o->cs_allow,
                               R + "code-switching: scripts accepted besides the language's (comma-separated Unicode "
                                   "names: Latin,Cyrillic; none: no other; default: Latin for a language not "
                                   "written in it)"));
  ro.push_back(cmd->add_option("--cs-min-run", o->cs_min_run,
                               R + "code-switching: letters of one foreign script in a row that count as a switch")
                   ->capture_default_str());
  cmd->add_option("--tp", o->tp, "tensor-parallel ranks per model; the launched ranks / tp split the subjects")
      ->capture_default_str();
  cmd->add_option("--threads", o->threads, "CPU threads (default: OMP_NUM_THREADS or all cores)");
  cmd->add_option("--dtype", o->dtype, "compute dtype on the CPU: f32 or f64")->capture_default_str();
  cmd->add_flag("--json", o->json, "print a one-line JSON summary (accuracy per task, perplexity per source)");
  return [cmd, o]() { return cmd->parsed() ? run(*o) : 0; };
}

}  // namespace polyllama::cli
