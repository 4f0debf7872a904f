// Hugging Face folders (src/ckpt/hf_folder.cpp) and `polyllama convert` (src/cli/cmd_convert.cpp):
//  * the committed fixture tests/fixtures/hf_tiny (bf16 weights in a safetensors file written by hand in Python by
//    tests/reference/hf_export_ref.py) loaded into LlamaModel reproduces the logits of the PyTorch reference of
//    Hugging Face's LLaMA (tests/reference/llama_torch_ref.py, rotate-half RoPE, GQA) on the same weights;
//  * the checkpoint `polyllama convert --from hf ... --to ckpt ...` writes gives those logits bit for bit;
//  * write_hf_folder / HfFolderReader: exact round trips, huggingface_hub's sharding, the index, overwriting, and
//    the folder-level errors (a hostile index, missing files).
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <nlohmann/json.hpp>
#include <random>

#include "polyllama/backend/cpu/cpu_backend.hpp"
#include "polyllama/ckpt/hf_folder.hpp"
#include "polyllama/model/llama.hpp"
#include "polyllama/train/trainer.hpp"
#include "test_support.hpp"

using namespace polyllama;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

using test::slurp;
using test::spit;

struct HfReference {
  std::string dir;
  ModelConfig cfg;
  int64_t batch = 0, seq = 0;
  std::vector<int32_t> inputs;  // (batch, seq)
  std::vector<double> logits;   // (batch * seq, vocab)
};

const HfReference& reference() {
  static const HfReference r = [] {
    HfReference h;
    h.dir = test::fixture("hf_tiny");
    const json meta = json::parse(slurp(h.dir + "/reference.json"));
    h.cfg = ModelConfig::from_hf_json(json::parse(slurp(h.dir + "/config.json")), h.dir + "/config.json");
    h.batch = meta.at("batch").get<int64_t>();
    h.seq = meta.at("seq").get<int64_t>();
    for (const auto& row : meta.at("input_ids"))
      for (const auto& id : row) h.inputs.push_back(id.get<int32_t>());
    const std::string raw = slurp(h.dir + "/" + meta.at("logits").at("file").get<std::string>());
    h.logits.resize(raw.size() / 8);
    std::memcpy(h.logits.data(), raw.data(), h.logits.size() * 8);
    return h;
  }();
  return r;
}

std::vector<double> logits_of(LlamaModel& m, const HfReference& r) {
  m.allocate_activations(r.batch, r.seq);
  const int64_t N = r.batch * r.seq, V = m.config().vocab_size;
  std::vector<double> out(static_cast<size_t>(N * V));
  if (m.dtype() == DType::f64) {
    m.forward_logits(r.inputs.data(), Tensor(out.data(), DType::f64, {N, V}));
  } else {
    std::vector<float> f(out.size());
    m.forward_logits(r.inputs.data(), Tensor(f.data(), DType::f32, {N, V}));
    std::copy(f.begin(), f.end(), out.begin());
  }
  return out;
}

// Tolerances (max |got - ref| / max |ref|). The fixture's weights are bf16, widened exactly to fp32 (and fp64)
// here and to float64 in the reference, so the weights are identical on both sides and what remains is
// arithmetic: in fp32 the model rounds every intermediate (unit roundoff 6e-8) through 2 layers of norms,
// softmaxes and 32-88-wide dot products, which gives about 1e-6 relative to the largest logit; 1e-5 leaves a
// margin of ~10 for other BLAS builds while a wrong conversion (a transposed or permuted matrix, a dropped
// scale, the wrong rope_theta or rms_norm_eps) costs 1e-3 or more. In fp64 only the order of operations
// differs (1e-16 per op); 1e-10 as in tests/model/test_torch_reference.cpp.
double tolerance(DType dt) { return dt == DType::f32 ? 1e-5 : 1e-10; }

void check_fixture_logits(DType dt) {
  const HfReference& r = reference();
  ASSERT_FALSE(r.cfg.tie_word_embeddings);
  ASSERT_LT(r.cfg.num_key_value_heads, r.cfg.num_attention_heads);
  const HfFolderReader hf(r.dir);
  StDType stored{};
  ASSERT_TRUE(hf.common_dtype(&stored));
  EXPECT_EQ(stored, StDType::BF16);
  CpuBackend be;
  LlamaModel model(r.cfg, be, dt);
  ASSERT_EQ(hf.tensor_names().size(), model.params().size());
  for (size_t i = 0; i < model.params().size(); ++i) hf.read(model.params()[i].name, model.param(i));
  const std::vector<double> got = logits_of(model, r);
  ASSERT_EQ(got.size(), r.logits.size());
  const double err = test::max_rel_err(got.data(), r.logits.data(), static_cast<int64_t>(got.size()));
  std::printf("[ hf_tiny ] %s logits vs the PyTorch reference: max relative error %.3e (tolerance %.0e)\n",
              dtype_name(dt), err, tolerance(dt));
  EXPECT_LE(err, tolerance(dt));
}

}  // namespace

TEST(HfConvert, FixtureLogitsMatchTorchReferenceF32) { check_fixture_logits(DType::f32); }
TEST(HfConvert, FixtureLogitsMatchTorchReferenceF64) { check_fixture_logits(DType::f64); }

TEST(HfConvert, CliCheckpointReproducesTheFixtureLogits) {
  const HfReference& r = reference();
  const std::string tmp = test::temp_dir("hf_cli"), run = tmp + "/run";
  const std::string cmd = "'" + test::polyllama_binary() + "' convert --from hf '" + r.dir + "' --to ckpt '" + run +
                          "' > '" + tmp + "/log' 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << slurp(tmp + "/log");
  const std::string h5 = run + "/ckpt/step_00000000/model.h5";
  const CheckpointMeta meta = read_meta(h5);
  const json stored = json::parse(meta.config_json);
  EXPECT_EQ(stored.at("torch_dtype"), "bfloat16");
  EXPECT_EQ(stored.at("rope_theta").get<double>(), 500000.0);
  EXPECT_EQ(meta.tokenizer_bytes, slurp(r.dir + "/tokenizer.model"));
  EXPECT_TRUE(meta.trainer_json.empty());
  const ModelConfig cfg = ModelConfig::from_hf_json(stored, h5);

  CpuBackend be;
  LlamaModel from_ckpt(cfg, be, DType::f32), direct(r.cfg, be, DType::f32);
  read_tensor_file(h5, model_tensors(from_ckpt));
  const HfFolderReader hf(r.dir);
  for (size_t i = 0; i < direct.params().size(); ++i) hf.read(direct.params()[i].name, direct.param(i));
  const std::vector<double> a = logits_of(from_ckpt, r), b = logits_of(direct, r);
  EXPECT_EQ(a, b) << "the converted checkpoint computes other logits than the folder loaded directly";
  const double err = test::max_rel_err(a.data(), r.logits.data(), static_cast<int64_t>(a.size()));
  std::printf("[ hf_tiny ] converted checkpoint logits vs the PyTorch reference: %.3e\n", err);
  EXPECT_LE(err, tolerance(DType::f32));
}

// ---------------------------------------------------------------------------------------------------------
// folders without a model

namespace {

struct Owned {
  std::vector<std::vector<float>> data;
  std::vector<NamedTensor> tensors;
  void add(const std::string& name, std::initializer_list<int64_t> dims, uint64_t seed) {
    int64_t n = 1;
    for (int64_t d : dims) n *= d;
    std::mt19937 rng(static_cast<unsigned>(seed));
    std::normal_distribution<float> nd(0.f, 1.f);
    data.emplace_back(static_cast<size_t>(n));
    for (float& v : data.back()) v = nd(rng);
    NamedTensor nt;
    nt.name = name;
    nt.tensor = Tensor(data.back().data(), DType::f32, dims);
    tensors.push_back(nt);
  }
};

void expect_read_back(const std::string& dir, const Owned& o, StDType dtype) {
  const HfFolderReader hf(dir);
  ASSERT_EQ(hf.tensor_names().size(), o.tensors.size());
  for (const NamedTensor& nt : o.tensors) {
    std::vector<float> got(static_cast<size_t>(nt.tensor.numel()));
    Tensor t(got.data(), DType::f32, {1});
    t.ndim = nt.tensor.ndim;
    t.shape = nt.tensor.shape;
    hf.read(nt.name, t);
    for (size_t i = 0; i < got.size(); ++i) {
      const float want = nt.tensor.ptr<float>()[i];
      const float rounded = dtype == StDType::F32    ? want
                            : dtype == StDType::BF16 ? bf16_to_f32(f32_to_bf16(want))
                                                     : f16_to_f32(f32_to_f16(want));
      ASSERT_EQ(got[i], rounded) << nt.name << "[" << i << "]";
    }
  }
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), kExitBadInput) << e.what();
    return e.what();
  }
  return "";
}

}  // namespace

TEST(HfFolder, ShardsLikeHuggingFaceAndReadsBackExactly) {
  const std::string dir = test::temp_dir("hf_shards");
  Owned o;
  o.add("model.embed_tokens.weight", {40, 16}, 1);  // 1280 bytes in bf16
  o.add("model.layers.0.weight", {16, 16}, 2);      // 512
  o.add("model.layers.1.weight", {16, 16}, 3);      // 512
  o.add("model.norm.weight", {16}, 4);              // 32
  o.add("lm_head.weight", {40, 16}, 5);             // 1280
  const json cfg = {{"model_type", "llama"}, {"rope_theta", 500000.0}};
  HfWriteOptions opts;
  opts.dtype = StDType::BF16;
  opts.max_shard_bytes = 1040;
  const HfWriteResult r = write_hf_folder(dir, o.tensors, {{"config.json", cfg}}, "TOKENIZER", opts);
  // huggingface_hub: the embedding exceeds the limit and gets a shard of its own; 512 + 512 fit; the norm would
  // push that shard past 1040, so the shard closes and the norm starts the next; the head is oversized again and
  // is listed at once, before the norm's still-open shard.
  EXPECT_EQ(r.weight_files,
            (std::vector<std::string>{"model-00001-of-00004.safetensors", "model-00002-of-00004.safetensors",
                                      "model-00003-of-00004.safetensors", "model-00004-of-00004.safetensors"}));
  EXPECT_EQ(r.total_size, 1280u + 512 + 512 + 32 + 1280);
  const json index = json::parse(slurp(dir + "/model.safetensors.index.json"));
  EXPECT_EQ(index.at("metadata").at("total_size"), r.total_size);
  EXPECT_EQ(index.at("weight_map").at("model.embed_tokens.weight"), "model-00001-of-00004.safetensors");
  EXPECT_EQ(index.at("weight_map").at("model.layers.1.weight"), "model-00002-of-00004.safetensors");
  EXPECT_EQ(index.at("weight_map").at("lm_head.weight"), "model-00003-of-00004.safetensors");
  EXPECT_EQ(index.at("weight_map").at("model.norm.weight"), "model-00004-of-00004.safetensors");
  EXPECT_FALSE(fs::exists(dir + "/model.safetensors"));
  EXPECT_EQ(slurp(dir + "/config.json"), cfg.dump(2) + "\n");
  EXPECT_EQ(slurp(dir + "/tokenizer.model"), "TOKENIZER");
  const SafetensorsReader shard(dir + "/model-00002-of-00004.safetensors");
  EXPECT_EQ(shard.metadata().at("format"), "pt");
  expect_read_back(dir, o, StDType::BF16);

  // Writing again needs --overwrite, which removes the old shards and the index.
  opts.dtype = StDType::F32;
  opts.max_shard_bytes = 5'000'000'000;
  const std::string msg = error_of([&] { write_hf_folder(dir, o.tensors, {}, "T", opts); });
  EXPECT_NE(msg.find(dir + " already holds weights"), std::string::npos) << msg;
  opts.overwrite = true;
  const HfWriteResult r2 = write_hf_folder(dir, o.tensors, {}, "T", opts);
  EXPECT_EQ(r2.weight_files, std::vector<std::string>{"model.safetensors"});
  EXPECT_FALSE(fs::exists(dir + "/model.safetensors.index.json"));
  EXPECT_FALSE(fs::exists(dir + "/model-00001-of-00004.safetensors"));
  expect_read_back(dir, o, StDType::F32);

  opts.dtype = StDType::F16;
  write_hf_folder(dir, o.tensors, {}, "T", opts);
  expect_read_back(dir, o, StDType::F16);
}

TEST(HfFolder, RejectsMissingFilesAndHostileIndexes) {
  const std::string dir = test::temp_dir("hf_bad");
  Owned o;
  o.add("a", {4}, 1);
  o.add("b", {4}, 2);
  HfWriteOptions opts;
  opts.dtype = StDType::F32;
  opts.max_shard_bytes = 16;
  write_hf_folder(dir, o.tensors, {}, "T", opts);  // two shards and an index, no config.json

  auto reader_error = [&] { return error_of([&] { HfFolderReader r(dir); }); };
  EXPECT_NE(reader_error().find(dir + "/config.json: not found"), std::string::npos) << reader_error();
  spit(dir + "/config.json", "{\"model_type\": ");
  EXPECT_NE(reader_error().find(dir + "/config.json: not valid JSON"), std::string::npos) << reader_error();
  spit(dir + "/config.json", "{}");
  fs::remove(dir + "/tokenizer.model");
  {
    const HfFolderReader ok(dir);
    EXPECT_EQ(ok.tensor_names(), (std::vector<std::string>{"a", "b"}));
    EXPECT_EQ(ok.file_of("b"), dir + "/model-00002-of-00002.safetensors");
    const std::string missing = error_of([&] { ok.tokenizer_bytes(); });
    EXPECT_NE(missing.find(dir + "/tokenizer.model: not found"), std::string::npos) << missing;
    std::vector<float> v(4);
    const std::string no_tensor = error_of([&] { ok.read("c", Tensor(v.data(), DType::f32, {4})); });
    EXPECT_NE(no_tensor.find("tensor 'c' is missing from"), std::string::npos) << no_tensor;
  }
  const std::string index = dir + "/model.safetensors.index.json";
  const std::string good = slurp(index);
  auto with_index = [&](const json& j) {
    spit(index, j.dump());
    return reader_error();
  };
  const std::string f1 = "model-00001-of-00002.safetensors", f2 = "model-00002-of-00002.safetensors";
  EXPECT_NE(with_index({{"weight_map", {{"a", "../" + f1}, {"b", f2}}}}).find("not a plain file name"),
            std::string::npos);
  EXPECT_NE(with_index({{"weight_map", {{"a", "/etc/passwd"}, {"b", f2}}}}).find("not a plain file name"),
            std::string::npos);
  EXPECT_NE(with_index({{"weight_map", {{"a", f1}, {"b", f2}, {"c", "model-9.safetensors"}}}})
                .find("lists model-9.safetensors, which is missing"),
            std::string::npos);
  EXPECT_NE(with_index({{"weight_map", {{"a", f1}, {"b", f1}}}})
                .find("places tensor 'b' in " + f1 + ", which does not hold it"),
            std::string::npos);
  EXPECT_NE(with_index({{"weight_map", {{"a", f1}, {"b", 7}}}}).find("is not a file name"), std::string::npos);
  EXPECT_NE(with_index({{"metadata", json::object()}}).find("no \"weight_map\" object"), std::string::npos);
  spit(index, good);
  EXPECT_EQ(reader_error(), "");
  // A shard holding a tensor the index puts elsewhere, or does not list at all.
  const std::string shard1 = slurp(dir + "/" + f1);
  write_safetensors(dir + "/" + f1, {{"a", {4}, StDType::F32, o.data[0].data(), StDType::F32},
                                     {"b", {4}, StDType::F32, o.data[1].data(), StDType::F32}});
  EXPECT_NE(reader_error().find(dir + "/" + f1 + " holds tensor 'b', which " + index + " places in " + f2),
            std::string::npos)
      << reader_error();
  EXPECT_NE(with_index({{"weight_map", {{"a", f1}}}}).find("holds tensor 'b', which " + index + " does not list"),
            std::string::npos);
  spit(dir + "/" + f1, shard1);
  spit(index, good);
  EXPECT_EQ(reader_error(), "");

  fs::remove(index);
  EXPECT_NE(reader_error().find("no model.safetensors or model.safetensors.index.json"), std::string::npos);
  spit(dir + "/pytorch_model.bin", "x");
  EXPECT_NE(reader_error().find("only PyTorch .bin weights"), std::string::npos) << reader_error();
}

TEST(HfFolder, ParseByteSize) {
  EXPECT_EQ(parse_byte_size("5GB", "s"), 5'000'000'000u);
  EXPECT_EQ(parse_byte_size("500MB", "s"), 500'000'000u);
  EXPECT_EQ(parse_byte_size("20kb", "s"), 20'000u);
  EXPECT_EQ(parse_byte_size("2GiB", "s"), uint64_t{2} << 30);
  EXPECT_EQ(parse_byte_size("1MiB", "s"), uint64_t{1} << 20);
  EXPECT_EQ(parse_byte_size("4096", "s"), 4096u);
  EXPECT_EQ(parse_byte_size("7B", "s"), 7u);
  for (const char* bad : {"", "GB", "0", "5 GB", "5TB", "-1GB", "1.5GB", "99999999999999999999GB"})
    EXPECT_NE(error_of([&] { parse_byte_size(bad, "--max-shard-size"); }).find("--max-shard-size wants"),
              std::string::npos)
        << bad;
}

TEST(HfConfig, OptionalFieldsOfTheWrongTypeNameTheField) {
  // fuzz_ckpt_attrs found rms_norm_eps given as a string escaping as nlohmann's type_error (no exit code, no
  // field named). Absent or null optional fields take LLaMA's defaults; another type is exit 1 naming it.
  const json base = json::parse(R"({"hidden_size": 64, "intermediate_size": 176, "num_hidden_layers": 2,
                                     "num_attention_heads": 4, "vocab_size": 512})");
  const ModelConfig d = ModelConfig::from_hf_json(base, "config.json");
  EXPECT_EQ(d.num_key_value_heads, 4);
  EXPECT_EQ(d.max_position_embeddings, 2048);
  EXPECT_DOUBLE_EQ(d.rms_norm_eps, 1e-6);
  EXPECT_DOUBLE_EQ(d.rope_theta, 10000.0);
  json with_null = base;
  with_null["num_key_value_heads"] = nullptr;
  with_null["rope_theta"] = 500000;  // an integer where a number is asked: fine
  const ModelConfig n = ModelConfig::from_hf_json(with_null, "config.json");
  EXPECT_EQ(n.num_key_value_heads, 4);
  EXPECT_DOUBLE_EQ(n.rope_theta, 500000.0);
  const std::vector<std::pair<const char*, json>> bad = {{"rms_norm_eps", "### Response"},
                                                         {"num_key_value_heads", 2.5},
                                                         {"max_position_embeddings", "4096"},
                                                         {"rope_theta", json::array()},
                                                         {"tie_word_embeddings", 1}};
  for (const auto& [key, value] : bad) {
    json j = base;
    j[key] = value;
    const auto [code, what] = test::error_of([&] { ModelConfig::from_hf_json(j, "run/config.json"); });
    EXPECT_EQ(code, kExitBadInput) << key;
    EXPECT_NE(what.find(std::string("run/config.json: field '") + key + "' must be"), std::string::npos) << what;
  }
}
