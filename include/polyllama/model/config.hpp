#pragma once
// LLaMA hyper-parameters under Hugging Face's config.json names, so a config.json reads and writes as is.
#include <cstdint>
#include <string>

#include <nlohmann/json_fwd.hpp>

namespace polyllama {

struct ModelConfig {
  int64_t hidden_size = 512;
  int64_t intermediate_size = 1408;
  int64_t num_hidden_layers = 8;
  int64_t num_attention_heads = 8;
  int64_t num_key_value_heads = 4;
  int64_t vocab_size = 32000;
  int64_t max_position_embeddings = 2048;
  double rms_norm_eps = 1e-5;
  double rope_theta = 10000.0;
  bool tie_word_embeddings = false;

  int64_t head_dim() const { return hidden_size / num_attention_heads; }
  // Fails with the offending numbers when the shapes do not fit together.
  void validate() const;
  // Parameters in all matrix products of one token's forward pass (every linear layer plus the LM head).
  int64_t matmul_params() const;
  int64_t total_params() const;
  // Model FLOPs of one training step on `tokens` tokens of length `seq`: 6 per matmul parameter per token
  // plus causal attention (QK^T and PV, forward and backward), the same count PyTorch's peer script uses.
  double train_flops(int64_t tokens, int64_t seq) const;
  // Layers whose activations backward recomputes: every layer with `recompute` alone, the first
  // `recompute_layers` when that is >= 0 (which implies recompute), none otherwise. Fails when it exceeds the
  // model's layers.
  int64_t recomputed_layers(bool recompute, int64_t recompute_layers) const;

  nlohmann::json to_hf_json() const;
  // Reads a Hugging Face config.json object; `where` names the source in errors.
  static ModelConfig from_hf_json(const nlohmann::json& j, const std::string& where);
  // Named shapes: "tiny", "bench" (the CPU benchmark config), "bench-1b" (the GPU one, ~1.2B), "llama-7b", "llama2-7b", "llama-13b",
  // "llama2-13b", "llama3-8b".
  static ModelConfig preset(const std::string& name);
  static const char* preset_names();
};

}  // namespace polyllama
