#include "polyllama/ckpt/checkpoint.hpp"
#include "polyllama/core/atomic_file.hpp"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>

namespace fs = std::filesystem;

namespace polyllama {

namespace {

std::string step_name(int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "step_%08lld", static_cast<long long>(step));
  return buf;
}


}  // namespace

std::string begin_checkpoint(const std::string& ckpt_root, int64_t step, MPI_Comm comm) {
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  const fs::path root(ckpt_root), tmp_dir = root / (step_name(step) + ".tmp");
  // Rank 0 owns the directories; every rank learns whether that worked before any collective write starts.
  int ok = 1;
  std::string why;
  if (rank == 0) {
    std::error_code ec;
    fs::create_directories(root, ec);
    if (!ec) fs::remove_all(tmp_dir, ec);
    if (!ec) fs::create_directories(tmp_dir, ec);
    if (ec) ok = 0, why = ec.message();
  }
  MPI_Bcast(&ok, 1, MPI_INT, 0, comm);
  if (!ok) fail_input("cannot create checkpoint directory " + tmp_dir.string() + (why.empty() ? "" : ": " + why));
  return tmp_dir.string();
}

std::string publish_checkpoint(const std::string& ckpt_root, int64_t step, MPI_Comm comm) {
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  const fs::path root(ckpt_root), final_dir = root / step_name(step), tmp_dir = root / (step_name(step) + ".tmp");
  if (rank == 0) {
    if (fs::exists(final_dir)) {  // an older save of this step: keep it until the new one is in place
      const fs::path old_dir = root / (step_name(step) + ".old");
      fs::remove_all(old_dir);
      fs::rename(final_dir, old_dir);
      fs::rename(tmp_dir, final_dir);
      fs::remove_all(old_dir);
    } else {
      fs::rename(tmp_dir, final_dir);
    }
    write_file_atomically((root / "latest").string(), step_name(step) + "\n");
  }
  MPI_Barrier(comm);
  return final_dir.string();
}

std::string save_checkpoint(const std::string& ckpt_root, int64_t step, const std::vector<NamedTensor>& model,
                            const std::vector<NamedTensor>& optim, const CheckpointMeta& meta, MPI_Comm comm) {
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  const fs::path tmp_dir = begin_checkpoint(ckpt_root, step, comm);
  write_tensor_file((tmp_dir / "model.h5").string(), model, &meta, comm);
  if (!optim.empty()) write_tensor_file((tmp_dir / "optim.h5").string(), optim, nullptr, comm);
  // Verify before publishing: each rank reads back what it wrote, through the checksums.
  int ok = 1;
  std::string why;
  try {
    verify_tensor_file((tmp_dir / "model.h5").string(), model);
    if (!optim.empty()) verify_tensor_file((tmp_dir / "optim.h5").string(), optim);
    if (rank == 0) read_meta((tmp_dir / "model.h5").string());
  } catch (const Error& e) {
    ok = 0;
    why = e.what();
  }
  MPI_Allreduce(MPI_IN_PLACE, &ok, 1, MPI_INT, MPI_MIN, comm);
  if (!ok) fail_runtime("checkpoint " + tmp_dir.string() + " failed verification; the last good checkpoint is "
                        "untouched" + (why.empty() ? std::string() : ": " + why), __FILE__, __LINE__);
  return publish_checkpoint(ckpt_root, step, comm);
}

std::string resolve_step_dir(const std::string& path, const std::string& what) {
  std::error_code ec;
  if (fs::exists(fs::path(path) / "model.h5", ec)) return path;
  for (const fs::path& root : {fs::path(path) / "ckpt", fs::path(path)})
    if (fs::exists(root / "latest", ec)) return latest_checkpoint(root.string());
  fail_input((what.empty() ? "" : what + " ") + path +
             " is neither a checkpoint step directory (no model.h5) nor a run directory (no ckpt/latest)");
}

std::string latest_checkpoint(const std::string& ckpt_root) {
  std::ifstream f(fs::path(ckpt_root) / "latest");
  std::string name;
  if (!(f >> name)) return "";
  const fs::path dir = fs::path(ckpt_root) / name;
  if (!fs::exists(dir / "model.h5"))
    fail_input(ckpt_root + "/latest names " + name + ", which has no model.h5 (deleted by hand?)");
  return dir.string();
}

void prune_checkpoints(const std::string& ckpt_root, int keep) {
  if (keep <= 0 || !fs::exists(ckpt_root)) return;
  std::set<std::string> steps;  // zero-padded names sort by step
  for (const auto& e : fs::directory_iterator(ckpt_root)) {
    const std::string n = e.path().filename().string();
    if (e.is_directory() && n.rfind("step_", 0) == 0 && n.find('.') == std::string::npos) steps.insert(n);
  }
  while (static_cast<int>(steps.size()) > keep) {
    fs::remove_all(fs::path(ckpt_root) / *steps.begin());
    steps.erase(steps.begin());
  }
}

}  // namespace polyllama
