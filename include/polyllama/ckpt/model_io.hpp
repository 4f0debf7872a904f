#pragma once
// A LlamaModel's tensors in checkpoints: its parameters under their Hugging Face names, each with this rank's block
// of the full logical tensor, and the host staging that checkpoint I/O needs when the tensors live on a GPU.
#include <string>
#include <vector>

#include "polyllama/ckpt/checkpoint.hpp"
#include "polyllama/core/backend.hpp"
#include "polyllama/model/llama.hpp"

namespace polyllama {

// The model's parameters in the backend's memory, each with its ShardSpec: the tp shard of a weight, written by dp
// rank 0 only (the other dp replicas get a replica_id != 0).
std::vector<NamedTensor> model_tensors(const LlamaModel& m);

// Checkpoint files are read and written from host memory. On a backend whose tensors are host memory `host` is
// the tensors themselves and pull/push do nothing; otherwise `host` holds host copies (same names, shapes and
// dtypes) that pull() fills from the device and push() writes back to it.
class HostMirror {
 public:
  HostMirror(Backend& be, std::vector<NamedTensor> device);
  std::vector<NamedTensor> host;
  void pull();
  void push();

 private:
  Backend& be_;
  std::vector<NamedTensor> device_;
  std::vector<std::vector<char>> storage_;
};

// Reads a model.h5 into the model's parameters (through host memory when needed) and refreshes the working copy.
// require_finite (training): a tensor holding NaN or infinity fails (exit 1) naming it, on every rank of the model's
// parallel context together.
void load_model_weights(const std::string& model_h5, LlamaModel& m, bool require_finite = false);

}  // namespace polyllama
