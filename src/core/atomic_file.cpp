#include "polyllama/core/atomic_file.hpp"

#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "polyllama/core/error.hpp"

namespace polyllama {

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)), tmp_(path_ + ".tmp") {
  f_ = std::fopen(tmp_.c_str(), "wb");
  if (!f_) fail_input("cannot create " + tmp_ + ": " + std::strerror(errno));
}

AtomicFile::~AtomicFile() { abandon(); }

void AtomicFile::abandon() {
  if (!f_) return;
  std::fclose(f_);
  f_ = nullptr;
  std::remove(tmp_.c_str());
}

void AtomicFile::fail(const std::string& what) {
  const std::string why = std::strerror(errno);
  abandon();
  fail_runtime(what + " " + tmp_ + " failed: " + why, __FILE__, __LINE__);
}

void AtomicFile::write(const void* data, size_t n) {
  PL_CHECK(f_, "write to " + tmp_ + " after commit or abandon");
  if (n > 0 && std::fwrite(data, 1, n, f_) != n) fail("writing");
}

void AtomicFile::commit() {
  PL_CHECK(f_, "commit of " + tmp_ + " after commit or abandon");
  if (std::fflush(f_) != 0 || ::fsync(::fileno(f_)) != 0) fail("writing");
  const int closed = std::fclose(f_);
  f_ = nullptr;
  if (closed != 0) {
    const std::string why = std::strerror(errno);
    std::remove(tmp_.c_str());
    fail_runtime("closing " + tmp_ + " failed: " + why, __FILE__, __LINE__);
  }
  if (std::rename(tmp_.c_str(), path_.c_str()) != 0) {
    const std::string why = std::strerror(errno);
    std::remove(tmp_.c_str());
    fail_runtime("renaming " + tmp_ + " to " + path_ + " failed: " + why, __FILE__, __LINE__);
  }
}

void write_file_atomically(const std::string& path, std::string_view bytes) {
  AtomicFile f(path);
  f.write(bytes);
  f.commit();
}

}  // namespace polyllama
