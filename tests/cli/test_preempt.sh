#!/usr/bin/env bash
# Stopping a run through a launcher and before a job's end (issue 16 failure 6, issue 17):
#  - SIGTERM to `mpirun -np 2 polyllama pretrain`, with OMPI_MCA_odls_base_sigkill_timeout set (Open MPI passes
#    SIGTERM on that long after it got it, and SIGKILLs as long after that): a checkpoint, status.json "stopped" naming SIGTERM, no .tmp left, and the resumed run ends with the
#    uninterrupted run's model.h5, optim.h5 and metrics.jsonl, byte for byte;
#  - --exit-before with the job's end from SLURM_JOB_END_TIME half a run away: exit 3, status "stopped" saying
#    walltime, stopped before the deadline, and resuming is exact too;
#  - bad values and an end already too close exit 1 naming the flag or variable; no known end only warns.
# Skips (77) without mpirun.
# Usage: test_preempt.sh POLYLLAMA_BINARY
source "$(dirname "$0")/lib.sh" "$@"
command -v mpirun >/dev/null || { echo "no mpirun: skipped"; exit 77; }
if [[ $(id -u) -eq 0 ]]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
export OMP_NUM_THREADS=1
mpi=(mpirun -np 2 --oversubscribe --bind-to none)
unset SLURM_JOB_END_TIME

ledger_text "$work/text.txt" 300
"$bin" tokenizer train --input "$work/text.txt" --vocab-size 320 --out "$work/tok.model" >/dev/null || exit 1
"$bin" init --run-dir "$work/init" --tokenizer "$work/tok.model" --preset tiny --seed 3 >/dev/null || exit 1
# Long enough (a few seconds) that a signal sent at the second checkpoint arrives well before the end.
steps=1200
args=(--data "$work/text.txt" --blank-line-docs --seq-len 48 --micro-batch 4 --global-batch 8
      --save-interval 20 --keep-last 3 --log-interval 40 --warmup-steps 5 --lr 2e-3 --threads 1 --eval-batches 2)
last=$(printf 'step_%08d' "$steps")
state() { sed -n 's/.*"state":"\([a-z]*\)".*/\1/p' "$1/status.json"; }
same_as_uninterrupted() {  # RUN WHAT
  local f
  for f in model.h5 optim.h5; do
    cmp -s "$work/A/ckpt/$last/$f" "$1/ckpt/$last/$f" \
      && ok "$2: $f bitwise the uninterrupted run's" || bad "$2: $f differs from the uninterrupted run's"
  done
  cmp -s "$work/A/metrics.jsonl" "$1/metrics.jsonl" && ok "$2: metrics.jsonl identical" \
    || bad "$2: metrics differ: $(diff "$work/A/metrics.jsonl" "$1/metrics.jsonl" | head -4)"
}

cp -r "$work/init" "$work/A"
t0=$SECONDS
"${mpi[@]}" "$bin" pretrain --run-dir "$work/A" "${args[@]}" --steps "$steps" > "$work/A.log" 2>&1 \
  || { bad "uninterrupted run: $(tail -3 "$work/A.log")"; finish; exit 1; }
run_s=$((SECONDS - t0))
echo "uninterrupted run: $run_s s"

# SIGTERM to mpirun. Open MPI 4.1 sends the ranks SIGCONT at once, SIGTERM odls_base_sigkill_timeout seconds later
# and SIGKILL as long again after that (measured; 1 s by default): with 2 s the ranks hear SIGTERM 2 s after mpirun
# and have 2 s to finish the step and save.
cp -r "$work/init" "$work/T"
OMPI_MCA_odls_base_sigkill_timeout=2 "${mpi[@]}" "$bin" pretrain --run-dir "$work/T" "${args[@]}" --steps "$steps" > "$work/T.log" 2>&1 &
pid=$!
while kill -0 $pid 2>/dev/null; do
  step=$(sed 's/step_0*//' "$work/T/ckpt/latest" 2>/dev/null || echo 0)
  if [[ ${step:-0} -ge 40 ]]; then kill -TERM $pid; break; fi
  sleep 0.02
done
wait $pid; rc=$?
[[ $(state "$work/T") == stopped ]] && grep -q '"reason":"SIGTERM: saved a checkpoint at step' "$work/T/status.json" \
  && ok "SIGTERM to mpirun (rc $rc): status.json stopped: $(sed 's/.*"step":\([0-9]*\).*/step \1/' "$work/T/status.json")" \
  || bad "SIGTERM to mpirun (rc $rc): $(cat "$work/T/status.json") $(tail -3 "$work/T.log")"
[[ -d $work/T/ckpt/$last ]] && bad "the run ended before SIGTERM arrived (make it longer)"
ls "$work/T/ckpt" | grep -q '\.tmp$' && bad "a .tmp checkpoint was left" || ok "no .tmp checkpoint left"
"${mpi[@]}" "$bin" pretrain --run-dir "$work/T" "${args[@]}" --steps "$steps" > "$work/T2.log" 2>&1 && [[ $(state "$work/T") == done ]] \
  || bad "resume after SIGTERM: $(tail -3 "$work/T2.log")"
same_as_uninterrupted "$work/T" "SIGTERM through mpirun, resumed"

# --exit-before: the end half a run away, from SLURM_JOB_END_TIME; 3 s of margin.
cp -r "$work/init" "$work/W"
end=$(( $(date +%s) + 3 + (run_s + 1) / 2 ))
t0=$(date +%s)
SLURM_JOB_END_TIME=$end "${mpi[@]}" "$bin" pretrain --run-dir "$work/W" "${args[@]}" --steps "$steps" --exit-before 0.05 \
  > "$work/W.log" 2>&1
rc=$? t1=$(date +%s)
# mpirun reports a rank's exit 3 as its own nonzero code; status.json says what happened.
[[ $(state "$work/W") == stopped ]] && grep -q '"reason":"walltime: the job ends at' "$work/W/status.json" \
  && ok "--exit-before: stopped (mpirun rc $rc): $(sed 's/.*"step":\([0-9]*\).*/step \1/' "$work/W/status.json")" \
  || bad "--exit-before: $(cat "$work/W/status.json") $(tail -3 "$work/W.log")"
grep -q "the job ends at .* (SLURM_JOB_END_TIME)" "$work/W.log" && ok "the end was read from SLURM_JOB_END_TIME" \
  || bad "no SLURM_JOB_END_TIME line"
# The ranks' stop is status.json's time (whole seconds); mpirun itself then takes up to 2 x its kill timeout (1 s by
# default) to reap the job after a rank's exit 3, which docs/jobs.md puts inside EXIT_BEFORE.
stopped_at=$(date -d "$(sed -n 's/.*"time":"\([^"]*\)".*/\1/p' "$work/W/status.json")" +%s)
((stopped_at <= end - 3)) && ok "the ranks stopped $((end - stopped_at)) s before the job's end (margin 3 s; mpirun exited $((t1 - stopped_at)) s later)" \
  || bad "the ranks stopped at $stopped_at, the deadline was $((end - 3))"
"$bin" pretrain --run-dir "$work/S" --init-from "$work/init/ckpt/step_00000000" "${args[@]}" --steps 2 --exit-before 5 \
  --job-end "$(( $(date +%s) + 3600 ))" > /dev/null 2>&1
[[ $? -eq 0 ]] && ok "single process, end far away: trains to the end, exit 0" || bad "far end"
"${mpi[@]}" "$bin" pretrain --run-dir "$work/W" "${args[@]}" --steps "$steps" > "$work/W2.log" 2>&1 && [[ $(state "$work/W") == done ]] \
  || bad "resume after --exit-before: $(tail -3 "$work/W2.log")"
same_as_uninterrupted "$work/W" "--exit-before, resumed"

# One process, exit code 3 itself.
cp -r "$work/init" "$work/one"
"$bin" pretrain --run-dir "$work/one" "${args[@]}" --steps "$steps" --exit-before 1 --job-end $(( $(date +%s) + 61 + run_s / 2 )) \
  > "$work/one.log" 2>&1
rc=$?
[[ $rc -eq 3 && $(state "$work/one") == stopped ]] && ok "one process: exit 3, status stopped" \
  || bad "one process: rc $rc, $(cat "$work/one/status.json")"

now=$(date +%s)
expect_fail 1 "--exit-before 5 minutes: the job ends at .* \(--job-end\), in [0-9]+ s, so no step would fit" -- \
  "$bin" pretrain --run-dir "$work/E1" --init-from "$work/init/ckpt/step_00000000" "${args[@]}" --steps "$steps" --exit-before 5 \
  --job-end $((now + 60))
expect_fail 1 "--exit-before -1: expected minutes >= 0" -- \
  "$bin" pretrain --run-dir "$work/E2" --init-from "$work/init/ckpt/step_00000000" "${args[@]}" --steps "$steps" --exit-before -1
expect_fail 1 "SLURM_JOB_END_TIME=soon: expected the job's end in seconds since the epoch" -- \
  env SLURM_JOB_END_TIME=soon "$bin" pretrain --run-dir "$work/E3" --init-from "$work/init/ckpt/step_00000000" \
  "${args[@]}" --steps "$steps" --exit-before 5
"$bin" pretrain --run-dir "$work/E4" --init-from "$work/init/ckpt/step_00000000" "${args[@]}" --steps 2 \
  --exit-before 5 > "$work/E4.log" 2>&1 && grep -q "the job's end is unknown, so it is not used" "$work/E4.log" \
  && ok "no job end known: a warning, and the run trains" || bad "no job end: $(tail -3 "$work/E4.log")"
finish
