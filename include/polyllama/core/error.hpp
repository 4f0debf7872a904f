#pragma once
// Errors carry what failed, where, and (for users) what to do about it. Only cli/main catches them.
#include <stdexcept>
#include <string>

namespace polyllama {

// Exit codes shared by every verb (DESIGN.md section 1).
enum ExitCode : int { kExitOk = 0, kExitBadInput = 1, kExitRuntime = 2, kExitSignal = 3 };

class Error : public std::runtime_error {
 public:
  Error(ExitCode code, const std::string& what) : std::runtime_error(what), code_(code) {}
  ExitCode code() const { return code_; }

 private:
  ExitCode code_;
};

// Bad input or configuration: a file, field or flag the user can fix.
[[noreturn]] void fail_input(const std::string& what);
// A failure the user did not cause directly (library call, I/O, numerics).
[[noreturn]] void fail_runtime(const std::string& what, const char* file, int line);

}  // namespace polyllama

#define PL_CHECK(cond, msg)                                                                         \
  do {                                                                                              \
    if (!(cond)) ::polyllama::fail_runtime(std::string("check failed: " #cond ": ") + (msg), __FILE__, \
                                           __LINE__);                                               \
  } while (0)
