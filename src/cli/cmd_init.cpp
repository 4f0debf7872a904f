#include <cmath>

#include <nlohmann/json.hpp>

#include "polyllama/backend/cpu/cpu_backend.hpp"
#include "polyllama/ckpt/checkpoint.hpp"
#include "polyllama/core/log.hpp"
#include "polyllama/model/llama.hpp"
#include "polyllama/tokenizer/tokenizer.hpp"
#include "polyllama/train/trainer.hpp"
#include "train_options.hpp"
#include "verbs.hpp"

namespace polyllama::cli {

RunFn add_init(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "init", "Write a fresh, seeded random model as step 0 of a run directory (RUN/ckpt/step_00000000). "
              "Example: polyllama init --run-dir run --tokenizer zh.model --preset tiny");
  add_config_file(cmd);
  struct Opts {
    ModelOptions model;
    std::string run_dir, tokenizer;
    uint64_t seed = 1234;
    double std = 0.02;
    bool json = false, overwrite = false;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--run-dir", o->run_dir, "run directory to create")->required();
  cmd->add_option("--tokenizer", o->tokenizer, "SentencePiece .model stored in the checkpoint")->required();
  cmd->add_option("--seed", o->seed, "initialisation seed")->capture_default_str();
  cmd->add_option("--init-std", o->std, "standard deviation of the Gaussian weight init")->capture_default_str();
  cmd->add_flag("--json", o->json, "print a one-line JSON summary");
  cmd->add_flag("--overwrite", o->overwrite,
                "start RUN over even though it holds checkpoints (refused otherwise): its checkpoints and "
                "metrics.jsonl are deleted once the new step 0 is saved");
  o->model.add(cmd, "tiny");
  return [cmd, o]() {
    if (!cmd->parsed()) return 0;
    const Tokenizer tok = Tokenizer::from_file(o->tokenizer);
    ModelConfig cfg = o->model.resolve();
    const bool vocab_given = o->model.explicit_opts[5]->count() > 0;
    if (!vocab_given) cfg.vocab_size = tok.vocab_size();
    if (cfg.vocab_size < tok.vocab_size())
      fail_input("--vocab-size " + std::to_string(cfg.vocab_size) + " is smaller than the tokenizer's " +
                 std::to_string(tok.vocab_size()) + " pieces (" + o->tokenizer + ")");
    if (!(std::isfinite(o->std) && o->std > 0))
      fail_input("--init-std " + fmt("%g", o->std) + " must be a finite number > 0");
    claim_run_dir(o->run_dir);
    if (const std::string existing = describe_checkpoints(o->run_dir); !existing.empty() && !o->overwrite)
      fail_input(o->run_dir + " already holds " + existing + "; init would point its latest at a new random model. "
                 "Choose a new --run-dir (to continue this run: polyllama pretrain --run-dir " + o->run_dir + " ...)");
    CpuBackend be;
    LlamaModel model(cfg, be, DType::f32);
    model.init_random(o->seed, o->std);
    CheckpointMeta meta;
    meta.config_json = cfg.to_hf_json().dump();
    meta.tokenizer_bytes = tok.model_bytes();
    const std::string dir = save_checkpoint(o->run_dir + "/ckpt", 0, model_tensors(model), {}, meta);
    if (o->overwrite) clear_run_dir(o->run_dir, dir);  // the old run's other steps and metrics
    log_info(fmt("initialised %.2fM parameters (%lld layers, hidden %lld, vocab %lld) -> %s",
                 static_cast<double>(cfg.total_params()) / 1e6, static_cast<long long>(cfg.num_hidden_layers),
                 static_cast<long long>(cfg.hidden_size), static_cast<long long>(cfg.vocab_size), dir.c_str()));
    print_json_summary(o->json, nlohmann::json{{"checkpoint", dir}, {"params", cfg.total_params()}}.dump());
    return 0;
  };
}

}  // namespace polyllama::cli
