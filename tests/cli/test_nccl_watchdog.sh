#!/usr/bin/env bash
# The NCCL watchdog on real GPUs (issue 16): 2 ranks, member 1 never joins the all-reduce member 0 is in
# (CudaNccl.StuckAllReduceEndsTheJobNamingIt). With POLYLLAMA_NCCL_TIMEOUT=2 the job must end with a non-zero exit
# within 60 s (2 s of timeout, the abort, the launcher's teardown; without the watchdog it hangs until the
# `timeout` below), rank 0's log naming the group and the collective. Skips (77) with fewer than 2 GPUs, without
# mpirun, or on a build without NCCL (the test reports SKIPPED).
# Usage: test_nccl_watchdog.sh POLYLLAMA_TESTS_BINARY
source "$(dirname "$0")/lib.sh" "$@"
command -v mpirun >/dev/null || { echo "no mpirun: skipped"; exit 77; }
gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
((gpus >= 2)) || { echo "$gpus GPU(s): skipped (needs 2)"; exit 77; }
if [[ $(id -u) -eq 0 ]]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
export POLYLLAMA_NCCL_TIMEOUT=2 POLYLLAMA_TEST_STUCK_COLLECTIVE=1

start=$(date +%s)
timeout 120 mpirun --oversubscribe --bind-to none -np 2 -x POLYLLAMA_NCCL_TIMEOUT -x POLYLLAMA_TEST_STUCK_COLLECTIVE \
  "$bin" --gtest_filter=CudaNccl.StuckAllReduceEndsTheJobNamingIt > "$work/log" 2>&1
rc=$? took=$(($(date +%s) - start))
if grep -q 'SKIPPED \]' "$work/log" && ! grep -q 'NCCL watchdog' "$work/log"; then
  echo "skipped: $(grep -m1 -A1 'SKIPPED\|Skipped' "$work/log" | tail -1)"
  exit 77
fi
pattern='NCCL watchdog: .* collective #[0-9]+, all_reduce of 0\.004 MiB f32, has not finished after [0-9]+ s'
if ((rc != 0 && rc != 124 && took < 60)); then ok "the stuck job ended in ${took} s, exit $rc"
else bad "the stuck job: exit $rc after ${took} s (124: still hanging at the timeout)"; fi
if grep -Eq "$pattern" "$work/log"; then ok "the log names it: $(grep -Eo "$pattern" "$work/log" | head -1)"
else bad "no watchdog message naming the all-reduce; the log ends: $(tail -5 "$work/log")"; fi
finish
