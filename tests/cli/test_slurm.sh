#!/usr/bin/env bash
# The Slurm job chain on a real Slurm: this test starts munged, slurmctld and slurmd itself (Debian's slurm-wlm and
# munge; tools/install-deps.sh --with-reference) with a one-node slurm.conf in a scratch directory (4 CPUs declared
# on whatever the machine has, through SlurmdParameters=config_overrides), then
#  1. submits the whole chain with jobs/submit on a tiny model: every job completes, each starts after the one
#     before it ended, every stage's outputs are there; resubmitting skips every stage;
#  2. submits it again (tokenizer and data reused, so those skip) and sends the running pretrain job
#     `scancel --batch --signal=USR1`: the ranks save and exit 3, status.json says stopped, the job requeues
#     itself, runs again and ends with the same model.h5, optim.h5 and metrics.jsonl as the uninterrupted run;
#  2b. `scancel --signal=TERM` to a plain `srun -n 2 polyllama pretrain`: stopped at a checkpoint, resumed bitwise;
#  3. submits a study grid (jobs/study --submit slurm: 3 budgets, 1 SFT size, 16 jobs): every job completes, one
#     pretraining run serves all budgets, SFT starts after it, a resubmission submits only the report.
# It stops the daemons it started by their PIDs, and skips (77) where Slurm or munge is missing or cannot start.
# Usage: test_slurm.sh POLYLLAMA_BINARY
source "$(dirname "$0")/lib.sh" "$@"
root=$(cd "$(dirname "$0")/../.." && pwd)
for tool in munged slurmctld slurmd sbatch squeue scontrol scancel; do
  command -v "$tool" >/dev/null || { echo "no $tool (Debian: slurm-wlm, munge): skipped"; exit 77; }
done
if [[ $(id -u) -eq 0 ]]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
export OMP_NUM_THREADS=1

# --- a one-node cluster of our own --------------------------------------------------------------------------
s=$work/slurm
mkdir -p "$s/state" "$s/spool"
pids=()
stop_daemons() {
  [[ -n ${SLURM_CONF:-} ]] && scancel --quiet --user="$(id -un)" 2>/dev/null
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null
  done
  # SLURM_TEST_KEEP=DIR keeps the chains' logs and run states there (for a failure in CI)
  [[ -n ${SLURM_TEST_KEEP:-} ]] && mkdir -p "$SLURM_TEST_KEEP" && cp -r "$work"/A "$work"/B "$work"/S "$s" "$SLURM_TEST_KEEP"/ 2>/dev/null
  rm -rf "$work"
}
trap stop_daemons EXIT
skip() { echo "$1: skipped"; for f in "$s"/*.log; do [[ -f $f ]] && { echo "== $f"; tail -5 "$f"; }; done; exit 77; }

dd if=/dev/urandom of="$s/munge.key" bs=1024 count=1 status=none && chmod 600 "$s/munge.key"
munged -F -f --socket="$s/munge.sock" --key-file="$s/munge.key" --log-file="$s/munged.log" \
  --pid-file="$s/munged.pid" --seed-file="$s/munged.seed" > "$s/munged.log.out" 2>&1 &
pids+=($!)
for _ in $(seq 1 50); do [[ -S $s/munge.sock ]] && break; sleep 0.1; done
[[ -S $s/munge.sock ]] || skip "munged did not start"

host=$(hostname -s)
user=$(id -un)
port=$((20000 + RANDOM % 20000))
cat > "$s/slurm.conf" <<EOF
ClusterName=pltest
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$port
SlurmdPort=$((port + 1))
AuthType=auth/munge
AuthInfo=socket=$s/munge.sock
CredType=cred/munge
SlurmUser=$user
SlurmdUser=$user
StateSaveLocation=$s/state
SlurmdSpoolDir=$s/spool
SlurmctldPidFile=$s/slurmctld.pid
SlurmdPidFile=$s/slurmd.pid
SlurmctldLogFile=$s/slurmctld.log
SlurmdLogFile=$s/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
SlurmdParameters=config_overrides
ReturnToService=2
KillWait=30
MinJobAge=3600
InactiveLimit=0
NodeName=$host NodeAddr=127.0.0.1 CPUs=4 RealMemory=1000 State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF=$s/slurm.conf
slurmctld -D -i -f "$SLURM_CONF" > "$s/slurmctld.out" 2>&1 &
pids+=($!)
slurmd -D -N "$host" -f "$SLURM_CONF" > "$s/slurmd.out" 2>&1 &
pids+=($!)
for _ in $(seq 1 60); do [[ $(sinfo -h -o %T 2>/dev/null) == idle ]] && break; sleep 0.5; done
[[ $(sinfo -h -o %T 2>/dev/null) == idle ]] || skip "slurmctld/slurmd did not bring the node up"
srun --mpi=list 2>&1 | grep -q pmix || skip "Slurm has no PMIx plugin (srun --mpi=list)"
ok "Slurm $(sinfo --version | cut -d' ' -f2) up: one node, 4 CPUs"

# --- the chain's inputs: a tiny model on a tiny corpus ------------------------------------------------------
ledger_text "$work/text.txt" 200
for i in $(seq 1 40); do
  echo "{\"instruction\": \"How many sacks on day $i?\", \"output\": \"$((i % 9)) sacks.\"}"
done > "$work/sft.jsonl"
write_conf() {  # FILE WORK
  cat > "$1" <<EOF
POLYLLAMA=$bin
CORPUS="$work/text.txt"
DATA_ARGS="--blank-line-docs"
SFT_DATA="$work/sft.jsonl"
SFT_TEMPLATE=plain
WORK=$2
VOCAB=320
INIT_ARGS="--preset tiny --seed 3"
NODES=1 RANKS_PER_NODE=2 CPUS_PER_RANK=1 TP=1 LAUNCHER=srun
TIME_TOKENIZER=5 TIME_DATA=5 TIME_PRETRAIN=10 TIME_SFT=5 TIME_EVAL=5
EXIT_BEFORE=1
PRETRAIN_ARGS="--seq-len 32 --micro-batch 2 --global-batch 4 --steps 160 --save-interval 4 --log-interval 20 --warmup-steps 5 --lr 2e-3 --eval-interval 0 --eval-batches 2"
SFT_ARGS="--seq-len 96 --micro-batch 2 --steps 6 --log-interval 3 --val-every 0"
EVAL_ARGS="--tasks ppl --ppl-files ledger:$work/text.txt --ppl-max-docs 4 --ppl-seq 32"
EOF
}
job_field() { scontrol show job "$1" 2>/dev/null | grep -o "$2=[^ ]*" | head -1 | cut -d= -f2; }
# wait_chain SECONDS ID...: until none of the jobs is pending or running; a requeued job held for its begin time
# (Slurm holds requeued jobs ~2 minutes) is released at once.
wait_chain() {
  local deadline=$((SECONDS + $1)) id left; shift
  while ((SECONDS < deadline)); do
    left=$(squeue -h -j "$(IFS=,; echo "$*")" -o "%i %r" 2>/dev/null)
    [[ -z $left ]] && return 0
    while read -r id reason; do
      [[ $reason == BeginTime ]] && scontrol update JobId="$id" StartTime=now 2>/dev/null
    done <<< "$left"
    sleep 1
  done
  echo "timed out; still queued: $left"; return 1
}
declare -A ids
submit_chain() {  # CONF -> ids[stage]
  local out; out=$("$root/jobs/submit" "$1" 2>&1) || { bad "jobs/submit: $out"; return 1; }
  while read -r st id; do ids[$st]=$id; done <<< "$out"
  [[ ${#ids[@]} -eq 5 ]] || { bad "jobs/submit printed: $out"; return 1; }
}
stages=(tokenizer data pretrain sft eval)

# --- 1. the whole chain, in order ---------------------------------------------------------------------------
write_conf "$work/a.conf" "$work/A"
t0=$SECONDS
submit_chain "$work/a.conf" || { finish; exit 1; }
wait_chain 150 "${ids[@]}" || bad "chain A did not finish"
prev_end=0 order=1
for st in "${stages[@]}"; do
  id=${ids[$st]}
  state=$(job_field "$id" JobState) code=$(job_field "$id" ExitCode)
  [[ $state == COMPLETED && $code == 0:0 ]] && ok "$st job $id: $state, exit $code" \
    || bad "$st job $id: $state $code: $(tail -5 "$work/A/logs/pl-$st-$id.out" 2>/dev/null)"
  start=$(date -d "$(job_field "$id" StartTime)" +%s 2>/dev/null || echo 0)
  end=$(date -d "$(job_field "$id" EndTime)" +%s 2>/dev/null || echo 0)
  ((start >= prev_end)) || order=0
  prev_end=$end
done
((order)) && ok "each job started after the one before it ended" || bad "jobs overlapped"
[[ -s $work/A/tokenizer.model && -f $work/A/data/metadata.json ]] && ok "tokenizer.model and data/ written" \
  || bad "tokenizer or data missing"
grep -q '"state":"done"' "$work/A/pretrain/status.json" && [[ -f $work/A/pretrain/ckpt/step_00000160/model.h5 ]] \
  && ok "pretrain: status done at step 160" || bad "pretrain status: $(cat "$work/A/pretrain/status.json" 2>&1)"
grep -q '"state":"done"' "$work/A/sft/status.json" && ok "sft: status done" || bad "sft status"
grep -q '"ppl_ledger"' "$work/A/eval/results.json" 2>/dev/null && ok "eval: results.json has the perplexity" \
  || bad "eval results: $(ls "$work/A/eval" 2>&1)"
echo "chain A: $((SECONDS - t0)) s"

# Resubmitted: every stage finds its outputs verified and skips.
submit_chain "$work/a.conf" && wait_chain 60 "${ids[@]}"
skipped=0
for st in "${stages[@]}"; do grep -q "complete and verified" "$work/A/logs/pl-$st-${ids[$st]}.out" && skipped=$((skipped + 1)); done
[[ $skipped -eq 5 ]] && ok "resubmitted: all 5 stages skipped as complete" || bad "resubmitted: $skipped of 5 skipped"

# --- 2. pretrain preempted by USR1, requeued, finished exactly --------------------------------------------
mkdir -p "$work/B/.done"
cp -r "$work/A/tokenizer.model" "$work/A/data" "$work/B/"
cp "$work/A/.done/tokenizer" "$work/A/.done/data" "$work/B/.done/"
write_conf "$work/b.conf" "$work/B"
submit_chain "$work/b.conf" || { finish; exit 1; }
pid_job=${ids[pretrain]}
signalled=0
for _ in $(seq 1 1200); do
  step=$(sed 's/step_0*//' "$work/B/pretrain/ckpt/latest" 2>/dev/null || echo 0)
  if [[ ${step:-0} -ge 8 && $(job_field "$pid_job" JobState) == RUNNING ]]; then
    scancel --batch --signal=USR1 "$pid_job" && signalled=1
    break
  fi
  sleep 0.1
done
((signalled)) && ok "pretrain job $pid_job sent USR1 at checkpoint step $step" || bad "never saw pretrain running"
wait_chain 180 "${ids[@]}" || bad "chain B did not finish"
log=$work/B/logs/pl-pretrain-$pid_job.out
grep -q "pretrain stopped at step [0-9]*: SIGUSR1: saved a checkpoint" "$log" \
  && ok "status.json said stopped: $(grep -o 'stopped at step [0-9]*' "$log" | head -1)" || bad "no stop in $log"
grep -q "Exited with exit code 3" "$log" && ok "the ranks exited 3" || bad "no exit code 3 in $log"
[[ $(job_field "$pid_job" Restarts) -ge 1 ]] && grep -q "requeueing this job" "$log" \
  && ok "the job requeued itself ($(job_field "$pid_job" Restarts) restart)" || bad "not requeued: $(tail -5 "$log")"
[[ $(job_field "${ids[eval]}" JobState) == COMPLETED ]] && ok "the chain went on to eval" || bad "eval did not complete"
for f in model.h5 optim.h5; do
  cmp -s "$work/A/pretrain/ckpt/step_00000160/$f" "$work/B/pretrain/ckpt/step_00000160/$f" \
    && ok "$f after the requeue is bitwise the uninterrupted run's" || bad "$f differs from the uninterrupted run's"
done
cmp -s "$work/A/pretrain/metrics.jsonl" "$work/B/pretrain/metrics.jsonl" && ok "metrics.jsonl identical" \
  || bad "metrics differ: $(diff "$work/A/pretrain/metrics.jsonl" "$work/B/pretrain/metrics.jsonl" | head -4)"

# --- 2b. SIGTERM through Slurm to an srun step's tasks (scancel --signal=TERM), no job script in between ----------
# (A SIGTERM to srun itself aborts the step: Slurm 22.05's srun kills its tasks, measured; docs/jobs.md.)
srun_c() {
  srun -n 2 --mpi=pmix --time 5 --job-name pl-sigterm "$bin" pretrain --run-dir "$work/C" --data "$work/A/data" \
    --tp 1 --threads 1 --seq-len 32 --micro-batch 2 --global-batch 4 --steps 160 --save-interval 4 --log-interval 20 \
    --warmup-steps 5 --lr 2e-3 --eval-interval 0 --eval-batches 2
}
"$bin" init --run-dir "$work/C" --tokenizer "$work/A/tokenizer.model" --preset tiny --seed 3 > /dev/null
srun_c > "$work/C.log" 2>&1 &
srun_pid=$!
sent=0
for _ in $(seq 1 1200); do
  step=$(sed 's/step_0*//' "$work/C/ckpt/latest" 2>/dev/null || echo 0)
  jid=$(squeue -h -u "$(id -un)" -n pl-sigterm -o %i 2>/dev/null | head -1)
  if [[ ${step:-0} -ge 8 && -n $jid ]]; then scancel --signal=TERM "$jid" && sent=1; break; fi
  sleep 0.05
done
wait "$srun_pid"
grep -q '"state":"stopped"' "$work/C/status.json" && grep -q '"reason":"SIGTERM: saved a checkpoint' "$work/C/status.json" \
  && ((sent)) && ok "scancel --signal=TERM: the ranks saved and stopped ($(sed 's/.*"step":\([0-9]*\).*/step \1/' "$work/C/status.json"))" \
  || bad "scancel --signal=TERM (sent $sent): $(cat "$work/C/status.json" 2>&1) $(tail -3 "$work/C.log")"
srun_c > "$work/C2.log" 2>&1 || bad "resume after SIGTERM: $(tail -3 "$work/C2.log")"
for f in model.h5 optim.h5; do
  cmp -s "$work/A/pretrain/ckpt/step_00000160/$f" "$work/C/ckpt/step_00000160/$f" \
    && ok "SIGTERM through Slurm, resumed: $f bitwise the uninterrupted run's" || bad "SIGTERM through Slurm: $f differs"
done

# --- 3. a study grid (jobs/study --submit slurm): one job per stage, each after its inputs' jobs -------------
jobs_json() { /usr/bin/python3 -c 'import json, sys; j = json.load(open(sys.argv[1])); print(*(j[k] for k in sys.argv[2:]) if sys.argv[2:] else j.values())' "$work/S/jobs.json" "$@"; }
if /usr/bin/python3 -c 'import matplotlib, tomllib' 2>/dev/null; then
  cat > "$work/study.toml" <<EOF
[study]
work = "$work/S"
polyllama = "$bin"
launch = "srun --mpi=pmix"
threads = 1
sbatch_args = "--ntasks 2 --cpus-per-task 1 --time 5"
exit_before = 1
[base]
corpus = "$work/text.txt"
vocab_size = 320
data_args = "--blank-line-docs"
init_args = "--preset tiny --seed 3"
steps = 4
pretrain_args = "--seq-len 32 --micro-batch 2 --warmup-steps 1 --lr 2e-3 --val-every 0"
[target]
language = "ledger"
corpus = "$work/text.txt"
heldout = "$work/text.txt"
data_args = "--blank-line-docs"
stats_args = "--blank-line-docs"
[english]
heldout = "$work/text.txt"
[pretrain]
budgets = [0, 3, 6]
args = "--seq-len 32 --micro-batch 2 --warmup-steps 1 --lr 2e-3 --save-interval 1 --keep-last 1 --val-every 0"
[sft]
data = "$work/sft.jsonl"
sizes = [8]
steps = 2
args = "--template plain --seq-len 96 --micro-batch 2 --val-every 0"
[eval]
ppl_args = "--blank-line-docs --ppl-max-docs 4 --ppl-seq 32"
EOF
  t0=$SECONDS
  out=$("$root/jobs/study" "$work/study.toml" --submit slurm 2>&1) || bad "study --submit: $out"
  read -r -a sids <<< "$(jobs_json)"
  [[ ${#sids[@]} -eq 16 ]] && ok "study: ${#sids[@]} jobs submitted" || bad "study submitted ${#sids[@]} jobs: $out"
  wait_chain 300 "${sids[@]}" || bad "the study's jobs did not finish"
  failed=0
  for id in "${sids[@]}"; do [[ $(job_field "$id" JobState) == COMPLETED ]] || failed=$((failed + 1)); done
  ((failed == 0)) && ok "study: every job COMPLETED ($((SECONDS - t0)) s)" \
    || bad "study: $failed jobs not completed: $(tail -n 5 "$work"/S/logs/*.log | tail -30)"
  [[ $(grep -c ' run pretrain-orig-s1234:' "$work/S/study.log") -eq 1 && -f $work/S/report/report.md \
     && -f $work/S/eval/orig-b3-sft8-s1234/results.json ]] \
    && ok "study on Slurm: one pretraining run for 2 budgets, every cell evaluated, report.md written" \
    || bad "study outputs: $(ls "$work/S" "$work/S/eval" 2>&1)"
  sft_start=$(date -d "$(job_field "$(jobs_json sft-orig-b6-sft8-s1234)" StartTime)" +%s)
  pt_end=$(date -d "$(job_field "$(jobs_json pretrain-orig-s1234)" EndTime)" +%s)
  ((sft_start >= pt_end)) && ok "the SFT job of budget 6 started after the pretraining job ended" \
    || bad "sft started at $sft_start, before pretraining ended at $pt_end"
  out=$("$root/jobs/study" "$work/study.toml" --submit slurm 2>&1)
  [[ $(jobs_json) =~ ^[0-9]+$ ]] && ok "resubmitted: only the report job (every other stage is done)" \
    || bad "resubmitted: $out"
  read -r -a sids <<< "$(jobs_json)"
  wait_chain 60 "${sids[@]}"
else
  echo "no /usr/bin/python3 with matplotlib: the study part is skipped"
fi
finish
