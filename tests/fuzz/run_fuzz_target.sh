#!/usr/bin/env bash
# Runs one libFuzzer target for a bounded time (ctest's fuzz_* tests, tools/fuzz.sh) and says what it did.
# Usage: run_fuzz_target.sh BINARY SECONDS SEED_DIR WORK_DIR [DICT] [JOBS]
#   SEED_DIR  the committed seeds (tests/fuzz/corpus/<target>), read only
#   WORK_DIR  the corpus the run grows (kept between runs) and crash-*/leak-*/timeout-* files of findings
# Exit 0 when the run ended without a finding; 1 with the finding's file and the command that reproduces it.
set -uo pipefail
bin=$1 seconds=$2 seeds=$3 work=$4 dict=${5:-} jobs=${6:-1}
name=$(basename "$bin")
mkdir -p "$work/corpus" "$work/artifacts"
args=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1
      -artifact_prefix="$work/artifacts/")
[[ -n "$dict" && -f "$dict" ]] && args+=(-dict="$dict")
# libFuzzer's -jobs mode forks workers that each log to fuzz-N.log; one job runs in this process.
if ((jobs > 1)); then args+=(-jobs="$jobs" -workers="$jobs"); fi
# Leaks are findings; the suppression file names third-party leaks only (see it). Hitting the memory limit or a
# slow input are findings too (libFuzzer's own defaults for -error_exitcode).
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:symbolize=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
log="$work/last-run.log"
before=$(ls "$work/artifacts" | wc -l)
( cd "$work" && "$bin" "${args[@]}" "$work/corpus" "$seeds" ) > "$log" 2>&1
rc=$?
# The parent libFuzzer already copies each job's fuzz-N.log into its own output when the job ends ("Job N exited"):
# appending the files again counted every execution twice.
if ((jobs > 1)); then rm -f "$work"/fuzz-*.log; fi
execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | awk '{s += $2} END {print s + 0}')
corpus=$(ls "$work/corpus" | wc -l)
after=$(ls "$work/artifacts" | wc -l)
echo "$name: ${seconds}s, $execs executions, corpus $corpus inputs, rc $rc"
if ((rc != 0 || after > before)); then
  tail -n 60 "$log"
  for f in $(ls -t "$work/artifacts" | head -n $((after - before > 0 ? after - before : 1))); do
    echo "$name: finding $work/artifacts/$f; reproduce: $bin $work/artifacts/$f"
  done
  exit 1
fi
exit 0
