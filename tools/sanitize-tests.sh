#!/usr/bin/env bash
# The sanitizer stage of the tests (docs/fuzzing.md; CI runs it from tools/run-tests.sh): one clang-14 build with
# AddressSanitizer, UndefinedBehaviorSanitizer and libFuzzer's instrumentation (POLYLLAMA_FUZZ=ON, CPU only) in
# ${SAN_BUILD_DIR:-build-san}, then
#   1. the GoogleTest unit tests under ASan + UBSan (any report fails the run; leaks are reported except those of
#      tests/fuzz/lsan.supp, third-party libraries' process-lifetime allocations),
#   2. every fuzz target for FUZZ_SECONDS (default 20) over its committed seeds (ctest -L fuzz).
# Skips (exit 0, with a message) when clang-14 or libFuzzer is not installed. Extra arguments go to cmake.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${SAN_BUILD_DIR:-build-san}
seconds=${FUZZ_SECONDS:-20}
cxx=clang++-14
if ! command -v "$cxx" > /dev/null || ! command -v clang-14 > /dev/null; then
  echo "sanitize-tests: clang-14 not installed; skipping the sanitizer build and the fuzz targets" \
       "(apt-get install clang-14 libclang-rt-14-dev libomp-14-dev)"
  exit 0
fi
if ! echo 'extern "C" int LLVMFuzzerTestOneInput(const char*, unsigned long) { return 0; }' |
    "$cxx" -x c++ -fsanitize=fuzzer - -o /dev/null 2> /dev/null; then
  echo "sanitize-tests: $cxx cannot link -fsanitize=fuzzer (libclang-rt-14-dev); skipping"
  exit 0
fi
start=$SECONDS
launcher=()
command -v ccache > /dev/null && launcher=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang-14 -DCMAKE_CXX_COMPILER="$cxx" \
  -DPOLYLLAMA_CUDA=OFF -DPOLYLLAMA_FUZZ=ON -DPOLYLLAMA_FUZZ_SECONDS="$seconds" "${launcher[@]}" "$@" \
  > "$build.configure.log" 2>&1 || { cat "$build.configure.log"; exit 1; }
# Set before the build too: linking polyllama_tests runs it (gtest_discover_tests lists its tests), and MPI_Init's
# process-lifetime allocations would otherwise count as leaks there and fail the build.
supp="$PWD/tests/fuzz/lsan.supp"
export LSAN_OPTIONS="suppressions=$supp:print_suppressions=0"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:detect_stack_use_after_return=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export OMP_NUM_THREADS=2 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# Open MPI unloads its components (mca_*.so) at MPI_Finalize, and their allocations would then show as frames of an
# "<unknown module>" that no suppression can name: the test processes (and the polyllama binaries they start) get a
# dlclose that keeps every library mapped (tests/fuzz/no_dlclose.c).
preload="$(realpath "$build")/no_dlclose.so"
"$cxx" -x c -shared -fPIC -O2 tests/fuzz/no_dlclose.c -o "$preload"
# Listing the tests at link time (gtest_discover_tests) is not a test run: no leak report there.
ASAN_OPTIONS="${ASAN_OPTIONS/detect_leaks=1/detect_leaks=0}" \
  cmake --build "$build" --target polyllama_tests fuzz_all -j"${BUILD_JOBS:-$(nproc)}"
built=$SECONDS
# Left out: tests that train or compare whole models for minutes (ASan makes them 2-3x slower and they exercise no
# parsing or allocation path the others miss), multi-rank tests (run under mpirun in the main build), CUDA.
skip="Learning.*:TorchReference.*:HfGreedy.*:HfLetters.*:GradCheck.*:GradCheckChunks.*:Cuda*:ParallelTraining.*"
skip+=":ParallelDecode.*:PlanParallel.*"
LD_PRELOAD="$preload" "$build/tests/polyllama_tests" --gtest_filter="-$skip" --gtest_brief=1
unit=$SECONDS

(cd "$build" && ctest -L fuzz --output-on-failure)
echo "sanitize-tests: build $((built - start)) s, unit tests under ASan+UBSan $((unit - built)) s," \
     "fuzz targets $((SECONDS - unit)) s"
