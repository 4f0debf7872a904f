#!/usr/bin/env bash
# Reliability of training runs (issue 16; docs/reliability.md has the table): non-finite steps are skipped and
# stop the run after --max-bad-steps with the last good checkpoint as `latest`, never pruned; nonsensical flags
# exit 1 naming flag and value; trained runs are never overwritten (init, --init-from) without --overwrite; a
# missing or broken `latest` is rebuilt from the newest intact step; stale step_*.tmp directories are removed; a
# second run on a locked directory exits 1 naming host and pid; RUN/status.json says done, stopped or failed.
# Each check failed on the code before issue 16 (exit 0 with NaN checkpoints, flags accepted, init overwriting,
# "run polyllama init" advice, .tmp kept, no lock, no status.json).
# Usage: test_reliability.sh POLYLLAMA_BINARY
source "$(dirname "$0")/lib.sh" "$@"
export OMP_NUM_THREADS=1

ledger_text "$work/text.txt" 200
"$bin" tokenizer train --input "$work/text.txt" --vocab-size 320 --out "$work/tok.model" >/dev/null || exit 1
"$bin" init --run-dir "$work/init" --tokenizer "$work/tok.model" --preset tiny --seed 3 >/dev/null || exit 1
args=(--data "$work/text.txt" --blank-line-docs --seq-len 32 --micro-batch 4 --log-interval 5 --warmup-steps 0
      --threads 1)
state() { sed -n 's/.*"state":"\([a-z]*\)".*/\1/p' "$1/status.json" 2>/dev/null; }
latest() { cat "$1/ckpt/latest" 2>/dev/null; }

# ---- non-finite training: skipped, counted, stopped with exit 2; latest is finite and kept ----
cp -r "$work/init" "$work/nf"
"$bin" pretrain --run-dir "$work/nf" "${args[@]}" --lr 1e6 --min-lr 0 --steps 40 --save-interval 1 --keep-last 1 \
  --max-bad-steps 3 > "$work/nf.log" 2>&1
rc=$?
[[ $rc -eq 2 ]] && ok "--lr 1e6: exit 2" || bad "--lr 1e6: exit $rc: $(tail -5 "$work/nf.log")"
grep -q "not finite, the update is skipped (1 in a row" "$work/nf.log" && ok "a non-finite step is skipped and logged" \
  || bad "no skip warning: $(tail -5 "$work/nf.log")"
grep -q "3 steps in a row (.*) had a non-finite loss or gradient norm (--max-bad-steps 3); stopped without saving" \
  "$work/nf.log" && ok "stopped after --max-bad-steps 3" || bad "no stop message: $(tail -3 "$work/nf.log")"
grep -q '"skipped":true' "$work/nf/metrics.jsonl" && grep -q '"skipped_steps":3' "$work/nf/metrics.jsonl" \
  && ok "metrics.jsonl marks skipped steps and counts them" || bad "metrics: $(tail -3 "$work/nf/metrics.jsonl")"
good=$(latest "$work/nf")
first_bad=$(grep -m1 '"skipped":true' "$work/nf/metrics.jsonl" | sed 's/.*"step":\([0-9]*\).*/\1/')
[[ -n $good && -f $work/nf/ckpt/$good/model.h5 && $((10#${good#step_})) -lt $first_bad ]] \
  && ok "latest ($good) is from before the first skipped step ($first_bad) and --keep-last 1 kept it" \
  || bad "latest '$good', first skipped step '$first_bad': $(ls "$work/nf/ckpt")"
[[ $(ls "$work/nf/ckpt" | grep -c '^step_') -eq 1 ]] && ok "--keep-last 1: one checkpoint left" \
  || bad "checkpoints left: $(ls "$work/nf/ckpt")"
grep -q "non-finite loss" "$work/nf/status.json" && [[ $(state "$work/nf") == failed ]] \
  && ok "status.json: failed, with the reason" || bad "status.json: $(cat "$work/nf/status.json")"
# Loading for training refuses non-finite weights, so a resume with a sane rate proves latest is finite.
"$bin" pretrain --run-dir "$work/nf" "${args[@]}" --lr 1e-3 --steps $((10#${good#step_} + 1)) > "$work/nf2.log" 2>&1 \
  && grep -q "resumed from .*$good" "$work/nf2.log" && ok "latest loads for training (all its weights are finite)" \
  || bad "resume of latest: $(tail -3 "$work/nf2.log")"

# ---- flags that make no sense: exit 1 naming flag and value ----
for f in "--lr inf" "--lr nan" "--lr -1" "--min-lr nan" "--weight-decay nan" "--weight-decay inf" "--grad-clip nan" \
         "--grad-clip -1" "--adam-eps inf" "--max-bad-steps 0"; do
  set -- $f
  expect_fail 1 "\\$1.*$2|$2.*\\$1" -- "$bin" pretrain --run-dir "$work/flags" --init-from "$work/init/ckpt/step_00000000" \
    "${args[@]}" --steps 2 $f
done
for t in 0 -3 100000; do
  expect_fail 1 "--threads: $t (must be at least 1|is more than 4 x the)" -- "$bin" pretrain --run-dir "$work/flags" --data "$work/text.txt" --threads "$t"
  expect_fail 1 "--threads: $t (must be at least 1|is more than 4 x the)" -- "$bin" generate --ckpt "$work/init" --prompt hi --threads "$t"
done
expect_fail 1 "--threads: 100000 is more than 4 x the" -- "$bin" data --tokenizer "$work/tok.model" --input "$work/text.txt" \
  --out "$work/ds" --threads 100000
expect_fail 1 "--init-std inf" -- "$bin" init --run-dir "$work/r" --tokenizer "$work/tok.model" --init-std inf

# ---- runs are never overwritten ----
cp -r "$work/init" "$work/tr"
"$bin" pretrain --run-dir "$work/tr" "${args[@]}" --lr 1e-3 --steps 4 --save-interval 2 > /dev/null 2>&1 \
  && [[ $(state "$work/tr") == done ]] && grep -q '"step":4' "$work/tr/status.json" \
  && ok "status.json: done at step 4" || bad "trained run / status: $(cat "$work/tr/status.json")"
expect_fail 1 "already holds 3 checkpoints, step_00000000 to step_00000004 \(latest: step_00000004\)" -- \
  "$bin" init --run-dir "$work/tr" --tokenizer "$work/tok.model" --preset tiny
[[ $(latest "$work/tr") == step_00000004 && -d $work/tr/ckpt/step_00000004 ]] && ok "the refused init changed nothing" \
  || bad "init touched the run: $(ls "$work/tr/ckpt")"
expect_fail 1 "would be ignored" -- "$bin" pretrain --run-dir "$work/init" --init-from "$work/tr/ckpt/step_00000004" \
  "${args[@]}" --steps 6
"$bin" pretrain --run-dir "$work/tr" --init-from "$work/init/ckpt/step_00000000" "${args[@]}" --steps 5 \
  > "$work/req.log" 2>&1 && grep -q "resumed from .*step_00000004 at step 4" "$work/req.log" \
  && ok "a requeued command with --init-from resumes the run" || bad "requeue: $(tail -3 "$work/req.log")"
cp -r "$work/tr" "$work/ow"
"$bin" init --run-dir "$work/ow" --tokenizer "$work/tok.model" --preset tiny --overwrite > "$work/ow.log" 2>&1 \
  && [[ $(latest "$work/ow") == step_00000000 && $(ls "$work/ow/ckpt" | grep -c '^step_') -eq 1 \
        && ! -f $work/ow/metrics.jsonl ]] && ok "init --overwrite starts the run over" \
  || bad "init --overwrite: $(ls "$work/ow/ckpt"; cat "$work/ow.log")"
cp -r "$work/tr" "$work/po"
"$bin" pretrain --run-dir "$work/po" --init-from "$work/init/ckpt/step_00000000" "${args[@]}" --lr 1e-3 --steps 2 \
  --overwrite > "$work/po.log" 2>&1 && [[ $(latest "$work/po") == step_00000002 \
  && $(ls "$work/po/ckpt" | grep -c '^step_') -eq 1 && $(grep -c '"loss"' "$work/po/metrics.jsonl") -eq 2 ]] \
  && grep -q "removed step_00000000, step_00000002, step_00000004, step_00000005, latest, metrics.jsonl" "$work/po.log" \
  && ok "pretrain --init-from --overwrite starts the run over, saying what it removed" \
  || bad "pretrain --overwrite: $(ls "$work/po/ckpt"; cat "$work/po.log")"

# ---- a missing or broken latest is rebuilt from the newest intact step; stale .tmp directories go ----
cp -r "$work/tr" "$work/lt"
rm "$work/lt/ckpt/latest"
: > "$work/lt/ckpt/step_00000005/model.h5"  # the newest step is broken: skipped
mkdir -p "$work/lt/ckpt/step_00000003.tmp"
head -c 1048576 /dev/zero > "$work/lt/ckpt/step_00000003.tmp/model.h5"
"$bin" pretrain --run-dir "$work/lt" "${args[@]}" --lr 1e-3 --steps 6 > "$work/lt.log" 2>&1
rc=$?
[[ $rc -eq 0 ]] && grep -q "latest is missing; skipped step_00000005, which does not load.*rebuilt it from step_00000004" \
  "$work/lt.log" && grep -q "resumed from .*step_00000004 at step 4" "$work/lt.log" \
  && ok "missing latest rebuilt from step_00000004 (the broken step 5 skipped), said in the log" \
  || bad "rebuild: rc $rc: $(cat "$work/lt.log")"
grep -q "removed .*step_00000003.tmp (1.0 MiB" "$work/lt.log" && [[ ! -e $work/lt/ckpt/step_00000003.tmp ]] \
  && ok "stale step_00000003.tmp removed, with its size" || bad "stale .tmp: $(ls "$work/lt/ckpt")"
mkdir -p "$work/broken/ckpt/step_00000007"
expect_fail 1 "holds 1 checkpoint, step_00000007 \(no latest\) but none of them can be resumed" -- \
  "$bin" pretrain --run-dir "$work/broken" --init-from "$work/init/ckpt/step_00000000" "${args[@]}" --steps 2
grep -rq "polyllama init" <("$bin" pretrain --run-dir "$work/broken" "${args[@]}" 2>&1) \
  && bad "advises init on a run with step directories" || ok "no advice to run init where step directories exist"

# ---- the lock; SIGUSR1 -> exit 3 and status stopped ----
cp -r "$work/init" "$work/lk"
"$bin" pretrain --run-dir "$work/lk" "${args[@]}" --lr 1e-3 --steps 100000 --save-interval 50 > "$work/lk.log" 2>&1 &
pid=$!
for _ in $(seq 1 300); do [[ $(state "$work/lk") == running ]] && break; sleep 0.1; done
expect_fail 1 "in use by another polyllama process \(host $(hostname), pid $pid" -- \
  "$bin" pretrain --run-dir "$work/lk" "${args[@]}" --steps 3
expect_fail 1 "in use by another polyllama process \(host $(hostname), pid $pid" -- \
  "$bin" init --run-dir "$work/lk" --tokenizer "$work/tok.model" --overwrite
sleep 1
kill -USR1 $pid
wait $pid
rc=$?
[[ $rc -eq 3 && $(state "$work/lk") == stopped ]] && grep -q SIGUSR1 "$work/lk/status.json" \
  && ok "SIGUSR1: exit 3, status.json stopped ($(latest "$work/lk"))" || bad "SIGUSR1: rc $rc $(cat "$work/lk/status.json")"
"$bin" pretrain --run-dir "$work/lk" "${args[@]}" --lr 1e-3 --steps "$((10#$(latest "$work/lk" | sed 's/step_//') + 1))" \
  > /dev/null 2>&1 && [[ $(state "$work/lk") == done ]] && ok "the lock died with its process; resumed to done" \
  || bad "rerun after the stop: $(cat "$work/lk/status.json")"

# ---- --exit-before: saved and stopped (exit 3) before the job's end; too late a start is refused ----
cp -r "$work/init" "$work/wt"
end=$(( $(date +%s) + 63 ))
"$bin" pretrain --run-dir "$work/wt" "${args[@]}" --lr 1e-3 --steps 100000 --job-end "$end" --exit-before 1 \
  > "$work/wt.log" 2>&1
rc=$?
now=$(date +%s)
# Stopped with the margin (60 s) kept: the run ended at least ~55 s before the job's end, having trained and saved.
[[ $rc -eq 3 && $(state "$work/wt") == stopped ]] && grep -q walltime "$work/wt/status.json" \
  && (( end - now >= 55 )) && [[ $(latest "$work/wt") != step_00000000 ]] \
  && ok "--exit-before 1: exit 3 at $(latest "$work/wt"), $((end - now)) s before the job's end" \
  || bad "--exit-before: rc $rc, $((end - now)) s left, $(cat "$work/wt/status.json")"
expect_fail 1 "no step would fit" -- "$bin" pretrain --run-dir "$work/wt" "${args[@]}" --steps 100000 \
  --job-end "$(( $(date +%s) + 30 ))" --exit-before 1
SLURM_JOB_END_TIME=soon expect_fail 1 "SLURM_JOB_END_TIME=soon: expected" -- "$bin" pretrain --run-dir "$work/wt" \
  "${args[@]}" --steps 100000 --exit-before 1

finish
