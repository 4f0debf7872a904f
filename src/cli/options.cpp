#include <algorithm>
#include <cstdio>
#include <thread>

#include "polyllama/ckpt/checkpoint.hpp"
#include "polyllama/data/chat_template.hpp"
#include "verbs.hpp"

namespace polyllama::cli {

CLI::Option* add_threads_option(CLI::App* cmd, int& threads, const std::string& help) {
  const int hw = std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  const CLI::Validator check(
      [hw](std::string& v) -> std::string {
        long long n = 0;
        // CLI11 puts the flag's name in front: "--threads: 0 must be at least 1 ..."
        if (!CLI::detail::lexical_cast(v, n)) return v + " is not a whole number";
        if (n < 1) return v + " must be at least 1 (leave it out for OMP_NUM_THREADS or all cores)";
        if (n > 4LL * hw)
          return v + " is more than 4 x the " + std::to_string(hw) + " hardware threads here (" +
                 std::to_string(4 * hw) + ")";
        return "";
      },
      "1.." + std::to_string(4 * hw), "threads");
  return cmd->add_option("--threads", threads, help)->check(check);
}

void print_json_summary(bool enabled, const std::string& json_line) {
  if (enabled) std::printf("%s\n", json_line.c_str());
  std::fflush(stdout);
}

void ModelOptions::add(CLI::App* cmd, const std::string& default_preset) {
  preset = default_preset;
  cmd->add_option("--preset", preset, std::string("model shape to start from: ") + ModelConfig::preset_names())
      ->capture_default_str()
      ->group("Model");
  auto opt = [&](const char* flag, auto& field, const char* help) {
    explicit_opts.push_back(cmd->add_option(flag, field, help)->group("Model"));
  };
  opt("--hidden-size", cfg.hidden_size, "model width");
  opt("--intermediate-size", cfg.intermediate_size, "SwiGLU hidden width");
  opt("--num-hidden-layers", cfg.num_hidden_layers, "transformer layers");
  opt("--num-attention-heads", cfg.num_attention_heads, "query heads");
  opt("--num-key-value-heads", cfg.num_key_value_heads, "key/value heads (grouped-query attention)");
  opt("--vocab-size", cfg.vocab_size, "vocabulary size (init: defaults to the tokenizer's)");
  opt("--max-position-embeddings", cfg.max_position_embeddings, "longest sequence the model serves");
  opt("--rms-norm-eps", cfg.rms_norm_eps, "RMSNorm epsilon");
  opt("--rope-theta", cfg.rope_theta, "rotary embedding base");
  explicit_opts.push_back(
      cmd->add_flag("--tie-word-embeddings", cfg.tie_word_embeddings, "share the embedding and LM head")->group("Model"));
}

ModelConfig ModelOptions::resolve() const {
  ModelConfig c = ModelConfig::preset(preset);
  auto given = [&](size_t i) { return explicit_opts[i]->count() > 0; };
  if (given(0)) c.hidden_size = cfg.hidden_size;
  if (given(1)) c.intermediate_size = cfg.intermediate_size;
  if (given(2)) c.num_hidden_layers = cfg.num_hidden_layers;
  if (given(3)) c.num_attention_heads = cfg.num_attention_heads;
  if (given(4)) c.num_key_value_heads = cfg.num_key_value_heads;
  if (given(5)) c.vocab_size = cfg.vocab_size;
  if (given(6)) c.max_position_embeddings = cfg.max_position_embeddings;
  if (given(7)) c.rms_norm_eps = cfg.rms_norm_eps;
  if (given(8)) c.rope_theta = cfg.rope_theta;
  if (given(9)) c.tie_word_embeddings = cfg.tie_word_embeddings;
  c.validate();
  return c;
}

std::unique_ptr<ChatTemplate> chat_template_for(const std::string& tpl_opt, const CheckpointMeta& meta,
                                                const std::string& h5) {
  if (!tpl_opt.empty()) return std::make_unique<ChatTemplate>(ChatTemplate::load(tpl_opt));
  if (!meta.chat_template_json.empty())
    return std::make_unique<ChatTemplate>(ChatTemplate::from_json(meta.chat_template_json, h5 + ": chat_template"));
  return nullptr;
}

}  // namespace polyllama::cli
