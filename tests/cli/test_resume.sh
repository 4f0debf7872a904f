#!/usr/bin/env bash
# Exact resume: a run killed with SIGKILL at an arbitrary moment (perhaps mid-save) and resumed from
# ckpt/latest ends with the same bytes in model.h5 and optim.h5, and the same metrics.jsonl, as a run that was
# never interrupted. SIGTERM instead makes the run save and exit 3, and resuming that is exact too.
# Usage: test_resume.sh POLYLLAMA_BINARY
source "$(dirname "$0")/lib.sh" "$@"

ledger_text "$work/text.txt" 300
"$bin" tokenizer train --input "$work/text.txt" --vocab-size 320 --out "$work/tok.model" >/dev/null || exit 1
"$bin" init --run-dir "$work/init" --tokenizer "$work/tok.model" --preset tiny --seed 3 >/dev/null || exit 1
args=(--data "$work/text.txt" --blank-line-docs --seq-len 48 --micro-batch 8 --global-batch 16 --steps 60
      --save-interval 4 --eval-interval 20 --log-interval 10 --warmup-steps 5 --lr 2e-3 --threads 2)

cp -r "$work/init" "$work/A"
"$bin" pretrain --run-dir "$work/A" "${args[@]}" >/dev/null || { bad "uninterrupted run"; exit 1; }

# The same run, killed as soon as a checkpoint past step 20 exists.
cp -r "$work/init" "$work/B"
"$bin" pretrain --run-dir "$work/B" "${args[@]}" >/dev/null 2>&1 &
pid=$!
while kill -0 $pid 2>/dev/null; do
  step=$(sed 's/step_0*//' "$work/B/ckpt/latest" 2>/dev/null || echo 0)
  if [[ ${step:-0} -ge 20 ]]; then kill -9 $pid; break; fi
  sleep 0.005
done
wait $pid 2>/dev/null
killed_at=$(cat "$work/B/ckpt/latest")
if [[ -d $work/B/ckpt/step_00000060 ]]; then bad "the run finished before it could be killed (make it longer)"; fi
"$bin" pretrain --run-dir "$work/B" "${args[@]}" > "$work/B.log" || bad "resume after SIGKILL"
grep -q "resumed from" "$work/B.log" && ok "killed with SIGKILL at $killed_at, resumed" || bad "no resume: $(cat "$work/B.log")"

# Stopped politely: SIGTERM saves a checkpoint and exits 3.
cp -r "$work/init" "$work/C"
"$bin" pretrain --run-dir "$work/C" "${args[@]}" > "$work/C1.log" 2>&1 &
pid=$!
while kill -0 $pid 2>/dev/null; do
  step=$(sed 's/step_0*//' "$work/C/ckpt/latest" 2>/dev/null || echo 0)
  if [[ ${step:-0} -ge 12 ]]; then kill -TERM $pid; break; fi
  sleep 0.005
done
wait $pid; rc=$?
[[ $rc -eq 3 ]] && ok "SIGTERM: exit 3 after a clean checkpoint ($(cat "$work/C/ckpt/latest"))" || bad "SIGTERM exit code $rc"
"$bin" pretrain --run-dir "$work/C" "${args[@]}" > /dev/null || bad "resume after SIGTERM"

for run in B C; do
  for f in model.h5 optim.h5; do
    cmp -s "$work/A/ckpt/step_00000060/$f" "$work/$run/ckpt/step_00000060/$f" \
      && ok "run $run: $f bitwise identical to the uninterrupted run" || bad "run $run: $f differs"
  done
  cmp -s "$work/A/metrics.jsonl" "$work/$run/metrics.jsonl" \
    && ok "run $run: metrics.jsonl (loss, lr, grad norm per step) identical" \
    || bad "run $run: metrics differ: $(diff "$work/A/metrics.jsonl" "$work/$run/metrics.jsonl" | head -5)"
done
# --keep-last was not given, so every checkpoint is kept; no .tmp directory survives.
ls "$work/B/ckpt" | grep -q '\.tmp$\|\.old$' && bad "a temporary checkpoint directory was left behind" || ok "no temporary directories left"

finish
