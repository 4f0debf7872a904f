# Sanitizer and fuzzing builds (docs/fuzzing.md). Included by the top-level CMakeLists.txt before any target, so
# that every area library, the unit tests and the binary are built the same way: a sanitizer only sees the code it
# instrumented, and a fuzz target's coverage feedback only reaches the parsers when they carry the fuzzer's
# instrumentation too.
#
#   POLYLLAMA_SANITIZE=ON  AddressSanitizer + UndefinedBehaviorSanitizer on everything (clang or gcc). Any UB report
#                          aborts (-fno-sanitize-recover), so a ctest run fails on it instead of printing and passing.
#   POLYLLAMA_FUZZ=ON      clang only: POLYLLAMA_SANITIZE plus libFuzzer's coverage instrumentation
#                          (-fsanitize=fuzzer-no-link) on everything, and the targets of tests/fuzz/ (linked with
#                          -fsanitize=fuzzer, which brings libFuzzer's main).
option(POLYLLAMA_SANITIZE "Build everything with AddressSanitizer and UndefinedBehaviorSanitizer" OFF)
option(POLYLLAMA_FUZZ "Build the libFuzzer targets of tests/fuzz (clang; implies POLYLLAMA_SANITIZE)" OFF)

if(POLYLLAMA_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "POLYLLAMA_FUZZ needs clang (libFuzzer), the C++ compiler is ${CMAKE_CXX_COMPILER_ID}. "
                        "On Debian: apt-get install clang-14 libclang-rt-14-dev libomp-14-dev, then configure with "
                        "-DCMAKE_C_COMPILER=clang-14 -DCMAKE_CXX_COMPILER=clang++-14 (tools/fuzz.sh does)")
  endif()
  set(POLYLLAMA_SANITIZE ON)
endif()

if(POLYLLAMA_SANITIZE)
  if(POLYLLAMA_CUDA)
    message(FATAL_ERROR "POLYLLAMA_SANITIZE/POLYLLAMA_FUZZ are CPU-only builds: add -DPOLYLLAMA_CUDA=OFF")
  endif()
  # -fno-omit-frame-pointer: whole stacks in reports at little cost. vptr stays on: the areas use RTTI.
  set(_pl_san_flags -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer)
  if(POLYLLAMA_FUZZ)
    list(APPEND _pl_san_flags -fsanitize=fuzzer-no-link)
  endif()
  add_compile_options("$<$<COMPILE_LANGUAGE:C,CXX>:${_pl_san_flags}>")
  add_link_options(-fsanitize=address,undefined)
  message(STATUS "polyllama: sanitizers ${_pl_san_flags}")
endif()
