#pragma once
// Shared by the libFuzzer targets of tests/fuzz (docs/fuzzing.md): what counts as a finding, and fuzz bytes as a
// file for readers whose entry point is a path.
//
// A finding is anything but the documented failure: a sanitizer report (memory error, undefined behaviour, leak),
// a crash, a hang, or an exception other than polyllama::Error with exit code 1 escaping the parser. Bad input must
// end as fail_input (exit 1, naming the file); a raw nlohmann::json::type_error, std::out_of_range or a "check
// failed" runtime error (exit 2) reaching the user is a bug the fuzzer reports (libFuzzer treats the uncaught
// exception as a crash and saves the input).
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "polyllama/core/error.hpp"

namespace polyllama::fuzz {

// Runs f; an input error (exit 1) is the expected outcome for most inputs, everything else propagates.
template <class F>
void expect_clean(F&& f) {
  try {
    f();
  } catch (const polyllama::Error& e) {
    if (e.code() != kExitBadInput) {
      std::fprintf(stderr, "fuzz: bad input ended as exit %d instead of 1: %s\n", static_cast<int>(e.code()), e.what());
      std::abort();
    }
  }
}

// An invariant of a successful parse; a violation is a finding.
inline void require(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "fuzz: invariant violated: %s\n", what);
    std::abort();
  }
}

// The fuzz input as a file the reader opens by path, held in memory (memfd_create): nothing is written to disk and
// the reader's own file handling (open, fstat, pread, seeks, gzip detection) is exercised as for a real file.
// path() is /proc/self/fd/N; `name` only labels the descriptor.
class MemFile {
 public:
  explicit MemFile(const char* name) {
    fd_ = memfd_create(name, MFD_CLOEXEC);
    if (fd_ < 0) {
      std::perror("fuzz: memfd_create");
      std::abort();
    }
    path_ = "/proc/self/fd/" + std::to_string(fd_);
  }
  ~MemFile() { ::close(fd_); }
  MemFile(const MemFile&) = delete;
  MemFile& operator=(const MemFile&) = delete;

  // Replaces the content with `data`.
  void set(std::string_view data) {
    if (::ftruncate(fd_, 0) != 0 || ::pwrite(fd_, data.data(), data.size(), 0) != static_cast<ssize_t>(data.size())) {
      std::perror("fuzz: writing the memfd");
      std::abort();
    }
  }
  const std::string& path() const { return path_; }

 private:
  int fd_ = -1;
  std::string path_;
};

// A scratch directory for readers that take a directory tree (the benchmark tasks read their release layout):
// created once per process under $TMPDIR, else /dev/shm, else /tmp; removed at exit. The benchmark targets write a
// few files per input: in memory (/dev/shm) they ran 2.5x faster than on a disk-backed /tmp.
class ScratchDir {
 public:
  ScratchDir() {
    const char* tmp = std::getenv("TMPDIR");
    const std::string base = tmp && *tmp                    ? tmp
                             : ::access("/dev/shm", W_OK) == 0 ? "/dev/shm"
                                                               : "/tmp";
    std::string templ = base + "/polyllama-fuzz-XXXXXX";
    if (!mkdtemp(templ.data())) {
      std::perror("fuzz: mkdtemp");
      std::abort();
    }
    path_ = templ;
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;

  // Writes `data` to the relative path `rel` (creating its folders) and returns the full path.
  std::string write(const std::string& rel, std::string_view data) const {
    const std::filesystem::path p = std::filesystem::path(path_) / rel;
    std::filesystem::create_directories(p.parent_path());
    std::FILE* f = std::fopen(p.c_str(), "wb");
    if (!f || std::fwrite(data.data(), 1, data.size(), f) != data.size() || std::fclose(f) != 0) {
      std::perror("fuzz: writing a scratch file");
      std::abort();
    }
    return p.string();
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Splits the input at "\n#####\n" into at most `max_parts` parts (the last keeps any further separators): a file and
// a model response to score, say. Missing parts are empty.
inline std::vector<std::string_view> split_parts(const uint8_t* data, size_t size, size_t max_parts) {
  std::string_view rest(reinterpret_cast<const char*>(data), size);
  constexpr std::string_view sep = "\n#####\n";
  std::vector<std::string_view> parts;
  while (parts.size() + 1 < max_parts) {
    const size_t at = rest.find(sep);
    if (at == std::string_view::npos) break;
    parts.push_back(rest.substr(0, at));
    rest.remove_prefix(at + sep.size());
  }
  parts.push_back(rest);
  parts.resize(max_parts);
  return parts;
}

}  // namespace polyllama::fuzz
