#include <mpi.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "polyllama/ckpt/checkpoint.hpp"
#include "polyllama/ckpt/resize_vocab.hpp"
#include "polyllama/core/log.hpp"
#include "polyllama/model/config.hpp"
#include "polyllama/tokenizer/extend.hpp"
#include "polyllama/tokenizer/tokenizer.hpp"
#include "verbs.hpp"

namespace fs = std::filesystem;

namespace polyllama::cli {

namespace {

// A step directory (holds model.h5) or a run directory / checkpoint root with `latest`.
std::string find_step_dir(const std::string& path) {
  std::error_code ec;
  if (fs::exists(fs::path(path) / "model.h5", ec)) return path;
  for (const fs::path& root : {fs::path(path) / "ckpt", fs::path(path)})
    if (fs::exists(root / "latest", ec)) return latest_checkpoint(root.string());
  fail_input(path + " is neither a checkpoint step directory (no model.h5) nor a run directory (no ckpt/latest)");
}

}  // namespace

RunFn add_resize_vocab(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "resize-vocab",
      "Fit a checkpoint to an extended tokenizer (from `tokenizer extend`): the embedding and LM head (and the "
      "AdamW moments, when the checkpoint has them) grow to the new vocabulary; old rows are copied bit for bit, "
      "new rows start from --init, new moment rows are zero. Streams tensor by tensor in row blocks, never holding "
      "the whole model. Writes OUT/ckpt/step_N (same step and trainer state) with the new tokenizer inside; "
      "continue with `polyllama pretrain --run-dir OUT`. Example: polyllama resize-vocab --checkpoint run "
      "--tokenizer llama2-zh.model --out run-zh");
  add_config_file(cmd);
  struct Opts {
    std::string in, tokenizer, out, init = "subword-mean", head_init;
    double std = 0.02;
    uint64_t seed = 1234;
    int64_t budget_mib = 256;
    bool json = false;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--checkpoint", o->in, "a step directory, or a run directory (its ckpt/latest)")->required();
  cmd->add_option("--tokenizer", o->tokenizer,
                  "the extended tokenizer: its first pieces must be the checkpoint's own tokenizer's")
      ->required()->check(CLI::ExistingFile);
  cmd->add_option("--out", o->out, "a new run directory for the resized checkpoint")->required();
  cmd->add_option("--init", o->init,
                  "new rows: subword-mean (the mean of the old rows of the pieces the old tokenizer splits the new "
                  "piece's text into), mean (of all old rows) or normal (N(0, --std))")
      ->check(CLI::IsMember({"subword-mean", "mean", "normal"}))->capture_default_str();
  cmd->add_option("--head-init", o->head_init,
                  "new rows of an untied LM head, if they should start differently from the embedding's (default: "
                  "--init)")
      ->check(CLI::IsMember({"subword-mean", "mean", "normal"}));
  cmd->add_option("--std", o->std, "--init normal: standard deviation")->capture_default_str();
  cmd->add_option("--seed", o->seed, "--init normal: seed")->capture_default_str();
  cmd->add_option("--memory-mib", o->budget_mib,
                  "memory for the new rows' sums per pass over the old rows (subword-mean)")->capture_default_str();
  cmd->add_flag("--json", o->json, "print a one-line JSON summary");
  return [cmd, o]() {
    if (!cmd->parsed()) return 0;
    int world_size = 1;
    MPI_Comm_size(MPI_COMM_WORLD, &world_size);
    if (world_size > 1)
      fail_input("resize-vocab runs on one rank (it streams the checkpoint in row blocks, so one rank handles any "
                 "size); launched with " + std::to_string(world_size) + " ranks: run it without mpirun");
    const std::string step_dir = find_step_dir(o->in), model_h5 = step_dir + "/model.h5";
    CheckpointMeta meta = read_meta(model_h5);
    auto config = nlohmann::json::parse(meta.config_json);
    const ModelConfig cfg = ModelConfig::from_hf_json(config, model_h5);
    const Tokenizer merged = Tokenizer::from_file(o->tokenizer);
    const std::string ckpt_root = o->out + "/ckpt";
    if (!latest_checkpoint(ckpt_root).empty())
      fail_input(o->out + " already holds a checkpoint; resize into a new run directory");
    if (fs::weakly_canonical(fs::path(o->out)) == fs::weakly_canonical(fs::path(step_dir).parent_path().parent_path()))
      fail_input("--out must differ from the checkpoint's own run directory");

    VocabResize plan;
    const int64_t base_pieces = Tokenizer::from_bytes(meta.tokenizer_bytes, model_h5).vocab_size();
    plan.file_rows = cfg.vocab_size;
    plan.old_rows = std::min(cfg.vocab_size, base_pieces);
    plan.new_rows = merged.vocab_size();
    if (plan.file_rows > plan.old_rows && plan.new_rows > plan.old_rows)
      log_warn(fmt("the checkpoint has %lld rows for %lld pieces: padding rows %lld..%lld now belong to new pieces "
                   "and are initialised like them",
                   static_cast<long long>(plan.file_rows), static_cast<long long>(base_pieces),
                   static_cast<long long>(plan.old_rows), static_cast<long long>(plan.file_rows - 1)));
    auto init_of = [](const std::string& s) {
      return s == "mean" ? VocabInit::mean : s == "normal" ? VocabInit::normal : VocabInit::subword_mean;
    };
    plan.init = init_of(o->init);
    plan.head_init = init_of(o->head_init.empty() ? o->init : o->head_init);
    if (!o->head_init.empty() && cfg.tie_word_embeddings)
      log_warn("--head-init is ignored: the LM head is tied to the embedding");
    plan.std = o->std;
    plan.seed = o->seed;
    plan.budget_bytes = o->budget_mib << 20;
    if (plan.new_rows <= plan.file_rows)
      fail_input(o->tokenizer + " has " + std::to_string(plan.new_rows) + " pieces; the checkpoint already has " +
                 std::to_string(plan.file_rows) + " rows (nothing to grow)");
    // Even for other inits: the new tokenizer must extend the checkpoint's, or old ids would change meaning.
    plan.recipes = subword_recipes(meta.tokenizer_bytes, merged.model_bytes(), plan.old_rows, o->tokenizer);
    int64_t from_subwords = 0, pieces = 0;
    for (const auto& r : plan.recipes) from_subwords += r.empty() ? 0 : 1, pieces += static_cast<int64_t>(r.size());
    if (plan.init != VocabInit::subword_mean && plan.head_init != VocabInit::subword_mean) plan.recipes.clear();

    config["vocab_size"] = plan.new_rows;
    meta.config_json = config.dump();
    meta.tokenizer_bytes = merged.model_bytes();
    int64_t step = 0;
    if (!meta.trainer_json.empty()) step = nlohmann::json::parse(meta.trainer_json).value("step", int64_t{0});
    const std::string tmp = begin_checkpoint(ckpt_root, step);
    const ResizeFileStats ms = resize_tensor_file(model_h5, tmp + "/model.h5", plan, false, &meta);
    ResizeFileStats os;
    const bool has_optim = fs::exists(step_dir + "/optim.h5");
    if (has_optim) os = resize_tensor_file(step_dir + "/optim.h5", tmp + "/optim.h5", plan, true, nullptr);
    read_meta(tmp + "/model.h5");
    const std::string dir = publish_checkpoint(ckpt_root, step);
    log_info(fmt("%s: vocabulary %lld -> %lld rows (%s%s); %lld tensors, %lld of them grown (%lld passes over old rows)%s -> %s",
                 step_dir.c_str(), static_cast<long long>(plan.file_rows), static_cast<long long>(plan.new_rows),
                 (o->init + (o->head_init.empty() || o->head_init == o->init ? "" : ", head " + o->head_init)).c_str(),
                 !plan.recipes.empty()
                     ? fmt(": %lld rows from %.2f subword rows on average, %lld without a text take the mean",
                           static_cast<long long>(from_subwords),
                           from_subwords ? static_cast<double>(pieces) / static_cast<double>(from_subwords) : 0.0,
                           static_cast<long long>(plan.new_rows - plan.old_rows - from_subwords)).c_str()
                     : "",
                 static_cast<long long>(ms.tensors + os.tensors), static_cast<long long>(ms.grown + os.grown),
                 static_cast<long long>(ms.passes), has_optim ? " (with optim.h5, new moments zero)" : "", dir.c_str()));
    print_json_summary(o->json, nlohmann::json{{"checkpoint", dir},
                                               {"old_vocab", plan.file_rows},
                                               {"new_vocab", plan.new_rows},
                                               {"init", o->init},
                                               {"rows_from_subwords", from_subwords},
                                               {"optimizer_state", has_optim}}
                                    .dump());
    return 0;
  };
}

}  // namespace polyllama::cli
