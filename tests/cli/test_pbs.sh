#!/usr/bin/env bash
# The PBS job scripts without a PBS server (none is packaged for Debian): `bash -n` on every job script; jobs/submit
# --scheduler pbs against a fake qsub on PATH that records its arguments (resources, walltime, rerunnable,
# the afterok chain, PBS Pro and Torque forms); then each stage script run as PBS runs it, with PBS_JOBID,
# PBS_NODEFILE, PBS_O_WORKDIR, NCPUS and PBS_WALLTIME set: pretrain given a walltime that ends mid-run stops itself
# through --exit-before (status.json "stopped", walltime) and calls qrerun (a fake that records it), its rerun
# finishes, and every stage after it runs on the previous one's outputs; a rerun stage skips itself.
# Skips (77) without mpirun.
# Usage: test_pbs.sh POLYLLAMA_BINARY
source "$(dirname "$0")/lib.sh" "$@"
root=$(cd "$(dirname "$0")/../.." && pwd)

n=0 broken=""
for f in "$root"/jobs/submit "$root"/jobs/*.sh "$root"/jobs/*/*.sh; do
  n=$((n + 1))
  bash -n "$f" 2>/dev/null || broken+=" $f"
done
[[ -z $broken ]] && ok "bash -n: $n job scripts parse" || bad "bash -n fails on:$broken"
command -v mpirun >/dev/null || { echo "no mpirun: skipped"; finish; exit 77; }
if [[ $(id -u) -eq 0 ]]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
export OMP_NUM_THREADS=1

# Fake PBS commands: qsub prints an id and records its arguments; qrerun records; qstat knows nothing (as on a
# node where it cannot reach the server), so the scripts fall back to PBS_WALLTIME and their own start.
mkdir -p "$work/bin"
printf '%s\n' '#!/usr/bin/env bash' 'echo "$*" >> "$FAKE_PBS_LOG"; n=$(wc -l < "$FAKE_PBS_LOG"); echo "$((100 + n)).fakepbs"' \
  > "$work/bin/qsub"
printf '%s\n' '#!/usr/bin/env bash' 'echo "qrerun $*" >> "$FAKE_PBS_LOG.rerun"' > "$work/bin/qrerun"
printf '%s\n' '#!/usr/bin/env bash' 'exit 1' > "$work/bin/qstat"
chmod +x "$work/bin/"*
export PATH=$work/bin:$PATH FAKE_PBS_LOG=$work/qsub.log

ledger_text "$work/text.txt" 200
for i in $(seq 1 40); do
  echo "{\"instruction\": \"How many sacks on day $i?\", \"output\": \"$((i % 9)) sacks.\"}"
done > "$work/sft.jsonl"
cat > "$work/pbs.conf" <<EOF
POLYLLAMA=$bin
CORPUS="$work/text.txt"
DATA_ARGS="--blank-line-docs"
SFT_DATA="$work/sft.jsonl"
WORK=$work/W
VOCAB=320
INIT_ARGS="--preset tiny --seed 3"
SCHEDULER=pbs
NODES=1 RANKS_PER_NODE=2 CPUS_PER_RANK=1 TP=1
MPIRUN_ARGS="--oversubscribe --bind-to none"
QUEUE=workq ACCOUNT=proj42
TIME_TOKENIZER=5 TIME_DATA=5 TIME_PRETRAIN=90 TIME_SFT=5 TIME_EVAL=5
EXIT_BEFORE=1
REQUEUE_WAIT=0
KILL_GRACE=3                # mpirun waits up to twice this after the ranks exit 3 (its SIGCONT/SIGTERM/SIGKILL steps)
PRETRAIN_ARGS="--seq-len 64 --micro-batch 8 --global-batch 16 --steps 100000 --save-interval 10 --log-interval 10 --warmup-steps 5 --lr 2e-3 --eval-batches 2"
SFT_TEMPLATE=plain
SFT_ARGS="--seq-len 96 --micro-batch 2 --steps 6 --log-interval 3 --val-every 0"
EVAL_ARGS="--tasks ppl --ppl-files ledger:$work/text.txt --ppl-max-docs 4 --ppl-seq 32"
EOF

# --- jobs/submit's qsub lines ----------------------------------------------------------------------------------
out=$("$root/jobs/submit" "$work/pbs.conf" 2>&1) || bad "jobs/submit: $out"
[[ $(wc -l < "$work/qsub.log") -eq 5 ]] && ok "5 qsub calls" || bad "qsub calls: $(cat "$work/qsub.log")"
line() { sed -n "$1p" "$work/qsub.log"; }
[[ $(line 1) == "-N pl-tokenizer -j oe -o $work/W/logs/pl-tokenizer.out -l walltime=0:05:00 -v POLYLLAMA_CONF=$work/pbs.conf,POLYLLAMA_JOBS=$root/jobs -l select=1:ncpus=1:mpiprocs=1 -q workq -A proj42 $root/jobs/pbs/tokenizer.sh" ]] \
  && ok "tokenizer: one rank, walltime, config and jobs dir passed, queue and account" || bad "tokenizer qsub: $(line 1)"
[[ $(line 2) == *"-l select=1:ncpus=2:mpiprocs=2 -W depend=afterok:101.fakepbs"*"/jobs/pbs/data.sh" ]] \
  && ok "data: 2 ranks, after the tokenizer job" || bad "data qsub: $(line 2)"
[[ $(line 3) == *"-l walltime=1:30:00"*"-r y -W depend=afterok:102.fakepbs"*"/jobs/pbs/pretrain.sh" ]] \
  && ok "pretrain: 90 minutes, rerunnable, after data" || bad "pretrain qsub: $(line 3)"
[[ $(line 4) == *"-r y -W depend=afterok:103.fakepbs"*"/jobs/pbs/sft.sh" && $(line 5) == *"-W depend=afterok:104.fakepbs"*"/jobs/pbs/eval.sh" ]] \
  && ok "sft after pretrain, eval after sft" || bad "sft/eval qsub: $(line 4) | $(line 5)"
grep -q "^eval 105.fakepbs$" "$work/W/jobs.txt" && ok "WORK/jobs.txt lists the ids" || bad "jobs.txt: $(cat "$work/W/jobs.txt")"
rm "$work/qsub.log"
PBS_FLAVOR=torque "$root/jobs/submit" "$work/pbs.conf" > /dev/null 2>&1
grep -q -- "-l nodes=1:ppn=2 .*pretrain.sh" "$work/qsub.log" && ok "Torque: -l nodes=1:ppn=2" || bad "torque: $(line 3)"
# The config is sourced by jobs/submit, so a bad setting goes into a copy of it (the environment would be overridden).
{ cat "$work/pbs.conf"; echo "TP=3"; } > "$work/tp3.conf"
{ cat "$work/pbs.conf"; echo "SFT_DATA=/nonexistent"; } > "$work/nosft.conf"
expect_fail 1 "TP=3 must divide RANKS_PER_NODE=2" -- "$root/jobs/submit" "$work/tp3.conf"
expect_fail 1 "input /nonexistent is not readable" -- "$root/jobs/submit" "$work/nosft.conf"

# --- the stage scripts, run as PBS runs them --------------------------------------------------------------
printf 'localhost\nlocalhost\n' > "$work/nodefile"
stage() {  # STAGE WALLTIME_SECONDS: runs jobs/pbs/STAGE.sh in a PBS-like environment; the log in $work/STAGE.log
  (cd / && env PBS_JOBID="7$RANDOM.fakepbs" PBS_NODEFILE="$work/nodefile" PBS_O_WORKDIR="$work" NCPUS=2 \
    PBS_WALLTIME="$2" POLYLLAMA_CONF="$work/${CONF:-pbs.conf}" POLYLLAMA_JOBS="$root/jobs" \
    bash "$root/jobs/pbs/$1.sh" >> "$work/$1.log" 2>&1)
}
stage tokenizer 300 && stage data 300 && [[ -f $work/W/data/metadata.json ]] \
  && ok "tokenizer and data stages: WORK/data written" || bad "tokenizer/data: $(tail -n 3 "$work/tokenizer.log" "$work/data.log")"
# A walltime of 75 s with EXIT_BEFORE=1: the run must be saved and gone 15 s after the script started.
t0=$(date +%s)
stage pretrain 75; rc=$?
t1=$(date +%s)
status=$(cat "$work/W/pretrain/status.json" 2>/dev/null)
[[ $status == *'"state":"stopped"'* && $status == *'walltime: the job ends at'* ]] \
  && ok "pretrain stopped by --exit-before after $((t1 - t0)) s: $(grep -o 'stopped at step [0-9]*' "$work/pretrain.log")" \
  || bad "pretrain under a short walltime: $status $(tail -n 3 "$work/pretrain.log")"
# Planned to end by 15 s (75 - 60); a loaded machine's launch may add some, but it must be well before 75 s.
((t1 - t0 <= 30)) && ok "gone $((t1 - t0)) s after the start, the walltime being 75 s" || bad "took $((t1 - t0)) s"
grep -q "^qrerun 7[0-9]*.fakepbs$" "$work/qsub.log.rerun" && ((rc != 0)) \
  && ok "qrerun \$PBS_JOBID called; the script did not report success" || bad "no qrerun (rc $rc)"
# The rerun, told to train five steps more than the stop (a copy of the config), resumes and finishes.
stopped=$(sed -n 's/.*"step":\([0-9]*\).*/\1/p' "$work/W/pretrain/status.json")
sed "s/--steps 100000/--steps $((stopped + 5))/" "$work/pbs.conf" > "$work/more.conf"
CONF=more.conf stage pretrain 3600 && grep -q '"state":"done"' "$work/W/pretrain/status.json" \
  && grep -q "resumed from" "$work/pretrain.log" && ok "the rerun resumed and finished" \
  || bad "rerun: $(tail -n 3 "$work/pretrain.log")"
CONF=more.conf stage sft 300 && CONF=more.conf stage eval 300 && grep -q '"ppl_ledger"' "$work/W/eval/results.json" \
  && ok "sft and eval ran on the previous stages' outputs" || bad "sft/eval: $(tail -n 3 "$work/sft.log" "$work/eval.log")"
stage tokenizer 300 && tail -1 "$work/tokenizer.log" | grep -q "complete and verified" \
  && ok "a finished stage skips itself" || bad "tokenizer rerun: $(tail -2 "$work/tokenizer.log")"
finish
