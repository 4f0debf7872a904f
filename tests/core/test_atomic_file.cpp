// Write-temp-then-rename: a committed file has exactly the bytes written; an abandoned or destroyed one leaves
// neither PATH.tmp nor a change to an existing PATH; a PATH that cannot be created fails with exit 1 naming it.
#include <gtest/gtest.h>

#include <filesystem>

#include "polyllama/core/atomic_file.hpp"
#include "polyllama/core/error.hpp"
#include "test_support.hpp"

using namespace polyllama;
namespace fs = std::filesystem;

TEST(AtomicFile, CommitsWholeOrLeavesTheOldFile) {
  const std::string dir = test::temp_dir("atomic"), path = dir + "/f.bin";
  const std::string bytes("a\0b\nc", 5);
  write_file_atomically(path, bytes);
  EXPECT_EQ(test::slurp(path), bytes);
  EXPECT_FALSE(fs::exists(path + ".tmp"));
  {
    AtomicFile f(path);
    f.write("new contents");
    EXPECT_TRUE(fs::exists(path + ".tmp"));
    EXPECT_EQ(test::slurp(path), bytes) << "PATH changed before commit";
  }  // destroyed without commit: as if it was never written
  EXPECT_EQ(test::slurp(path), bytes);
  EXPECT_FALSE(fs::exists(path + ".tmp"));
  AtomicFile g(path);
  g.write("x");
  g.abandon();
  EXPECT_FALSE(fs::exists(path + ".tmp"));
  EXPECT_EQ(test::slurp(path), bytes);
  AtomicFile h(path);
  h.write("replaced");
  h.commit();
  EXPECT_EQ(test::slurp(path), "replaced");
}

TEST(AtomicFile, UncreatableFileIsBadInputNamingIt) {
  const std::string path = test::temp_dir("atomic2") + "/no/such/dir/f.txt";
  const auto [code, msg] = test::error_of([&] { write_file_atomically(path, "x"); });
  EXPECT_EQ(code, kExitBadInput);
  EXPECT_NE(msg.find(path + ".tmp"), std::string::npos) << msg;
}
