#include "polyllama/ckpt/checkpoint.hpp"
#include "polyllama/ckpt/manifest.hpp"
#include "polyllama/core/atomic_file.hpp"
#include "polyllama/parallel/agree.hpp"

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
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

bool is_step_name(const std::string& n) {
  return n.size() == 13 && n.rfind("step_", 0) == 0 &&
         std::all_of(n.begin() + 5, n.end(), [](char c) { return c >= '0' && c <= '9'; });
}

bool all_finite(const Tensor& t) {
  const int64_t n = t.numel();
  switch (t.dtype) {
    case DType::f32: {
      const float* p = static_cast<const float*>(t.data);
      for (int64_t i = 0; i < n; ++i)
        if (!std::isfinite(p[i])) return false;
      return true;
    }
    case DType::f64: {
      const double* p = static_cast<const double*>(t.data);
      for (int64_t i = 0; i < n; ++i)
        if (!std::isfinite(p[i])) return false;
      return true;
    }
    case DType::bf16: {
      const uint16_t* p = static_cast<const uint16_t*>(t.data);
      for (int64_t i = 0; i < n; ++i)
        if ((p[i] & 0x7F80u) == 0x7F80u) return false;  // exponent all ones: infinity or NaN
      return true;
    }
  }
  return true;
}

// Why a step directory cannot be resumed from, or "" when it can.
std::string step_dir_problem(const fs::path& dir) {
  std::error_code ec;
  if (!fs::exists(dir / "model.h5", ec)) return "has no model.h5";
  try {
    const CheckpointMeta m = read_meta((dir / "model.h5").string());
    if (!m.trainer_json.empty() && !fs::exists(dir / "optim.h5", ec)) return "has no optim.h5";
  } catch (const Error& e) {
    return std::string("does not load: ") + e.what();
  }
  return "";
}

uintmax_t tree_bytes(const fs::path& dir) {
  uintmax_t n = 0;
  std::error_code ec;
  for (fs::recursive_directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec))
    if (it->is_regular_file(ec)) n += it->file_size(ec);
  return n;
}

// Bytes a file of these tensors takes: the values plus HDF5's share per dataset (object header, chunk index, a
// Fletcher32 checksum per chunk), measured at under 2 KiB per dataset for checkpoint files; 4 KiB keeps a margin.
uint64_t estimated_file_bytes(const std::vector<NamedTensor>& tensors) {
  uint64_t n = 64 << 10;  // superblock, root group, attributes
  for (const NamedTensor& nt : tensors) {
    uint64_t numel = 1;
    if (nt.shard.global_shape.empty())
      numel = static_cast<uint64_t>(nt.tensor.numel());
    else
      for (int64_t d : nt.shard.global_shape) numel *= static_cast<uint64_t>(d);
    n += numel * (nt.tensor.dtype == DType::f64 ? 8 : 4) + (4 << 10);
  }
  return n;
}

// A save that cannot fit fails before anything is written, on every rank together, with exit 2 and a message that
// says so; a disk that fills up during the save (another writer) ends in write_tensor_file's abort instead.
// POLYLLAMA_SKIP_SPACE_CHECK=1 skips it, for file systems whose free space statvfs misreports (some quotas).
void check_space_for_save(const std::string& ckpt_root, int64_t step, const std::vector<NamedTensor>& model,
                          const std::vector<NamedTensor>& optim, const CheckpointMeta& meta, MPI_Comm comm) {
  const char* skip = std::getenv("POLYLLAMA_SKIP_SPACE_CHECK");
  if (skip && std::string(skip) == "1") return;
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  const uint64_t need = estimated_file_bytes(model) + (optim.empty() ? 0 : estimated_file_bytes(optim)) +
                        meta.config_json.size() + meta.trainer_json.size() + meta.tokenizer_bytes.size() +
                        meta.chat_template_json.size();
  run_agreed(comm, [&] {
    if (rank != 0) return;
    fs::path where = fs::absolute(ckpt_root);
    std::error_code ec;
    while (!fs::exists(where, ec) && where.has_parent_path() && where != where.parent_path()) where = where.parent_path();
    const fs::space_info sp = fs::space(where, ec);
    if (ec || sp.available >= need) return;
    char buf[256];
    std::snprintf(buf, sizeof buf, "no space left on device for checkpoint %s: it needs about %.1f MiB, %s has %.1f "
                  "MiB free", step_name(step).c_str(), need / 1048576.0, where.c_str(), sp.available / 1048576.0);
    fail_runtime(std::string(buf) + "; nothing was written and " + ckpt_root + "/latest still names the last good "
                 "checkpoint (free space or move the run; --keep-last prunes only after a save succeeds)",
                 __FILE__, __LINE__);
  });
}

}  // namespace

int64_t first_non_finite(const std::vector<NamedTensor>& tensors, MPI_Comm comm) {
  long long first = LLONG_MAX;
  for (size_t i = 0; i < tensors.size() && first == LLONG_MAX; ++i)
    if (!tensors[i].tensor.empty() && !all_finite(tensors[i].tensor)) first = static_cast<long long>(i);
  MPI_Allreduce(MPI_IN_PLACE, &first, 1, MPI_LONG_LONG, MPI_MIN, comm);
  return first == LLONG_MAX ? -1 : static_cast<int64_t>(first);
}

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
  write_manifest(tmp_dir.string(), comm);  // last file of the step directory, before the rename makes it visible
  // Rank 0 moves the directories; every rank learns whether that worked (a rank that threw alone would leave the
  // others waiting in the next collective).
  run_agreed(comm, [&] {
    if (rank != 0) return;
    try {
      if (fs::exists(final_dir)) {  // an older save of this step: keep it until the new one is in place
        const fs::path old_dir = root / (step_name(step) + ".old");
        fs::remove_all(old_dir);
        fs::rename(final_dir, old_dir);
        fs::rename(tmp_dir, final_dir);
        fs::remove_all(old_dir);
      } else {
        fs::rename(tmp_dir, final_dir);
      }
    } catch (const fs::filesystem_error& e) {
      fail_runtime(std::string("cannot publish checkpoint ") + tmp_dir.string() + ": " + e.what(), __FILE__, __LINE__);
    }
    write_file_atomically((root / "latest").string(), step_name(step) + "\n");
  });
  return final_dir.string();
}

std::string save_checkpoint(const std::string& ckpt_root, int64_t step, const std::vector<NamedTensor>& model,
                            const std::vector<NamedTensor>& optim, const CheckpointMeta& meta, MPI_Comm comm) {
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  // Nothing non-finite is ever saved: checked before anything is written, so the last good checkpoint stays `latest`.
  for (const std::vector<NamedTensor>* set : {&model, &optim})
    if (const int64_t bad = first_non_finite(*set, comm); bad >= 0)
      fail_runtime("refusing to save step " + std::to_string(step) + ": tensor '" +
                       (*set)[static_cast<size_t>(bad)].name + "' holds NaN or infinite values; nothing was written and " +
                       ckpt_root + "/latest still names the last good checkpoint",
                   __FILE__, __LINE__);
  check_space_for_save(ckpt_root, step, model, optim, meta, comm);
  const fs::path tmp_dir = begin_checkpoint(ckpt_root, step, comm);
  write_tensor_file((tmp_dir / "model.h5").string(), model, &meta, comm);
  if (!optim.empty()) write_tensor_file((tmp_dir / "optim.h5").string(), optim, nullptr, comm);
  // Verify before publishing: each rank reads back what it wrote, through the checksums.
  try {
    run_agreed(comm, [&] {
      verify_tensor_file((tmp_dir / "model.h5").string(), model);
      if (!optim.empty()) verify_tensor_file((tmp_dir / "optim.h5").string(), optim);
      if (rank == 0) read_meta((tmp_dir / "model.h5").string());
    });
  } catch (const Error& e) {
    fail_runtime("checkpoint " + tmp_dir.string() + " failed verification; the last good checkpoint is untouched: " +
                 e.what(), __FILE__, __LINE__);
  }
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

void prune_checkpoints(const std::string& ckpt_root, int keep, const std::vector<int64_t>& kept) {
  if (keep <= 0 || !fs::exists(ckpt_root)) return;
  std::string latest;
  std::ifstream(fs::path(ckpt_root) / "latest") >> latest;
  std::vector<std::string> steps;  // zero-padded names sort by step
  for (const std::string& n : list_step_dirs(ckpt_root)) {
    bool is_kept = false;
    for (int64_t k : kept) is_kept = is_kept || n == step_name(k);
    if (!is_kept) steps.push_back(n);
  }
  auto count = static_cast<int64_t>(steps.size());
  for (const std::string& n : steps) {
    if (count <= keep) break;
    if (n == latest) continue;  // the newest known good checkpoint
    fs::remove_all(fs::path(ckpt_root) / n);
    --count;
  }
}

std::vector<std::string> list_step_dirs(const std::string& ckpt_root) {
  std::vector<std::string> steps;
  std::error_code ec;
  for (fs::directory_iterator it(ckpt_root, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string n = it->path().filename().string();
    if (is_step_name(n) && it->is_directory(ec)) steps.push_back(n);
  }
  std::sort(steps.begin(), steps.end());
  return steps;
}

std::vector<std::string> remove_stale_tmp_dirs(const std::string& ckpt_root) {
  std::vector<std::string> removed;
  std::vector<fs::path> stale;
  std::error_code ec;
  for (fs::directory_iterator it(ckpt_root, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string n = it->path().filename().string();
    if (n.size() > 4 && n.compare(n.size() - 4, 4, ".tmp") == 0 && is_step_name(n.substr(0, n.size() - 4)) &&
        it->is_directory(ec))
      stale.push_back(it->path());
  }
  std::sort(stale.begin(), stale.end());
  for (const fs::path& p : stale) {
    const uintmax_t bytes = tree_bytes(p);
    fs::remove_all(p, ec);
    if (ec) fail_input("cannot remove the stale checkpoint directory " + p.string() + ": " + ec.message());
    char size[64];
    std::snprintf(size, sizeof size, "%.1f MiB", static_cast<double>(bytes) / (1 << 20));
    removed.push_back(p.string() + " (" + size + ", a save that never completed)");
  }
  return removed;
}

std::string find_resume_checkpoint(const std::string& ckpt_root, bool repair, std::string* note) {
  const fs::path root(ckpt_root);
  note->clear();
  std::string name, why;
  std::ifstream f(root / "latest");
  if (!f) {
    why = ckpt_root + "/latest is missing";
  } else if (!(f >> name) || !is_step_name(name)) {
    why = ckpt_root + "/latest does not name a step directory";
  } else {
    why = step_dir_problem(root / name);
    if (why.empty()) return (root / name).string();
    why = ckpt_root + "/latest names " + name + ", which " + why;
  }
  const std::vector<std::string> steps = list_step_dirs(ckpt_root);
  if (steps.empty()) {
    if (f) *note = why + ", and there is no step directory to rebuild it from";
    return "";
  }
  std::string skipped;
  for (auto it = steps.rbegin(); it != steps.rend(); ++it) {
    const std::string problem = step_dir_problem(root / *it);
    if (!problem.empty()) {
      skipped += "; skipped " + *it + ", which " + problem;
      continue;
    }
    if (repair) write_file_atomically((root / "latest").string(), *it + "\n");
    *note = why + skipped + "; rebuilt it from " + *it + ", the newest intact checkpoint";
    return (root / *it).string();
  }
  *note = why + skipped;
  return "";
}

}  // namespace polyllama
