#include "polyllama/core/version.hpp"

#ifndef POLYLLAMA_VERSION
#error "POLYLLAMA_VERSION is set by CMakeLists.txt (PROJECT_VERSION)"
#endif

namespace polyllama {

const char* version() { return POLYLLAMA_VERSION; }

}  // namespace polyllama
