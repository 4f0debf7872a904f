#include "polyllama/ckpt/llama_hf.hpp"

#include <filesystem>
#include <list>
#include <optional>
#include <regex>
#include <set>

#include <nlohmann/json.hpp>

#include "polyllama/core/atomic_file.hpp"
#include "polyllama/core/log.hpp"
#include "polyllama/model/config.hpp"
#include "polyllama/model/llama_sharding.hpp"
#include "polyllama/tokenizer/hf_tokenizer_json.hpp"
#include "polyllama/tokenizer/sp_model.hpp"
#include "polyllama/tokenizer/tokenizer.hpp"

namespace fs = std::filesystem;

namespace polyllama {

const char* short_dtype_name(StDType t) { return t == StDType::F32 ? "f32" : t == StDType::BF16 ? "bf16" : "f16"; }

bool parse_hf_dtype(const std::string& s, StDType* out) {
  if (s == "f32" || s == "fp32" || s == "float32") *out = StDType::F32;
  else if (s == "bf16" || s == "bfloat16") *out = StDType::BF16;
  else if (s == "f16" || s == "fp16" || s == "float16") *out = StDType::F16;
  else return false;
  return true;
}

namespace {

using json = nlohmann::json;

const char* torch_dtype_name(StDType t) {
  return t == StDType::F32 ? "float32" : t == StDType::BF16 ? "bfloat16" : "float16";
}
// Refuses config.json features that polyllama's LLaMA does not compute, so that a converted model never
// silently computes something else than the original.
void check_llama_config(const json& j, const std::string& where) {
  if (j.contains("model_type") && j["model_type"] != "llama")
    fail_input(where + ": model_type " + j["model_type"].dump() + " is not \"llama\"; polyllama converts "
               "LlamaForCausalLM models only");
  if (j.contains("architectures") && j["architectures"].is_array()) {
    bool llama = false;
    for (const json& a : j["architectures"]) llama = llama || a == "LlamaForCausalLM";
    if (!llama)
      fail_input(where + ": architectures " + j["architectures"].dump() + " does not name LlamaForCausalLM");
  }
  if (j.contains("rope_scaling") && !j["rope_scaling"].is_null())
    fail_input(where + ": rope_scaling " + j["rope_scaling"].dump() + " is not supported (polyllama implements "
               "plain rotary embeddings, rope_theta only)");
  for (const char* key : {"attention_bias", "mlp_bias"})
    if (j.contains(key) && j[key] != false)
      fail_input(where + ": " + key + " " + j[key].dump() + " is not supported (polyllama's LLaMA has no biases)");
  if (j.contains("head_dim") && !j["head_dim"].is_null()) {
    const int64_t hidden = j.value("hidden_size", int64_t{0}), heads = j.value("num_attention_heads", int64_t{1});
    if (!j["head_dim"].is_number_integer() || heads <= 0 || j["head_dim"].get<int64_t>() * heads != hidden)
      fail_input(where + ": head_dim " + j["head_dim"].dump() + " differs from hidden_size / num_attention_heads, "
                 "which polyllama requires");
  }
}

// Parameter names in the order of LlamaForCausalLM.state_dict(): the order shards are filled in.
std::vector<std::string> hf_order(const ModelConfig& cfg) {
  std::vector<std::string> out = {"model.embed_tokens.weight"};
  for (int64_t l = 0; l < cfg.num_hidden_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    for (const char* s : {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                          "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj", "input_layernorm",
                          "post_attention_layernorm"})
      out.push_back(p + s + ".weight");
  }
  out.push_back("model.norm.weight");
  if (!cfg.tie_word_embeddings) out.push_back("lm_head.weight");
  return out;
}

// Rotary inverse frequencies that old transformers versions saved as buffers; derived from rope_theta.
bool is_rotary_buffer(const std::string& name) {
  static const std::regex re(R"(model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq)");
  return std::regex_match(name, re);
}

// What transformers (LlamaConfig), vLLM and llama.cpp's convert_hf_to_gguf.py read from config.json, with
// LLaMA-2's values for the fields polyllama has no setting for.
json export_config(const ModelConfig& cfg, const Tokenizer& tok, StDType dtype) {
  json c = cfg.to_hf_json();
  c["torch_dtype"] = torch_dtype_name(dtype);
  c["head_dim"] = cfg.head_dim();
  c["initializer_range"] = 0.02;
  c["pretraining_tp"] = 1;
  c["rope_scaling"] = nullptr;
  c["attention_bias"] = false;
  c["attention_dropout"] = 0.0;
  c["mlp_bias"] = false;
  c["use_cache"] = true;
  c["bos_token_id"] = tok.bos_id() >= 0 ? json(tok.bos_id()) : json(nullptr);
  c["eos_token_id"] = tok.eos_id() >= 0 ? json(tok.eos_id()) : json(nullptr);
  return c;
}

json generation_config(const Tokenizer& tok) {
  json g = json::object();
  if (tok.bos_id() >= 0) g["bos_token_id"] = tok.bos_id();
  if (tok.eos_id() >= 0) g["eos_token_id"] = tok.eos_id();
  return g;
}

// LLaMA's special tokens around a sequence: BOS before, no EOS (tokenizer_config.json and tokenizer.json agree).
constexpr HfTokenizerJsonOptions kLlamaBosEos{/*add_bos_token=*/true, /*add_eos_token=*/false};

// LlamaTokenizer over tokenizer.model (transformers builds the fast tokenizer from it). legacy = true keeps
// SentencePiece's own handling of the leading space, which is exactly how polyllama tokenizes.
json tokenizer_config(const Tokenizer& tok, const ModelConfig& cfg) {
  // An unreadable .model leaves the list empty and LLaMA's names stand in (SentencePiece has loaded it already,
  // so this does not happen in practice).
  std::optional<SpModel> sp = SpModel::try_parse(tok.model_bytes(), nullptr);
  const std::vector<SpPiece> pieces = sp ? std::move(sp->pieces) : std::vector<SpPiece>{};
  auto piece = [&](int64_t id, const char* fallback) -> json {
    if (id < 0) return nullptr;
    return id < static_cast<int64_t>(pieces.size()) ? pieces[static_cast<size_t>(id)].piece : fallback;
  };
  json unk = "<unk>";
  for (const SpPiece& p : pieces)
    if (p.type == PieceType::unknown) {
      unk = p.piece;
      break;
    }
  return {{"tokenizer_class", "LlamaTokenizer"},
          {"add_bos_token", kLlamaBosEos.add_bos_token},
          {"add_eos_token", kLlamaBosEos.add_eos_token},
          {"bos_token", piece(tok.bos_id(), "<s>")},
          {"eos_token", piece(tok.eos_id(), "</s>")},
          {"unk_token", unk},
          {"pad_token", nullptr},
          {"legacy", true},
          {"clean_up_tokenization_spaces", false},
          {"sp_model_kwargs", json::object()},
          {"model_max_length", cfg.max_position_embeddings}};
}

// Every parameter of the model in host memory (f32), by name, with its whole-tensor ShardSpec: what a
// conversion reads into and writes from.
struct HostParams {
  explicit HostParams(const ModelConfig& cfg) {
    for (const ParamSpec& s : llama_param_specs(cfg)) {
      storage.emplace_back(static_cast<size_t>(ShardSpec::full(s.full_dims).local_numel()));
      Tensor t(storage.back().data(), DType::f32, {s.full_dims[0]});
      if (s.full_dims.size() == 2) t = Tensor(storage.back().data(), DType::f32, {s.full_dims[0], s.full_dims[1]});
      tensors.push_back({s.name, t, ShardSpec::full(s.full_dims)});
    }
  }
  const Tensor& get(const std::string& name) const {
    for (const NamedTensor& n : tensors)
      if (n.name == name) return n.tensor;
    fail_input("no parameter named '" + name + "' in this model");
  }
  std::list<std::vector<float>> storage;  // a list: the tensors point into it
  std::vector<NamedTensor> tensors;
};

}  // namespace

HfImportResult import_hf_llama(const std::string& src, const std::string& run_dir) {
  const HfFolderReader hf(src);
  check_llama_config(hf.config(), hf.config_path());
  const ModelConfig cfg = ModelConfig::from_hf_json(hf.config(), hf.config_path());
  const std::string tok_path = src + "/tokenizer.model";
  const Tokenizer tok = Tokenizer::from_bytes(hf.tokenizer_bytes(), tok_path);
  if (cfg.vocab_size < tok.vocab_size())
    fail_input(hf.config_path() + ": vocab_size " + std::to_string(cfg.vocab_size) + " is smaller than the " +
               std::to_string(tok.vocab_size()) + " pieces of " + tok_path);
  for (const auto& [key, id] :
       {std::pair<const char*, int32_t>{"bos_token_id", tok.bos_id()}, {"eos_token_id", tok.eos_id()}})
    if (hf.config().contains(key) && hf.config()[key].is_number_integer() && hf.config()[key] != id)
      log_warn(hf.config_path() + ": " + key + " " + hf.config()[key].dump() + " differs from " + tok_path + "'s " +
               std::to_string(id) + "; the checkpoint keeps the tokenizer's");

  const std::string ckpt_root = run_dir + "/ckpt";
  std::error_code ec;
  if (!latest_checkpoint(ckpt_root).empty() || fs::exists(fs::path(ckpt_root) / "step_00000000", ec))
    fail_input(run_dir + " already holds a checkpoint; convert into a new run directory");

  HostParams params(cfg);
  std::set<std::string> expected;
  for (const NamedTensor& p : params.tensors) expected.insert(p.name);
  // Every tensor in the folder must be a parameter, except rotary buffers and a tied head (checked below).
  std::vector<std::string> skipped;
  bool tied_head_stored = false;
  for (const std::string& name : hf.tensor_names()) {
    if (expected.count(name)) continue;
    if (is_rotary_buffer(name)) {
      skipped.push_back(name);
    } else if (name == "lm_head.weight" && cfg.tie_word_embeddings) {
      tied_head_stored = true;
    } else {
      fail_input(hf.file_of(name) + ": unexpected tensor '" + name + "' (not part of a LLaMA with the shapes in " +
                 hf.config_path() + ")");
    }
  }
  const std::vector<std::string> files = hf.weight_files();
  const std::string weights = files.size() == 1 ? files[0] : src + "/" + kHfWeightsIndex;
  for (const std::string& name : expected)
    if (!hf.find(name))
      fail_input(weights + ": tensor '" + name + "' is missing from the weights" +
                 (name == "lm_head.weight" ? " (config.json says tie_word_embeddings false)" : ""));
  for (const NamedTensor& p : params.tensors) hf.read(p.name, p.tensor);
  if (tied_head_stored) {  // some tied checkpoints store the head anyway; it must be the embedding
    const Tensor& emb = params.get("model.embed_tokens.weight");
    std::vector<float> head(static_cast<size_t>(emb.numel()));
    hf.read("lm_head.weight", Tensor(head.data(), DType::f32, {emb.dim(0), emb.dim(1)}));
    if (!std::equal(head.begin(), head.end(), emb.ptr<float>()))
      fail_input(hf.file_of("lm_head.weight") + ": lm_head.weight differs from model.embed_tokens.weight, but " +
                 hf.config_path() + " says tie_word_embeddings true");
    skipped.push_back("lm_head.weight");
  }

  // The checkpoint's config: polyllama's fields, the tokenizer's special ids, and the source dtype, which
  // `convert --to hf` uses as its default.
  json stored = cfg.to_hf_json();
  stored["bos_token_id"] = tok.bos_id() >= 0 ? json(tok.bos_id()) : json(nullptr);
  stored["eos_token_id"] = tok.eos_id() >= 0 ? json(tok.eos_id()) : json(nullptr);
  // The parameters' stored dtype when they share one (rotary buffers are fp32 in bf16 checkpoints), else
  // config.json's torch_dtype.
  StDType src_dtype = hf.find(*expected.begin())->dtype;
  bool uniform = true;
  for (const std::string& name : expected) uniform = uniform && hf.find(name)->dtype == src_dtype;
  if (uniform || (hf.config().contains("torch_dtype") && hf.config()["torch_dtype"].is_string() &&
                  parse_hf_dtype(hf.config()["torch_dtype"].get<std::string>(), &src_dtype)))
    stored["torch_dtype"] = torch_dtype_name(src_dtype);
  CheckpointMeta meta;
  meta.config_json = stored.dump();
  meta.tokenizer_bytes = tok.model_bytes();
  HfImportResult r;
  r.checkpoint = save_checkpoint(ckpt_root, 0, params.tensors, {}, meta);
  r.tensors = params.tensors.size();
  r.params = cfg.total_params();
  r.source_dtype = stored.value("torch_dtype", "mixed");
  r.skipped = skipped;
  for (const std::string& s : skipped)
    log_info("skipped " + s + (is_rotary_buffer(s) ? " (rotary buffer)" : " (tied to the embedding)"));
  log_info(fmt("converted %zu tensors (%.2fM parameters, %s) from %s -> %s", r.tensors,
               static_cast<double>(cfg.total_params()) / 1e6,
               stored.contains("torch_dtype") ? stored["torch_dtype"].get<std::string>().c_str() : "mixed dtypes",
               src.c_str(), r.checkpoint.c_str()));
  return r;
}

HfExportResult export_hf_llama(const std::string& src, const std::string& out_dir, const HfExportOptions& o) {
  const std::string step = resolve_step_dir(src), h5 = step + "/model.h5";
  const CheckpointMeta meta = read_meta(h5);
  json stored;
  try {
    stored = json::parse(meta.config_json);
  } catch (const json::exception& e) {
    fail_input(h5 + ": the stored config is not valid JSON: " + e.what());
  }
  const ModelConfig cfg = ModelConfig::from_hf_json(stored, h5);
  const Tokenizer tok = Tokenizer::from_bytes(meta.tokenizer_bytes, h5);

  // --dtype, else the dtype the model was imported in, else bf16 (LLaMA's release dtype, half of fp32's size).
  HfWriteOptions wo;
  std::string dtype_from = "default";
  if (o.dtype_given) {
    wo.dtype = o.dtype;
    dtype_from = "--dtype";
  } else if (stored.contains("torch_dtype") && stored["torch_dtype"].is_string() &&
             parse_hf_dtype(stored["torch_dtype"].get<std::string>(), &wo.dtype)) {
    dtype_from = "the imported model's dtype";
  }
  wo.max_shard_bytes = o.max_shard_bytes;
  wo.overwrite = o.overwrite;

  HostParams params(cfg);
  read_tensor_file(h5, params.tensors);
  std::vector<NamedTensor> tensors;
  for (const std::string& name : hf_order(cfg)) tensors.push_back({name, params.get(name), {}});
  PL_CHECK(tensors.size() == params.tensors.size(), "hf_order does not cover every parameter");

  // tokenizer.json, which transformers, vLLM and TGI read before tokenizer.model (no sentencepiece or protobuf
  // needed), with the same add_bos/add_eos as tokenizer_config.json. Built before anything is written.
  std::string no_tokenizer_json;
  const std::optional<HfTokenizerJson> tokenizer_json =
      hf_tokenizer_json(tok.model_bytes(), kLlamaBosEos, &no_tokenizer_json);

  HfWriteResult r = write_hf_folder(out_dir, tensors,
                                          {{"config.json", export_config(cfg, tok, wo.dtype)},
                                           {"generation_config.json", generation_config(tok)},
                                           {"tokenizer_config.json", tokenizer_config(tok, cfg)}},
                                          tok.model_bytes(), wo);
  const std::string tokenizer_json_path = out_dir + "/tokenizer.json";
  if (tokenizer_json) {
    write_file_atomically(tokenizer_json_path, tokenizer_json->text);
    if (!tokenizer_json->caveat.empty()) log_warn("tokenizer.json: " + tokenizer_json->caveat);
  } else {
    // A tokenizer.json of an earlier export would take precedence over this tokenizer.model: remove it.
    std::error_code ec;
    const bool removed = fs::remove(tokenizer_json_path, ec);
    log_warn("no tokenizer.json written: the tokenizers library cannot reproduce this tokenizer exactly (" +
             no_tokenizer_json + "); transformers will build its fast tokenizer from tokenizer.model, which needs "
             "sentencepiece and protobuf" + (removed ? "; removed the tokenizer.json already in " + out_dir : ""));
  }
  log_info(fmt("exported %s (%.2fM parameters) as %s (%s) -> %s: %zu weight file%s, %.1f MB", step.c_str(),
               static_cast<double>(cfg.total_params()) / 1e6, short_dtype_name(wo.dtype), dtype_from.c_str(),
               out_dir.c_str(), r.weight_files.size(), r.weight_files.size() == 1 ? "" : "s",
               static_cast<double>(r.total_size) / 1e6));
  return {step, wo.dtype, dtype_from, r, cfg.total_params()};
}

}  // namespace polyllama
