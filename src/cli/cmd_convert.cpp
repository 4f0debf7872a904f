// `polyllama convert`: Hugging Face LLaMA folders <-> polyllama checkpoints (DESIGN.md sections 1, 2 and 4).
// The files are ckpt/hf_folder's business; what makes them a LLaMA (which tensors, which config fields, what
// transformers, vLLM and llama.cpp's converter read from the small JSON files) is decided here.
#include <mpi.h>

#include <filesystem>
#include <regex>
#include <set>

#include <nlohmann/json.hpp>

#include "polyllama/backend/cpu/cpu_backend.hpp"
#include "polyllama/ckpt/checkpoint.hpp"
#include "polyllama/ckpt/hf_folder.hpp"
#include "polyllama/core/log.hpp"
#include "polyllama/model/llama.hpp"
#include "polyllama/tokenizer/tokenizer.hpp"
#include "polyllama/train/trainer.hpp"
#include "verbs.hpp"

namespace fs = std::filesystem;

namespace polyllama::cli {

namespace {

using json = nlohmann::json;

const char* torch_dtype_name(StDType t) {
  return t == StDType::F32 ? "float32" : t == StDType::BF16 ? "bfloat16" : "float16";
}
const char* short_dtype_name(StDType t) { return t == StDType::F32 ? "f32" : t == StDType::BF16 ? "bf16" : "f16"; }

// --dtype values and config.json's torch_dtype names.
bool parse_dtype(const std::string& s, StDType* out) {
  if (s == "f32" || s == "fp32" || s == "float32") *out = StDType::F32;
  else if (s == "bf16" || s == "bfloat16") *out = StDType::BF16;
  else if (s == "f16" || s == "fp16" || s == "float16") *out = StDType::F16;
  else return false;
  return true;
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

// The pieces of a SentencePiece .model (ModelProto field 1, each a SentencePiece with piece = 1, type = 3),
// read from the protobuf wire format by hand: nothing here may link libprotobuf (see CMakeLists.txt). Returns
// what it could read; an unreadable file gives an empty list and the callers fall back to LLaMA's names.
std::vector<std::pair<std::string, int>> sp_pieces(const std::string& b) {
  auto varint = [&](size_t& i, size_t end, uint64_t& v) {
    v = 0;
    for (int shift = 0; shift < 64 && i < end; shift += 7) {
      const auto c = static_cast<unsigned char>(b[i++]);
      v |= static_cast<uint64_t>(c & 0x7f) << shift;
      if (!(c & 0x80)) return true;
    }
    return false;
  };
  // Calls f(field, wire type, value or length, start of payload) for each field in [i, end).
  auto fields = [&](size_t i, size_t end, auto&& f) {
    while (i < end) {
      uint64_t key = 0, v = 0;
      if (!varint(i, end, key)) return false;
      const uint64_t wt = key & 7;
      if (wt == 0) {
        if (!varint(i, end, v)) return false;
        f(key >> 3, wt, v, i);
      } else if (wt == 2) {
        if (!varint(i, end, v) || v > end - i) return false;
        f(key >> 3, wt, v, i);
        i += v;
      } else if (wt == 5 || wt == 1) {
        i += wt == 5 ? 4 : 8;
      } else {
        return false;
      }
    }
    return true;
  };
  std::vector<std::pair<std::string, int>> out;
  const bool ok = fields(0, b.size(), [&](uint64_t field, uint64_t wt, uint64_t len, size_t start) {
    if (field != 1 || wt != 2) return;
    std::pair<std::string, int> piece{"", 1};  // type NORMAL unless stated
    fields(start, start + len, [&](uint64_t f, uint64_t w, uint64_t v, size_t s) {
      if (f == 1 && w == 2) piece.first = b.substr(s, v);
      if (f == 3 && w == 0) piece.second = static_cast<int>(v);
    });
    out.push_back(std::move(piece));
  });
  if (!ok) out.clear();
  return out;
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

// LlamaTokenizer over tokenizer.model (transformers builds the fast tokenizer from it). legacy = true keeps
// SentencePiece's own handling of the leading space, which is exactly how polyllama tokenizes.
json tokenizer_config(const Tokenizer& tok, const ModelConfig& cfg) {
  const auto pieces = sp_pieces(tok.model_bytes());
  auto piece = [&](int64_t id, const char* fallback) -> json {
    if (id < 0) return nullptr;
    return id < static_cast<int64_t>(pieces.size()) ? pieces[static_cast<size_t>(id)].first : fallback;
  };
  json unk = "<unk>";
  for (const auto& p : pieces)
    if (p.second == 2) {  // SentencePiece.Type UNKNOWN
      unk = p.first;
      break;
    }
  return {{"tokenizer_class", "LlamaTokenizer"},
          {"add_bos_token", true},
          {"add_eos_token", false},
          {"bos_token", piece(tok.bos_id(), "<s>")},
          {"eos_token", piece(tok.eos_id(), "</s>")},
          {"unk_token", unk},
          {"pad_token", nullptr},
          {"legacy", true},
          {"clean_up_tokenization_spaces", false},
          {"sp_model_kwargs", json::object()},
          {"model_max_length", cfg.max_position_embeddings}};
}


struct Opts {
  std::vector<std::string> from, to;
  std::string dtype, max_shard_size = "5GB";
  bool overwrite = false, json = false;
  CLI::Option *dtype_opt = nullptr, *shard_opt = nullptr;
};

int hf_to_ckpt(const Opts& o, const std::string& src, const std::string& run_dir) {
  if (o.dtype_opt->count() || o.shard_opt->count())
    fail_input("--dtype and --max-shard-size apply to --to hf; checkpoints hold fp32");
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

  CpuBackend be;
  LlamaModel model(cfg, be, DType::f32);
  std::set<std::string> expected;
  for (const ParamInfo& p : model.params()) expected.insert(p.name);
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
  for (size_t i = 0; i < model.params().size(); ++i) hf.read(model.params()[i].name, model.param(i));
  if (tied_head_stored) {  // some tied checkpoints store the head anyway; it must be the embedding
    const Tensor emb = model.param(model.param_index("model.embed_tokens.weight"));
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
                  parse_dtype(hf.config()["torch_dtype"].get<std::string>(), &src_dtype)))
    stored["torch_dtype"] = torch_dtype_name(src_dtype);
  CheckpointMeta meta;
  meta.config_json = stored.dump();
  meta.tokenizer_bytes = tok.model_bytes();
  const std::string dir = save_checkpoint(ckpt_root, 0, model_tensors(model), {}, meta);
  for (const std::string& s : skipped)
    log_info("skipped " + s + (is_rotary_buffer(s) ? " (rotary buffer)" : " (tied to the embedding)"));
  log_info(fmt("converted %zu tensors (%.2fM parameters, %s) from %s -> %s", model.params().size(),
               static_cast<double>(cfg.total_params()) / 1e6,
               stored.contains("torch_dtype") ? stored["torch_dtype"].get<std::string>().c_str() : "mixed dtypes",
               src.c_str(), dir.c_str()));
  print_json_summary(o.json, json{{"checkpoint", dir},
                                  {"tensors", model.params().size()},
                                  {"params", cfg.total_params()},
                                  {"source_dtype", stored.value("torch_dtype", "mixed")},
                                  {"skipped", skipped}}.dump());
  return 0;
}

int ckpt_to_hf(const Opts& o, const std::string& src, const std::string& out_dir) {
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
  if (o.dtype_opt->count()) {
    if (!parse_dtype(o.dtype, &wo.dtype)) fail_input("--dtype wants f32, bf16 or f16, got '" + o.dtype + "'");
    dtype_from = "--dtype";
  } else if (stored.contains("torch_dtype") && stored["torch_dtype"].is_string() &&
             parse_dtype(stored["torch_dtype"].get<std::string>(), &wo.dtype)) {
    dtype_from = "the imported model's dtype";
  }
  wo.max_shard_bytes = parse_byte_size(o.max_shard_size, "--max-shard-size");
  wo.overwrite = o.overwrite;

  CpuBackend be;
  LlamaModel model(cfg, be, DType::f32);
  read_tensor_file(h5, model_tensors(model));
  std::vector<NamedTensor> tensors;
  for (const std::string& name : hf_order(cfg)) {
    NamedTensor nt;
    nt.name = name;
    nt.tensor = model.param(model.param_index(name));
    tensors.push_back(nt);
  }
  PL_CHECK(tensors.size() == model.params().size(), "hf_order does not cover every parameter");

  const HfWriteResult r = write_hf_folder(out_dir, tensors,
                                          {{"config.json", export_config(cfg, tok, wo.dtype)},
                                           {"generation_config.json", generation_config(tok)},
                                           {"tokenizer_config.json", tokenizer_config(tok, cfg)}},
                                          tok.model_bytes(), wo);
  log_info(fmt("exported %s (%.2fM parameters) as %s (%s) -> %s: %zu weight file%s, %.1f MB", step.c_str(),
               static_cast<double>(cfg.total_params()) / 1e6, short_dtype_name(wo.dtype), dtype_from.c_str(),
               out_dir.c_str(), r.weight_files.size(), r.weight_files.size() == 1 ? "" : "s",
               static_cast<double>(r.total_size) / 1e6));
  print_json_summary(o.json, json{{"folder", out_dir},
                                  {"checkpoint", step},
                                  {"dtype", short_dtype_name(wo.dtype)},
                                  {"files", r.weight_files},
                                  {"total_size", r.total_size},
                                  {"params", cfg.total_params()}}.dump());
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
