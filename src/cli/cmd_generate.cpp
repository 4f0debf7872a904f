// `polyllama generate`: text from a checkpoint. One prompt streams to the terminal; a JSONL file of prompts is
// split across the data-parallel groups of the mpirun ranks and written back in input order. With --tp N, each
// group of N consecutive ranks holds one model by Megatron shards and decodes its prompts in step (the decoder
// gathers whole logit rows, so every rank of the group samples the same tokens); its tp rank 0 reports them.
// The prompts and their requests: eval/prompts.hpp; the decoding loop: eval/generate.hpp.
#include <mpi.h>

#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>

#include "polyllama/backend/cpu/cpu_backend.hpp"
#include "polyllama/ckpt/checkpoint.hpp"
#include "polyllama/ckpt/model_io.hpp"
#include "polyllama/core/atomic_file.hpp"
#include "polyllama/core/log.hpp"
#include "polyllama/eval/generate.hpp"
#include "polyllama/eval/prompts.hpp"
#include "polyllama/parallel/parallel.hpp"
#include "verbs.hpp"

namespace polyllama::cli {

namespace {

using json = nlohmann::json;

struct Opts {
  std::string ckpt, prompt, input, output, tpl, system, dtype = "f32";
  bool chat = false, no_bos = false, json = false;
  int tp = 1, threads = 0;
  GenerateConfig gen;
};

int run(const Opts& o) {
  int world_rank = 0, world_size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world_size);
  const ParallelDims dims = ParallelDims::from_tp(o.tp, world_size);  // fails early, naming the numbers
  if (o.prompt.empty() == o.input.empty()) fail_input("give exactly one of --prompt TEXT and --input FILE.jsonl");
  if (o.dtype != "f32" && o.dtype != "f64") fail_input("--dtype " + o.dtype + ": expected f32 or f64");
  o.gen.validate();

  const std::string dir = resolve_step_dir(o.ckpt, "--ckpt"), h5 = dir + "/model.h5";
  const CheckpointMeta meta = read_meta(h5);
  const ModelConfig cfg = ModelConfig::from_hf_json(json::parse(meta.config_json), h5);
  validate_tensor_parallel(cfg, o.tp);
  const ParallelContext par(dims, MPI_COMM_WORLD);
  const bool reporter = par.tp_rank() == 0;  // one rank of each tp group writes its group's records
  const Tokenizer tok = Tokenizer::from_bytes(meta.tokenizer_bytes, h5);
  std::unique_ptr<ChatTemplate> tpl;
  if (o.chat) {
    tpl = chat_template_for(o.tpl, meta, h5);
    if (!tpl)
      fail_input(dir +
                 " holds no chat template (it was not instruction-tuned by `polyllama sft`): pass --template "
                 "NAME or drop --chat");
  } else if (!o.tpl.empty() || !o.system.empty()) {
    fail_input("--template and --system apply with --chat only");
  }

  const std::vector<Prompt> prompts = read_prompts({o.prompt, o.input, o.chat, o.system}, tpl.get());
  const auto [lo, hi] = block_share(prompts.size(), par.dp_rank(), dims.dp);
  std::vector<GenRequest> reqs;
  for (size_t i = lo; i < hi; ++i)
    reqs.push_back(prompt_request(prompts[i], i, tok, tpl.get(), o.no_bos, cfg.max_position_embeddings));

  CpuBackend be(o.threads);
  LlamaModel model(cfg, be, o.dtype == "f64" ? DType::f64 : DType::f32, /*mixed_precision=*/false,
                   o.tp > 1 ? &par : nullptr);
  load_model_weights(h5, model);  // this rank's shard of each tensor
  const bool streaming = !o.prompt.empty() && !o.json && world_rank == 0;
  const StreamFn stream = [&](size_t, const std::string& text) {
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fflush(stdout);
  };
  GenStats st;
  GenerateConfig gen = o.gen;
  gen.text_after_prompt = !o.chat;  // a chat answer reads on its own, without the space SentencePiece prefixed
  const std::vector<GenOutput> outs = generate(model, tok, gen, reqs, streaming ? stream : StreamFn(), &st);
  if (streaming) std::fputs("\n", stdout);

  std::string mine;
  for (size_t k = 0; reporter && k < outs.size(); ++k) {
    const Prompt& p = prompts[lo + k];
    const GenOutput& g = outs[k];
    json j = {{"index", lo + k}};
    j.update(p.passthrough);
    j["prompt"] = p.text;
    j["completion"] = g.text;
    j["prompt_tokens"] = reqs[k].ids.size();
    j["completion_tokens"] = g.tokens.size();
    j["completion_ids"] = g.tokens;
    j["finish_reason"] = g.finish_reason;
    j["tokens_per_s"] = g.seconds > 0 ? static_cast<double>(g.tokens.size()) / g.seconds : 0.0;
    mine += j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
  }
  std::string all;  // every rank's records, in rank order, on rank 0
  for (const std::string& part : gather_strings(mine, MPI_COMM_WORLD)) all += part;

  int64_t totals[2] = {reporter ? st.prompt_tokens : 0, reporter ? st.generated_tokens : 0}, sums[2] = {0, 0};
  double secs[3] = {st.seconds, st.prefill_seconds, st.decode_seconds}, maxs[3] = {0, 0, 0};
  MPI_Reduce(totals, sums, 2, MPI_INT64_T, MPI_SUM, 0, MPI_COMM_WORLD);
  MPI_Reduce(secs, maxs, 3, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
  if (world_rank != 0) return 0;

  if (!o.output.empty()) {
    write_file_atomically(o.output, all);
  } else if (!streaming) {
    std::fwrite(all.data(), 1, all.size(), stdout);
    std::fflush(stdout);
  }
  const double tps = maxs[0] > 0 ? static_cast<double>(sums[1]) / maxs[0] : 0.0;
  std::fprintf(stderr,
               "generate: %zu prompt(s) on %d rank%s (tp %d x dp %d), %lld prompt + %lld generated tokens in %.2fs "
               "(prefill %.2fs, decode %.2fs): %.1f generated tokens/s | batch %lld, %d threads, %s | KV cache %zu KiB%s\n",
               prompts.size(), world_size, world_size > 1 ? "s" : "", dims.tp, dims.dp, static_cast<long long>(sums[0]),
               static_cast<long long>(sums[1]), maxs[0], maxs[1], maxs[2], tps,
               static_cast<long long>(o.gen.batch_size), be.threads(), o.dtype.c_str(), st.cache_bytes >> 10,
               outs.size() == 1 ? (", finish: " + outs[0].finish_reason).c_str() : "");
  print_json_summary(o.json && o.prompt.empty() && !o.output.empty(), json{{"prompts", prompts.size()},
                                                                           {"ranks", world_size},
                                                                           {"tp", dims.tp},
                                                                           {"prompt_tokens", sums[0]},
                                                                           {"generated_tokens", sums[1]},
                                                                           {"seconds", maxs[0]},
                                                                           {"tokens_per_s", tps}}
                                                                          .dump());
  return 0;
}

}  // namespace

RunFn add_generate(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "generate",
      "Text from a checkpoint, with a KV cache. --prompt TEXT streams one completion to the terminal; --input "
      "FILE.jsonl ({\"prompt\": ...} per line) writes JSONL (prompt, completion, token counts, finish_reason, "
      "completion_ids, tokens_per_s) in input order, the prompts split across mpirun ranks. --chat prompts through the "
      "template the "
      "checkpoint was instruction-tuned with. Greedy unless --temperature > 0. --tp N shards one model over N "
      "consecutive ranks (a model too big for one; same output as one process). Examples: "
      "polyllama generate --ckpt run --prompt 'Once upon a time' --max-new-tokens 64 | "
      "mpirun -np 4 polyllama generate --ckpt sft --chat --input questions.jsonl --output answers.jsonl "
      "--temperature 0.7 --top-p 0.9 --seed 1 | "
      "mpirun -np 4 polyllama generate --ckpt run --tp 2 --input prompts.jsonl (tp 2 x dp 2)");
  add_config_file(cmd);
  auto o = std::make_shared<Opts>();
  GenerateConfig& g = o->gen;
  cmd->add_option("--ckpt", o->ckpt, "checkpoint: a run directory (its ckpt/latest) or a step directory")->required();
  cmd->add_option("--prompt", o->prompt, "one prompt; its completion streams to stdout");
  cmd->add_option("--input", o->input,
                  "JSONL prompts: {\"prompt\": TEXT, \"id\": optional}; with --chat also Alpaca records "
                  "{\"instruction\", \"input\"} and {\"messages\": [...]} conversations ending in a user turn");
  cmd->add_option("--output", o->output, "JSONL output file (default: stdout)");
  cmd->add_flag("--chat", o->chat, "prompt through the chat template (the checkpoint's, from sft, or --template)");
  cmd->add_option("--template", o->tpl, "chat template: a built-in name or a JSON file; overrides the checkpoint's");
  cmd->add_option("--system", o->system, "system prompt for --chat (default: the template's)");
  cmd->add_option("--max-new-tokens", g.max_new_tokens, "tokens to generate at most per prompt")->capture_default_str();
  cmd->add_option("--temperature", g.sampling.temperature, "0: greedy; > 0: sample from softmax(logits / T)")
      ->capture_default_str();
  cmd->add_option("--top-k", g.sampling.top_k, "sample among the k most likely tokens (0: all)")->capture_default_str();
  cmd->add_option("--top-p", g.sampling.top_p, "nucleus: the smallest set of most likely tokens reaching p")
      ->capture_default_str();
  cmd->add_option("--repetition-penalty", g.sampling.repetition_penalty,
                  "divide (multiply if negative) the logits of tokens already seen (1: off; 1.1-1.3 typical)")
      ->capture_default_str();
  cmd->add_option("--seed", g.sampling.seed, "sampling seed; a prompt's draws depend only on it and its index")
      ->capture_default_str();
  cmd->add_option("--stop", g.stop, "stop string (repeatable): the completion ends before it");
  cmd->add_flag("--ignore-eos", g.ignore_eos, "do not stop at EOS (benchmarks)");
  cmd->add_flag("--no-bos", o->no_bos, "do not prepend BOS to plain prompts (LLaMA's tokenizer does)");
  cmd->add_option("--batch-size", g.batch_size, "prompts decoded together per rank")->capture_default_str();
  cmd->add_option("--prefill-chunk", g.prefill_chunk, "prompt tokens per forward pass while prefilling")
      ->capture_default_str();
  cmd->add_option("--dtype", o->dtype, "compute dtype on the CPU: f32 or f64")->capture_default_str();
  add_threads_option(cmd, o->threads, "CPU threads (default: OMP_NUM_THREADS or all cores)");
  cmd->add_option("--tp", o->tp,
                  "tensor-parallel ranks: heads, kv-heads, MLP features and vocabulary split over tp consecutive "
                  "ranks (each must divide by tp); the launched ranks / tp are data-parallel groups splitting the "
                  "prompts")
      ->capture_default_str();
  cmd->add_flag(
      "--json", o->json,
      "with --prompt: print the JSONL record instead of streaming; with --input and --output: a JSON summary line");
  return [cmd, o]() { return cmd->parsed() ? run(*o) : 0; };
}

}  // namespace polyllama::cli
