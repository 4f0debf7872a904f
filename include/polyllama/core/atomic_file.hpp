#pragma once
// Files that are either complete or absent: written to PATH.tmp, flushed to disk (fsync) and renamed over PATH
// (rename(2) is atomic on POSIX file systems), so a crash, a kill or a full disk never leaves a half-written PATH
// and an older PATH stays whole until the new one is complete. The one implementation of write-temp-then-rename
// (checkpoints' `latest`, safetensors and Hugging Face files, dataset metadata, metrics, generated text,
// tokenizers).
#include <cstddef>
#include <cstdio>
#include <string>
#include <string_view>

namespace polyllama {

class AtomicFile {
 public:
  // Creates PATH.tmp (replacing a stale one); fails (exit 1) naming it when it cannot be created.
  explicit AtomicFile(std::string path);
  ~AtomicFile();  // a file never committed is removed
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  // Fails (exit 2) naming the file when the bytes cannot be written (a full disk); the temporary file is removed.
  void write(const void* data, size_t n);
  void write(std::string_view s) { write(s.data(), s.size()); }
  // Flushes, fsyncs, closes and renames PATH.tmp to PATH; fails (exit 2) naming the file, removing PATH.tmp.
  void commit();
  // Closes and removes PATH.tmp now (before the caller reports an error of its own).
  void abandon();
  const std::string& path() const { return path_; }
  const std::string& tmp_path() const { return tmp_; }

 private:
  [[noreturn]] void fail(const std::string& what);
  std::string path_, tmp_;
  std::FILE* f_ = nullptr;
};

// The whole file in one call.
void write_file_atomically(const std::string& path, std::string_view bytes);

}  // namespace polyllama
