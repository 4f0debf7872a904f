#pragma once
// SHA-256 (FIPS 180-4) for checkpoint manifests: polyllama's own, so checkpoints need no crypto library. The x86
// SHA extensions are used when the CPU has them (about 1.5-2 GB/s per core), a portable version otherwise; both give
// the digests `sha256sum` prints.
#include <cstddef>
#include <cstdint>
#include <string>

namespace polyllama {

class Sha256 {
 public:
  Sha256();
  void update(const void* data, size_t n);
  // The digest as 64 lowercase hex digits; the object is spent afterwards.
  std::string hex_digest();

 private:
  uint32_t h_[8];
  unsigned char buf_[64];
  size_t buf_len_ = 0;
  uint64_t total_ = 0;
};

// The SHA-256 of a whole file, read in large blocks (fails naming the file when it cannot be read); *bytes gets its
// size when given.
std::string sha256_file(const std::string& path, uint64_t* bytes = nullptr);
// Whether this process uses the CPU's SHA instructions (for `doctor` and the docs' cost figures).
bool sha256_uses_cpu_instructions();
// Turns the SHA instructions off (false) or back on where the CPU has them, so tests check both versions; returns
// whether they are now used. Not thread-safe: call it while nothing hashes.
bool sha256_use_cpu_instructions(bool use);

}  // namespace polyllama
