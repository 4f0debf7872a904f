#pragma once
// Hugging Face model folders, as `save_pretrained` writes them: config.json, the weights as one
// model.safetensors or as shards model-0000N-of-0000M.safetensors listed by model.safetensors.index.json,
// tokenizer.model, and small JSON files (generation_config.json, tokenizer_config.json).
//
// This layer knows files and named tensors, not the model: the caller (ckpt/llama_hf.cpp) says which tensors
// a LLaMA needs and what goes into the JSON files. Everything read is untrusted: the index may only name plain
// files in the folder, every tensor must live in exactly the file the index says, and each safetensors file is
// validated by SafetensorsReader.
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "polyllama/ckpt/checkpoint.hpp"
#include "polyllama/ckpt/safetensors.hpp"

namespace polyllama {

constexpr const char* kHfSingleWeights = "model.safetensors";
constexpr const char* kHfWeightsIndex = "model.safetensors.index.json";

class HfFolderReader {
 public:
  // Reads DIR/config.json and opens the weights (model.safetensors when present, as transformers prefers, else
  // the shards the index names). Fails naming the file when either is missing or invalid.
  explicit HfFolderReader(const std::string& dir);

  const std::string& dir() const { return dir_; }
  const nlohmann::json& config() const { return config_; }
  std::string config_path() const { return dir_ + "/config.json"; }
  // DIR/tokenizer.model's bytes; fails naming the path when it is missing.
  std::string tokenizer_bytes() const;

  std::vector<std::string> tensor_names() const;  // sorted
  const StTensorInfo* find(const std::string& name) const;  // nullptr when absent
  std::string file_of(const std::string& name) const;       // path of the safetensors file holding it
  std::vector<std::string> weight_files() const;
  // Reads a tensor into dst (f32 or f64), checking the shape; fails naming the file and the tensor.
  void read(const std::string& name, const Tensor& dst) const;
  // The dtype every tensor is stored in; false when they differ (or there are none).
  bool common_dtype(StDType* out) const;

 private:
  std::string dir_;
  nlohmann::json config_;
  std::vector<SafetensorsReader> files_;
  std::map<std::string, std::pair<size_t, const StTensorInfo*>> where_;  // name -> (file, info)
};

struct HfWriteOptions {
  StDType dtype = StDType::BF16;             // stored dtype of every tensor
  uint64_t max_shard_bytes = 5'000'000'000;  // Hugging Face's default "5GB", counted in tensor bytes as HF does
  bool overwrite = false;                    // replace weights already in the folder
};

struct HfWriteResult {
  std::vector<std::string> weight_files;  // file names, in shard order
  uint64_t total_size = 0;                // bytes of tensor data (the index's metadata.total_size)
};

// Writes a folder: the tensors (fp32 in memory, `opts.dtype` on disk) sharded as huggingface_hub's
// split_state_dict_into_shards does (in the given order; a shard closes before a tensor that would push it past
// max_shard_bytes; a tensor larger than that gets a shard of its own), one model.safetensors when everything
// fits in one shard, else the shards plus model.safetensors.index.json; each JSON file as
// json.dumps(indent=2, sort_keys=True) + "\n"; tokenizer.model byte for byte. Every safetensors file carries
// __metadata__ {"format": "pt"}, which transformers requires. Existing weights in DIR are an error unless
// opts.overwrite, which removes model.safetensors, model-*-of-*.safetensors and the index first.
HfWriteResult write_hf_folder(const std::string& dir, const std::vector<NamedTensor>& tensors,
                              const std::vector<std::pair<std::string, nlohmann::json>>& json_files,
                              const std::string& tokenizer_bytes, const HfWriteOptions& opts);

// "5GB" -> 5e9, "500MB", "20KB", "2GiB", "1MiB", "4096" (bytes); Hugging Face's units (KB = 1000). Fails
// naming `what` for anything else or zero.
uint64_t parse_byte_size(const std::string& s, const std::string& what);

}  // namespace polyllama
