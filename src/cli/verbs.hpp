#pragma once
// Each verb registers its CLI11 subcommand and returns the function that runs it once parsed.
#include <CLI/CLI.hpp>

#include <functional>
#include <memory>
#include <string>

#include "polyllama/model/config.hpp"

namespace polyllama {
struct ChatTemplate;
struct CheckpointMeta;
}  // namespace polyllama

namespace polyllama::cli {

using RunFn = std::function<int()>;

RunFn add_tokenizer(CLI::App& app);
RunFn add_init(CLI::App& app);
RunFn add_pretrain(CLI::App& app);
RunFn add_bench(CLI::App& app);
RunFn add_convert(CLI::App& app);
RunFn add_data(CLI::App& app);
RunFn add_sft(CLI::App& app);
RunFn add_generate(CLI::App& app);
RunFn add_resize_vocab(CLI::App& app);
RunFn add_plan(CLI::App& app);
RunFn add_eval(CLI::App& app);
RunFn add_serve(CLI::App& app);
RunFn add_doctor(CLI::App& app);

// --preset and the Hugging Face config fields as flags; explicit flags override the preset.
struct ModelOptions {
  std::string preset;
  ModelConfig cfg;
  std::vector<CLI::Option*> explicit_opts;
  void add(CLI::App* cmd, const std::string& default_preset);
  // The preset with every explicitly given flag applied, validated.
  ModelConfig resolve() const;
};

// --threads N for a verb that runs on this machine's cores: N must be at least 1 (leave the flag out for OpenMP's
// default) and at most 4 x the hardware threads; anything else fails parsing (exit 1) naming the flag and value.
CLI::Option* add_threads_option(CLI::App* cmd, int& threads, const std::string& help);

// Every verb reads its options from a TOML file too: `--config FILE`.
void add_config_file(CLI::App* cmd);
// Rewrites argv (without argv[0]) so the --config file's keys come first as ordinary options.
std::vector<std::string> expand_config(CLI::App& app, std::vector<std::string> args);
// The chat template a verb prompts through: --template (a built-in name or a JSON file) when given, else the one
// the checkpoint was instruction-tuned with (`sft` stores it in model.h5, named h5); nullptr when neither.
std::unique_ptr<ChatTemplate> chat_template_for(const std::string& tpl_opt, const CheckpointMeta& meta,
                                                const std::string& h5);
// Prints one JSON line when --json was given, else nothing.
void print_json_summary(bool enabled, const std::string& json_line);

}  // namespace polyllama::cli
