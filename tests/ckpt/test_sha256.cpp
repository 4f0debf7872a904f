// SHA-256 against FIPS 180-4's examples (and the other published vectors), in both versions (the CPU's SHA
// instructions and the portable rounds), in pieces of every size, and against `sha256sum` on real files.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <random>
#include <string>

#include "polyllama/ckpt/sha256.hpp"
#include "test_support.hpp"

using namespace polyllama;

namespace {

std::string sha(const std::string& s) {
  Sha256 h;
  h.update(s.data(), s.size());
  return h.hex_digest();
}

// Runs the body with the portable rounds and, where the CPU has them, with the SHA instructions.
template <class Fn>
void both_versions(Fn&& fn) {
  const bool had = sha256_uses_cpu_instructions();
  for (bool cpu : {false, true}) {
    if (sha256_use_cpu_instructions(cpu) != cpu) continue;  // no SHA instructions on this CPU
    SCOPED_TRACE(cpu ? "SHA instructions" : "portable");
    fn();
  }
  sha256_use_cpu_instructions(had);
}

std::string run(const std::string& cmd) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return out;
  char buf[256];
  while (std::fgets(buf, sizeof buf, p)) out += buf;
  pclose(p);
  return out;
}

}  // namespace

TEST(Sha256, Fips180Examples) {
  both_versions([] {
    // FIPS 180-4 / the NIST example values: one block, two blocks, and a million 'a's.
    EXPECT_EQ(sha("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    EXPECT_EQ(sha("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
              "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    EXPECT_EQ(sha(std::string(1000000, 'a')), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    EXPECT_EQ(sha(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    EXPECT_EQ(sha("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrst"
                  "nopqrstu"),
              "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
  });
}

TEST(Sha256, PiecesOfAnySizeGiveTheOneShotDigest) {
  std::mt19937 rng(7);
  std::string data(5000, '\0');
  for (char& c : data) c = static_cast<char>(rng());
  both_versions([&] {
    // Every length around the padding boundaries (55, 56, 63, 64 bytes and their multiples).
    for (size_t n : {0, 1, 55, 56, 57, 63, 64, 65, 119, 120, 127, 128, 129, 1000, 5000}) {
      const std::string whole = sha(data.substr(0, n));
      Sha256 h;
      for (size_t at = 0; at < n;) {
        const size_t take = std::min<size_t>(n - at, 1 + rng() % 97);
        h.update(data.data() + at, take);
        at += take;
      }
      EXPECT_EQ(h.hex_digest(), whole) << n << " bytes";
    }
  });
  // The two versions agree on every length.
  if (sha256_use_cpu_instructions(true)) {
    std::vector<std::string> cpu;
    for (size_t n = 0; n < 300; ++n) cpu.push_back(sha(data.substr(0, n)));
    sha256_use_cpu_instructions(false);
    for (size_t n = 0; n < 300; ++n) EXPECT_EQ(sha(data.substr(0, n)), cpu[n]) << n << " bytes";
    sha256_use_cpu_instructions(true);
  }
}

TEST(Sha256, FilesMatchSha256sum) {
  if (run("command -v sha256sum").empty()) GTEST_SKIP() << "sha256sum (coreutils) is not installed";
  const std::string dir = test::temp_dir("sha256");
  std::mt19937 rng(11);
  // Sizes around the reader's 8 MiB block as well as the hash's 64-byte block.
  for (size_t n : {size_t{0}, size_t{3}, size_t{64}, size_t{1} << 20, (size_t{8} << 20) - 1, (size_t{8} << 20) + 77}) {
    std::string bytes(n, '\0');
    for (char& c : bytes) c = static_cast<char>(rng());
    const std::string path = dir + "/f" + std::to_string(n);
    test::spit(path, bytes);
    const std::string want = run("sha256sum '" + path + "'").substr(0, 64);
    both_versions([&] {
      uint64_t got_bytes = 0;
      EXPECT_EQ(sha256_file(path, &got_bytes), want) << n << " bytes";
      EXPECT_EQ(got_bytes, n);
    });
  }
  const auto [code, what] = test::error_of([&] { sha256_file(dir + "/missing"); });
  EXPECT_EQ(code, kExitBadInput);
  EXPECT_NE(what.find(dir + "/missing"), std::string::npos) << what;
  std::filesystem::remove_all(dir);
}
