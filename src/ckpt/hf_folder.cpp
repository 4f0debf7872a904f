#include "polyllama/ckpt/hf_folder.hpp"
#include "polyllama/core/atomic_file.hpp"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <regex>
#include <set>

namespace fs = std::filesystem;

namespace polyllama {

namespace {

using json = nlohmann::json;

std::string read_file(const std::string& path, const std::string& hint) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) fail_input(path + ": not found" + hint);
  std::ifstream in(path, std::ios::binary);
  if (!in) fail_input("cannot open " + path);
  std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) fail_input("cannot read " + path);
  return s;
}

json parse_json_file(const std::string& path, const std::string& hint) {
  const std::string text = read_file(path, hint);
  try {
    json j = json::parse(text);
    if (!j.is_object()) fail_input(path + ": not a JSON object");
    return j;
  } catch (const json::exception& e) {
    fail_input(path + ": not valid JSON: " + e.what());
  }
}

bool is_weight_file(const std::string& name) {
  static const std::regex shard(R"(model-\d+-of-\d+\.safetensors)");
  return name == kHfSingleWeights || name == kHfWeightsIndex || std::regex_match(name, shard);
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------
// reading

HfFolderReader::HfFolderReader(const std::string& dir) : dir_(dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) fail_input(dir + ": not a directory (expected a Hugging Face model folder)");
  config_ = parse_json_file(config_path(), " (a Hugging Face model folder holds config.json beside its weights)");

  const std::string single = dir + "/" + kHfSingleWeights, index = dir + "/" + kHfWeightsIndex;
  if (fs::exists(single, ec)) {
    files_.emplace_back(single);
    for (const StTensorInfo& t : files_[0].tensors()) where_[t.name] = {0, &t};
    return;
  }
  if (!fs::exists(index, ec)) {
    const bool bin =
        fs::exists(dir + "/pytorch_model.bin", ec) || fs::exists(dir + "/pytorch_model.bin.index.json", ec);
    fail_input(dir + ": no " + kHfSingleWeights + " or " + kHfWeightsIndex +
               (bin ? " (only PyTorch .bin weights, which polyllama does not read: re-save the model with "
                      "save_pretrained(..., safe_serialization=True))"
                    : ""));
  }
  const json idx = parse_json_file(index, "");
  if (!idx.contains("weight_map") || !idx["weight_map"].is_object())
    fail_input(index + ": no \"weight_map\" object");
  std::map<std::string, std::string> wanted;  // tensor -> file name
  std::map<std::string, size_t> file_index;   // file name -> files_ slot
  for (auto it = idx["weight_map"].begin(); it != idx["weight_map"].end(); ++it) {
    if (!it.value().is_string()) fail_input(index + ": weight_map entry for '" + it.key() + "' is not a file name");
    const std::string file = it.value().get<std::string>();
    // Only plain names of files in this folder: no paths, no parent directories.
    if (file.empty() || file == "." || file == ".." || file.find('/') != std::string::npos ||
        file.find('\\') != std::string::npos || file.find('\0') != std::string::npos)
      fail_input(index + ": weight_map names '" + file + "' for tensor '" + it.key() +
                 "', which is not a plain file name in " + dir);
    wanted[it.key()] = file;
    file_index.emplace(file, 0);
  }
  for (auto& [file, slot] : file_index) {
    if (!fs::is_regular_file(dir + "/" + file, ec))
      fail_input(index + " lists " + file + ", which is missing from " + dir);
    slot = files_.size();
    files_.emplace_back(dir + "/" + file);
  }
  for (const auto& [name, file] : wanted) {
    const SafetensorsReader& r = files_[file_index.at(file)];
    const StTensorInfo* t = r.find(name);
    if (!t) fail_input(index + " places tensor '" + name + "' in " + file + ", which does not hold it");
    where_[name] = {file_index.at(file), t};
  }
  for (size_t f = 0; f < files_.size(); ++f)
    for (const StTensorInfo& t : files_[f].tensors()) {
      auto it = wanted.find(t.name);
      if (it == wanted.end() || file_index.at(it->second) != f)
        fail_input(files_[f].path() + " holds tensor '" + t.name + "', which " + index +
                   (it == wanted.end() ? " does not list" : " places in " + it->second));
    }
}

std::string HfFolderReader::tokenizer_bytes() const {
  return read_file(dir_ + "/tokenizer.model",
                   " (polyllama needs the SentencePiece tokenizer.model; folders with only tokenizer.json are not "
                   "supported)");
}

std::vector<std::string> HfFolderReader::tensor_names() const {
  std::vector<std::string> out;
  for (const auto& [name, w] : where_) out.push_back(name);
  return out;
}

const StTensorInfo* HfFolderReader::find(const std::string& name) const {
  auto it = where_.find(name);
  return it == where_.end() ? nullptr : it->second.second;
}

std::string HfFolderReader::file_of(const std::string& name) const {
  auto it = where_.find(name);
  return it == where_.end() ? dir_ : files_[it->second.first].path();
}

std::vector<std::string> HfFolderReader::weight_files() const {
  std::vector<std::string> out;
  for (const SafetensorsReader& r : files_) out.push_back(r.path());
  return out;
}

void HfFolderReader::read(const std::string& name, const Tensor& dst) const {
  auto it = where_.find(name);
  if (it == where_.end()) {
    std::string files;
    for (const SafetensorsReader& r : files_) files += (files.empty() ? "" : ", ") + r.path();
    fail_input("tensor '" + name + "' is missing from " + files);
  }
  files_[it->second.first].read_into(*it->second.second, dst);
}

bool HfFolderReader::common_dtype(StDType* out) const {
  if (where_.empty()) return false;
  const StDType first = where_.begin()->second.second->dtype;
  for (const auto& [name, w] : where_)
    if (w.second->dtype != first) return false;
  *out = first;
  return true;
}

// ---------------------------------------------------------------------------------------------------------
// writing

HfWriteResult write_hf_folder(const std::string& dir, const std::vector<NamedTensor>& tensors,
                              const std::vector<std::pair<std::string, nlohmann::json>>& json_files,
                              const std::string& tokenizer_bytes, const HfWriteOptions& opts) {
  if (opts.max_shard_bytes == 0) fail_input("the maximum shard size must be positive");
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec || !fs::is_directory(dir)) fail_input("cannot create " + dir + (ec ? ": " + ec.message() : ""));
  // Narrowing can overflow (fp16 past 65504): check every value before anything in DIR changes, so that a
  // failed export neither leaves half of its shards nor removes the weights it was to replace.
  if (opts.dtype != StDType::F32) {
    std::vector<uint16_t> scratch;
    for (const NamedTensor& nt : tensors) {
      if (nt.tensor.dtype != DType::f32) continue;  // reported below
      const int64_t n = nt.tensor.numel(), chunk = int64_t{1} << 20;
      scratch.resize(static_cast<size_t>(std::min(n, chunk)));
      for (int64_t i0 = 0; i0 < n; i0 += chunk) {
        const float* src = nt.tensor.ptr<float>() + i0;
        const int64_t bad = st_convert(StDType::F32, src, opts.dtype, scratch.data(), std::min(chunk, n - i0));
        if (bad >= 0)
          fail_input("tensor '" + nt.name + "' element " + std::to_string(i0 + bad) + " = " + std::to_string(src[bad]) +
                     " overflows " + st_dtype_name(opts.dtype) +
                     (opts.dtype == StDType::F16 ? " (largest finite 65504); export as bf16 or f32 instead" : "") +
                     "; nothing was written to " + dir);
      }
    }
  }
  std::vector<fs::path> stale;
  for (const auto& e : fs::directory_iterator(dir))
    if (is_weight_file(e.path().filename().string())) stale.push_back(e.path());
  if (!stale.empty() && !opts.overwrite)
    fail_input(dir + " already holds weights (" + stale.front().filename().string() +
               "); choose an empty folder or pass --overwrite to replace them");
  for (const fs::path& p : stale) fs::remove(p);

  // Shards, as huggingface_hub's split_state_dict_into_shards_factory.
  std::vector<std::vector<const NamedTensor*>> shards;
  std::vector<const NamedTensor*> current;
  uint64_t current_bytes = 0;
  HfWriteResult res;
  for (const NamedTensor& nt : tensors) {
    if (nt.tensor.dtype != DType::f32) fail_input("write_hf_folder: tensor '" + nt.name + "' is not fp32");
    const uint64_t bytes = static_cast<uint64_t>(nt.tensor.numel()) * st_dtype_size(opts.dtype);
    res.total_size += bytes;
    if (bytes > opts.max_shard_bytes) {
      shards.push_back({&nt});
      continue;
    }
    if (current_bytes + bytes > opts.max_shard_bytes) {
      shards.push_back(std::move(current));
      current.clear();
      current_bytes = 0;
    }
    current.push_back(&nt);
    current_bytes += bytes;
  }
  if (!current.empty() || shards.empty()) shards.push_back(std::move(current));

  const std::map<std::string, std::string> st_meta = {{"format", "pt"}};
  json weight_map = json::object();
  for (size_t s = 0; s < shards.size(); ++s) {
    char name[64];
    if (shards.size() == 1) std::snprintf(name, sizeof name, "%s", kHfSingleWeights);
    else std::snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", s + 1, shards.size());
    std::vector<StWriteTensor> st;
    for (const NamedTensor* nt : shards[s]) {
      StWriteTensor w;
      w.name = nt->name;
      for (int d = 0; d < nt->tensor.ndim; ++d) w.shape.push_back(nt->tensor.dim(d));
      w.dtype = opts.dtype;
      w.data = nt->tensor.data;
      w.src_dtype = StDType::F32;
      st.push_back(std::move(w));
      weight_map[nt->name] = name;
    }
    write_safetensors(dir + "/" + name, st, st_meta);
    res.weight_files.push_back(name);
  }
  if (shards.size() > 1) {
    const json index = {{"metadata", {{"total_size", res.total_size}}}, {"weight_map", weight_map}};
    write_file_atomically(dir + "/" + kHfWeightsIndex, index.dump(2) + "\n");
  }
  for (const auto& [file, j] : json_files) write_file_atomically(dir + "/" + file, j.dump(2) + "\n");
  write_file_atomically(dir + "/tokenizer.model", tokenizer_bytes);
  return res;
}

uint64_t parse_byte_size(const std::string& s, const std::string& what) {
  size_t i = 0;
  while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i;
  std::string unit = s.substr(i);
  for (char& c : unit) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  static const std::map<std::string, uint64_t> units = {
      {"", 1},           {"B", 1},           {"KB", 1000},       {"MB", 1000'000},  {"GB", 1000'000'000},
      {"KIB", 1ull << 10}, {"MIB", 1ull << 20}, {"GIB", 1ull << 30}};
  auto u = units.find(unit);
  uint64_t n = 0, out = 0;
  bool ok = i > 0 && i <= 18 && u != units.end();
  if (ok) {
    n = std::stoull(s.substr(0, i));
    ok = !__builtin_mul_overflow(n, u->second, &out) && out > 0;
  }
  if (!ok) fail_input(what + " wants a positive size such as 5GB, 500MB, 2GiB or a byte count; got '" + s + "'");
  return out;
}

}  // namespace polyllama
