#include "polyllama/ckpt/model_io.hpp"

namespace polyllama {

std::vector<NamedTensor> model_tensors(const LlamaModel& m) {
  const int dp_rank = m.parallel() ? m.parallel()->dp_rank() : 0, tp = m.tp();
  std::vector<NamedTensor> out;
  for (size_t i = 0; i < m.params().size(); ++i) {
    ShardSpec s = m.params()[i].shard;
    s.replica_id += dp_rank * tp;  // dp replicas of a block do not write it
    out.push_back({m.params()[i].name, m.param(i), s});
  }
  return out;
}

HostMirror::HostMirror(Backend& be, std::vector<NamedTensor> device) : be_(be), device_(std::move(device)) {
  host = device_;
  if (be_.host_memory()) return;
  storage_.resize(host.size());
  for (size_t i = 0; i < host.size(); ++i) {
    storage_[i].resize(host[i].tensor.bytes());
    host[i].tensor.data = storage_[i].data();
  }
}

void HostMirror::pull() {
  if (!be_.host_memory())
    for (size_t i = 0; i < host.size(); ++i) be_.download(host[i].tensor.data, device_[i].tensor);
}

void HostMirror::push() {
  if (!be_.host_memory())
    for (size_t i = 0; i < host.size(); ++i) be_.upload(device_[i].tensor, host[i].tensor.data);
}

void load_model_weights(const std::string& model_h5, LlamaModel& m, bool require_finite) {
  HostMirror mirror(m.backend(), model_tensors(m));
  read_tensor_file(model_h5, mirror.host);
  if (require_finite) {
    const int64_t bad = first_non_finite(mirror.host, m.parallel() ? m.parallel()->world_comm() : MPI_COMM_SELF);
    if (bad >= 0)
      fail_input(model_h5 + ": tensor '" + mirror.host[static_cast<size_t>(bad)].name +
                 "' holds NaN or infinite values, which training cannot start from; start from an earlier "
                 "checkpoint of the run (--init-from STEP_DIR with a new --run-dir)");
  }
  mirror.push();
  m.refresh_working_weights();
}

}  // namespace polyllama
