#!/usr/bin/env bash
# Long fuzzing runs of every libFuzzer target (docs/fuzzing.md): builds them (clang-14, ASan + UBSan + libFuzzer,
# CPU only) into ${FUZZ_BUILD_DIR:-build-fuzz}, runs each for SECONDS with JOBS parallel workers over a corpus kept
# in WORK_DIR (grown run after run; the committed seeds of tests/fuzz/corpus/ are read, never written), and prints
# per target the executions, the corpus size and any finding with the command that reproduces it.
#
# Usage: tools/fuzz.sh [SECONDS_PER_TARGET [JOBS [TARGET_REGEX]]]   (defaults 600, 1, every target)
#   WORK_DIR (default fuzz-work) keeps <target>/corpus and <target>/artifacts (crash-*, leak-*, timeout-*, oom-*).
# Exit 0 when no target found anything, 1 otherwise, 77 when clang-14 or libFuzzer is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-600}
jobs=${2:-1}
only=${3:-.}
build=${FUZZ_BUILD_DIR:-build-fuzz}
work=$(realpath -m "${WORK_DIR:-fuzz-work}")

cc=${FUZZ_CC:-clang-14} cxx=${FUZZ_CXX:-clang++-14}
if ! command -v "$cxx" > /dev/null; then
  echo "fuzz: $cxx not found (apt-get install clang-14 libclang-rt-14-dev libomp-14-dev)"
  exit 77
fi
if ! echo 'extern "C" int LLVMFuzzerTestOneInput(const char*, unsigned long) { return 0; }' |
    "$cxx" -x c++ -fsanitize=fuzzer - -o /dev/null 2> /dev/null; then
  echo "fuzz: $cxx cannot link -fsanitize=fuzzer (libFuzzer is in libclang-rt-14-dev)"
  exit 77
fi

launcher=()
command -v ccache > /dev/null && launcher=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
if [[ ! -f "$build/CMakeCache.txt" ]]; then
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER="$cc" -DCMAKE_CXX_COMPILER="$cxx" \
    -DPOLYLLAMA_CUDA=OFF -DPOLYLLAMA_FUZZ=ON "${launcher[@]}" > "$build.configure.log" 2>&1 ||
    { cat "$build.configure.log"; exit 1; }
fi
cmake --build "$build" --target fuzz_all -j"${BUILD_JOBS:-$(nproc)}"

export LSAN_OPTIONS="suppressions=$PWD/tests/fuzz/lsan.supp" OMP_NUM_THREADS=1
# Long runs record no allocation stack per malloc (malloc_context_size=0): 20 % more executions per second
# (fuzz_ceval_mmlu, 30,000 runs, 21.8 s -> 17.1 s); a finding's report then lacks the "allocated/freed by"
# stacks, which its reproduce command (default ASAN_OPTIONS) prints.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:symbolize=1:malloc_context_size=0}"

targets=$(sed -n 's/^pl_fuzz_target(\(fuzz_[a-z_0-9]*\).*/\1/p' tests/fuzz/CMakeLists.txt | grep -E "$only")
failed=0
summary=()
for t in $targets; do
  dict=$(sed -n "s/^pl_fuzz_target($t DICT \([^ ]*\).*/\1/p" tests/fuzz/CMakeLists.txt)
  if out=$(tests/fuzz/run_fuzz_target.sh "$PWD/$build/tests/fuzz/$t" "$seconds" "$PWD/tests/fuzz/corpus/$t" \
             "$work/$t" "${dict:+$PWD/tests/fuzz/$dict}" "$jobs"); then
    summary+=("$(echo "$out" | head -n 1)")
  else
    failed=1
    echo "$out"
    summary+=("$(echo "$out" | head -n 1)  FINDING")
  fi
done
echo "fuzz: ${seconds}s per target, $jobs job(s), corpora in $work"
printf '  %s\n' "${summary[@]}"
exit $failed
