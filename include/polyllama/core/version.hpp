#pragma once
// The version of this polyllama (CMake's PROJECT_VERSION), for the binary, `doctor`, and code linking the
// installed libraries (find_package(polyllama)).

namespace polyllama {

// "0.1.0".
const char* version();

}  // namespace polyllama
