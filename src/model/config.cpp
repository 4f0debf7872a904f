#include "polyllama/model/config.hpp"

#include <cmath>

#include <nlohmann/json.hpp>

#include "polyllama/core/error.hpp"

namespace polyllama {

void ModelConfig::validate() const {
  auto bad = [](const std::string& m) { fail_input("model config: " + m); };
  if (hidden_size <= 0 || intermediate_size <= 0 || num_hidden_layers <= 0 || vocab_size <= 0 ||
      num_attention_heads <= 0 || num_key_value_heads <= 0 || max_position_embeddings <= 0)
    bad("every size must be positive");
  if (hidden_size % num_attention_heads != 0)
    bad("hidden_size " + std::to_string(hidden_size) + " is not divisible by num_attention_heads " +
        std::to_string(num_attention_heads));
  if (num_attention_heads % num_key_value_heads != 0)
    bad("num_attention_heads " + std::to_string(num_attention_heads) + " is not a multiple of num_key_value_heads " +
        std::to_string(num_key_value_heads));
  if (head_dim() % 2 != 0) bad("head dim " + std::to_string(head_dim()) + " must be even for rotary embeddings");
  if (!(std::isfinite(rms_norm_eps) && rms_norm_eps > 0) || !(std::isfinite(rope_theta) && rope_theta > 0))
    bad("rms_norm_eps and rope_theta must be finite and positive");
}

int64_t ModelConfig::recomputed_layers(bool recompute, int64_t recompute_layers) const {
  if (recompute_layers < -1 || recompute_layers > num_hidden_layers)
    fail_input("--recompute-layers " + std::to_string(recompute_layers) + " is outside [0, " +
               std::to_string(num_hidden_layers) + "] (the model's layers)");
  return recompute_layers >= 0 ? recompute_layers : recompute ? num_hidden_layers : 0;
}

int64_t ModelConfig::matmul_params() const {
  const int64_t kv = num_key_value_heads * head_dim();
  const int64_t per_layer = 2 * hidden_size * hidden_size + 2 * hidden_size * kv + 3 * hidden_size * intermediate_size;
  return num_hidden_layers * per_layer + vocab_size * hidden_size;
}

int64_t ModelConfig::total_params() const {
  const int64_t norms = (2 * num_hidden_layers + 1) * hidden_size;
  return matmul_params() + norms + (tie_word_embeddings ? 0 : vocab_size * hidden_size);
}

double ModelConfig::train_flops(int64_t tokens, int64_t seq) const {
  return 6.0 * static_cast<double>(matmul_params()) * static_cast<double>(tokens) +
         6.0 * static_cast<double>(num_hidden_layers) * static_cast<double>(tokens) * static_cast<double>(seq) *
             static_cast<double>(hidden_size);
}

nlohmann::json ModelConfig::to_hf_json() const {
  return {{"architectures", {"LlamaForCausalLM"}},
          {"model_type", "llama"},
          {"hidden_size", hidden_size},
          {"intermediate_size", intermediate_size},
          {"num_hidden_layers", num_hidden_layers},
          {"num_attention_heads", num_attention_heads},
          {"num_key_value_heads", num_key_value_heads},
          {"vocab_size", vocab_size},
          {"max_position_embeddings", max_position_embeddings},
          {"rms_norm_eps", rms_norm_eps},
          {"rope_theta", rope_theta},
          {"tie_word_embeddings", tie_word_embeddings},
          {"hidden_act", "silu"},
          {"bos_token_id", 1},
          {"eos_token_id", 2}};
}

ModelConfig ModelConfig::from_hf_json(const nlohmann::json& j, const std::string& where) {
  ModelConfig c;
  auto need = [&](const char* key, int64_t& out) {
    if (!j.contains(key) || !j[key].is_number_integer()) fail_input(where + ": missing integer field '" + key + "'");
    out = j[key].get<int64_t>();
  };
  need("hidden_size", c.hidden_size);
  need("intermediate_size", c.intermediate_size);
  need("num_hidden_layers", c.num_hidden_layers);
  need("num_attention_heads", c.num_attention_heads);
  need("vocab_size", c.vocab_size);
  // Optional fields: absent or null take the default; a value of another type is an error naming the field
  // (json::value would throw nlohmann's type_error, which is no input error: found by fuzz_ckpt_attrs).
  auto present = [&](const char* key) { return j.contains(key) && !j[key].is_null(); };
  auto wrong = [&](const char* key, const char* want) {
    fail_input(where + ": field '" + key + "' must be " + want + ", got " + j[key].dump());
  };
  auto opt_int = [&](const char* key, int64_t dflt) {
    if (!present(key)) return dflt;
    if (!j[key].is_number_integer()) wrong(key, "an integer");
    return j[key].get<int64_t>();
  };
  auto opt_num = [&](const char* key, double dflt) {
    if (!present(key)) return dflt;
    if (!j[key].is_number()) wrong(key, "a number");
    return j[key].get<double>();
  };
  c.num_key_value_heads = opt_int("num_key_value_heads", c.num_attention_heads);  // LLaMA-1 configs omit it
  c.max_position_embeddings = opt_int("max_position_embeddings", 2048);
  c.rms_norm_eps = opt_num("rms_norm_eps", 1e-6);
  c.rope_theta = opt_num("rope_theta", 10000.0);
  c.tie_word_embeddings = false;
  if (present("tie_word_embeddings")) {
    if (!j["tie_word_embeddings"].is_boolean()) wrong("tie_word_embeddings", "true or false");
    c.tie_word_embeddings = j["tie_word_embeddings"].get<bool>();
  }
  if (j.contains("hidden_act") && j["hidden_act"] != "silu")
    fail_input(where + ": hidden_act must be 'silu' for LLaMA, got " + j["hidden_act"].dump());
  c.validate();
  return c;
}

ModelConfig ModelConfig::preset(const std::string& name) {
  ModelConfig c;
  auto set = [&](int64_t h, int64_t f, int64_t l, int64_t heads, int64_t kv, int64_t v, int64_t pos, double eps,
                 double theta) {
    c.hidden_size = h, c.intermediate_size = f, c.num_hidden_layers = l, c.num_attention_heads = heads;
    c.num_key_value_heads = kv, c.vocab_size = v, c.max_position_embeddings = pos, c.rms_norm_eps = eps;
    c.rope_theta = theta;
  };
  if (name == "tiny") set(64, 176, 2, 4, 2, 512, 256, 1e-5, 10000.0);
  else if (name == "bench") set(512, 1408, 8, 8, 4, 32000, 2048, 1e-5, 10000.0);
  else if (name == "bench-1b") set(2048, 5632, 16, 16, 16, 32000, 2048, 1e-5, 10000.0);  // the GPU benchmark
  else if (name == "llama-7b") set(4096, 11008, 32, 32, 32, 32000, 2048, 1e-6, 10000.0);
  else if (name == "llama2-7b") set(4096, 11008, 32, 32, 32, 32000, 4096, 1e-5, 10000.0);
  else if (name == "llama-13b") set(5120, 13824, 40, 40, 40, 32000, 2048, 1e-6, 10000.0);
  else if (name == "llama2-13b") set(5120, 13824, 40, 40, 40, 32000, 4096, 1e-5, 10000.0);
  else if (name == "llama3-8b") set(4096, 14336, 32, 32, 8, 128256, 8192, 1e-5, 500000.0);
  else fail_input("unknown model preset '" + name + "' (known: " + preset_names() + ")");
  return c;
}

const char* ModelConfig::preset_names() { return "tiny, bench, bench-1b, llama-7b, llama2-7b, llama-13b, llama2-13b, llama3-8b"; }

}  // namespace polyllama
