// Failed HDF5 writes, said plainly: what the error stack and the file system say, and a clean close of the file.
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <vector>

#include "h5_common.hpp"

namespace polyllama::h5 {

namespace {

herr_t collect(unsigned, const H5E_error2_t* e, void* out) {
  auto* v = static_cast<std::vector<std::string>*>(out);
  if (e->desc && *e->desc && (v->empty() || v->back() != e->desc)) v->push_back(e->desc);
  return 0;
}

bool mentions_no_space(const std::string& s) {
  for (const char* m : {"No space left", "no space left", "NO_SPACE", "Disk quota", "QUOTA"})
    if (s.find(m) != std::string::npos) return true;
  return false;
}

}  // namespace

std::string error_detail(const std::string& path) {
  const int err = errno;
  std::vector<std::string> stack;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, collect, &stack);
  // The innermost two messages say what failed at the bottom (an MPI-IO or system call), the rest is HDF5's path.
  std::string detail;
  for (size_t i = stack.size() > 2 ? stack.size() - 2 : 0; i < stack.size(); ++i)
    detail += (detail.empty() ? "" : "; ") + stack[i];
  std::error_code ec;
  const std::filesystem::path dir = std::filesystem::absolute(path, ec).parent_path();
  struct statvfs vfs {};
  const bool have_vfs = statvfs(dir.c_str(), &vfs) == 0;
  const double free_bytes = have_vfs ? static_cast<double>(vfs.f_bavail) * static_cast<double>(vfs.f_frsize) : -1;
  // A full device shows as ENOSPC/EDQUOT, in the MPI-IO message, or as (almost) no space left where the file is.
  bool full = err == ENOSPC || err == EDQUOT || mentions_no_space(detail);
  for (const std::string& s : stack) full |= mentions_no_space(s);
  full |= have_vfs && free_bytes < 1 << 20;
  if (full) {
    char buf[160];
    std::snprintf(buf, sizeof buf, "no space left on device (%.1f MiB free in %s)", free_bytes / (1 << 20),
                  dir.c_str());
    detail = std::string(buf) + (detail.empty() ? "" : "; HDF5: " + detail);
  } else if (err != 0 && detail.empty()) {
    detail = std::strerror(err);
  }
  return detail;
}

void close_failed_file(H5Id& file, const std::string& path) {
  if (file.id >= 0) {
    // Free the file's blocks so that the metadata HDF5 writes on close fits; the file is removed right after.
    const int released = ::truncate(path.c_str(), 0);  // when it fails, close the file as it is
    (void)released;
    H5Fclose(file.id);
    file.id = H5I_INVALID_HID;
  }
  std::remove(path.c_str());
}

}  // namespace polyllama::h5
