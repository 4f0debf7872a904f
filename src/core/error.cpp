#include "polyllama/core/error.hpp"

namespace polyllama {

void fail_input(const std::string& what) { throw Error(kExitBadInput, what); }

void fail_runtime(const std::string& what, const char* file, int line) {
  throw Error(kExitRuntime, what + " [" + file + ":" + std::to_string(line) + "]");
}

}  // namespace polyllama
