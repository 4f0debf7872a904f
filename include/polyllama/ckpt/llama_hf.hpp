#pragma once
// Hugging Face LLaMA folders <-> polyllama checkpoints (DESIGN.md sections 2 and 4): what makes a folder a LLaMA
// (which tensors, which config.json fields are refused because polyllama would compute something else), and what
// transformers, vLLM and llama.cpp's converter read from the small JSON files of an export. The files themselves
// are hf_folder's; the parameters' names and shapes are the model's own list (llama_param_specs). Runs on one
// process, in host memory: a conversion is a copy.
#include <cstdint>
#include <string>
#include <vector>

#include "polyllama/ckpt/hf_folder.hpp"

namespace polyllama {

// --dtype values and config.json's torch_dtype names ("f32", "fp32", "float32", "bf16", ...).
bool parse_hf_dtype(const std::string& s, StDType* out);
const char* short_dtype_name(StDType t);  // "f32", "bf16", "f16"

struct HfImportResult {
  std::string checkpoint;            // the step directory written
  size_t tensors = 0;
  int64_t params = 0;
  std::string source_dtype;          // torch_dtype of the weights ("mixed" when they differ and config has none)
  std::vector<std::string> skipped;  // tensors read but not kept (rotary buffers, a head tied to the embedding)
};
// Reads FOLDER (config.json, the safetensors weights, tokenizer.model) into RUN_DIR/ckpt/step_00000000, which
// `pretrain --run-dir RUN_DIR` continues. Fails (exit 1) naming the file and field or tensor for anything that is
// not a LLaMA polyllama computes exactly, and when RUN_DIR already holds a checkpoint.
HfImportResult import_hf_llama(const std::string& folder, const std::string& run_dir);

struct HfExportOptions {
  bool dtype_given = false;  // else the dtype the model was imported in, else bf16
  StDType dtype = StDType::BF16;
  uint64_t max_shard_bytes = 5'000'000'000;
  bool overwrite = false;
};
struct HfExportResult {
  std::string step_dir;
  StDType dtype = StDType::BF16;
  std::string dtype_from;  // "--dtype", "the imported model's dtype" or "default"
  HfWriteResult files;
  int64_t params = 0;
};
// Writes a run directory's latest checkpoint (or a step directory) as a Hugging Face folder: weights in
// LlamaForCausalLM.state_dict() order, config.json, generation_config.json, tokenizer_config.json and
// tokenizer.model.
HfExportResult export_hf_llama(const std::string& ckpt, const std::string& out_dir, const HfExportOptions& opts);

}  // namespace polyllama
