// `polyllama convert`: Hugging Face LLaMA folders <-> polyllama checkpoints (DESIGN.md sections 1, 2 and 4); the
// conversion itself is ckpt/llama_hf's.
#include <mpi.h>

#include <nlohmann/json.hpp>

#include "polyllama/ckpt/llama_hf.hpp"
#include "verbs.hpp"

namespace polyllama::cli {

namespace {

using json = nlohmann::json;

struct Opts {
  std::vector<std::string> from, to;
  std::string dtype, max_shard_size = "5GB";
  bool overwrite = false, json = false;
  CLI::Option *dtype_opt = nullptr, *shard_opt = nullptr;
};

int hf_to_ckpt(const Opts& o, const std::string& src, const std::string& run_dir) {
  if (o.dtype_opt->count() || o.shard_opt->count())
    fail_input("--dtype and --max-shard-size apply to --to hf; checkpoints hold fp32");
  const HfImportResult r = import_hf_llama(src, run_dir);
  print_json_summary(o.json, json{{"checkpoint", r.checkpoint},
                                  {"tensors", r.tensors},
                                  {"params", r.params},
                                  {"source_dtype", r.source_dtype},
                                  {"skipped", r.skipped}}.dump());
  return 0;
}

int ckpt_to_hf(const Opts& o, const std::string& src, const std::string& out_dir) {
  HfExportOptions eo;
  if (o.dtype_opt->count()) {
    if (!parse_hf_dtype(o.dtype, &eo.dtype)) fail_input("--dtype wants f32, bf16 or f16, got '" + o.dtype + "'");
    eo.dtype_given = true;
  }
  eo.max_shard_bytes = parse_byte_size(o.max_shard_size, "--max-shard-size");
  eo.overwrite = o.overwrite;
  const HfExportResult r = export_hf_llama(src, out_dir, eo);
  print_json_summary(o.json, json{{"folder", out_dir},
                                  {"checkpoint", r.step_dir},
                                  {"dtype", short_dtype_name(r.dtype)},
                                  {"files", r.files.weight_files},
                                  {"total_size", r.files.total_size},
                                  {"params", r.params}}.dump());
  return 0;
}

}  // namespace

RunFn add_convert(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "convert",
      "Convert between a Hugging Face LLaMA folder (config.json, model.safetensors or its shards, tokenizer.model) "
      "and a polyllama checkpoint. `--to ckpt RUN` writes RUN/ckpt/step_00000000, which `pretrain --run-dir RUN` "
      "continues; `--from ckpt` takes a run directory (its ckpt/latest) or a step directory. Examples: "
      "polyllama convert --from hf Llama-2-7b-hf --to ckpt run;  "
      "polyllama convert --from ckpt run --to hf out --dtype bf16");
  add_config_file(cmd);
  auto o = std::make_shared<Opts>();
  cmd->add_option("--from", o->from, "KIND PATH: hf FOLDER, or ckpt RUN_DIR|STEP_DIR")->expected(2)->required();
  cmd->add_option("--to", o->to, "KIND PATH: ckpt RUN_DIR (new), or hf FOLDER")->expected(2)->required();
  o->dtype_opt = cmd->add_option("--dtype", o->dtype,
                                 "dtype of the Hugging Face weights: f32, bf16 or f16 (default: the dtype the "
                                 "checkpoint was imported from, else bf16); f16 fails on values that round past 65504");
  o->shard_opt = cmd->add_option("--max-shard-size", o->max_shard_size,
                                 "largest weight file, as Hugging Face counts it (5GB, 500MB, 2GiB); beyond it the "
                                 "weights are sharded with model.safetensors.index.json")
                     ->capture_default_str();
  cmd->add_flag("--overwrite", o->overwrite, "replace the weights already in the --to hf folder");
  cmd->add_flag("--json", o->json, "print a one-line JSON summary");
  return [cmd, o]() {
    if (!cmd->parsed()) return 0;
    int world_size = 1;
    MPI_Comm_size(MPI_COMM_WORLD, &world_size);
    if (world_size > 1) fail_input("convert runs on one rank; launched with " + std::to_string(world_size));
    const std::string& from = o->from.at(0);
    const std::string& to = o->to.at(0);
    for (const std::string& k : {from, to})
      if (k != "hf" && k != "ckpt") fail_input("--from and --to take hf or ckpt and a path, got '" + k + "'");
    if (from == "hf" && to == "ckpt") return hf_to_ckpt(*o, o->from.at(1), o->to.at(1));
    if (from == "ckpt" && to == "hf") return ckpt_to_hf(*o, o->from.at(1), o->to.at(1));
    fail_input("convert goes from hf to ckpt or from ckpt to hf, not from " + from + " to " + to);
  };
}

}  // namespace polyllama::cli
