# shellcheck shell=bash
# The pipeline's stages as the Slurm and PBS job scripts run them (sourced by jobs/slurm/*.sh, jobs/pbs/*.sh).
# The scheduler's script defines launch_all / launch_one (how ranks start), job_end (the allocation's end, epoch
# seconds) and requeue_self, then calls one stage_* function. Every stage reads its inputs from the previous stage's
# outputs under $WORK, skips itself when its outputs are complete and verified (a resubmitted chain redoes nothing),
# and decides from what polyllama wrote (RUN/status.json, a dataset's metadata.json), never from the launcher's exit
# code: srun and mpirun report 1 for a rank's exit 3.

set -uo pipefail

# The config file jobs/submit was given (shell variables; see jobs/example.conf).
: "${POLYLLAMA_CONF:?POLYLLAMA_CONF must name the config file (jobs/submit sets it)}"
[[ -r $POLYLLAMA_CONF ]] || { echo "stage: cannot read the config $POLYLLAMA_CONF" >&2; exit 1; }
# shellcheck source=/dev/null
source "$POLYLLAMA_CONF"
: "${WORK:?$POLYLLAMA_CONF must set WORK, the directory every stage writes under}"
POLYLLAMA=${POLYLLAMA:-polyllama}
NODES=${NODES:-1} RANKS_PER_NODE=${RANKS_PER_NODE:-1}
# Cores per rank: the config's, else what the scheduler granted (Slurm's --cpus-per-task; PBS's NCPUS per node).
CPUS_PER_RANK=${CPUS_PER_RANK:-${SLURM_CPUS_PER_TASK:-$(( ${NCPUS:-$RANKS_PER_NODE} / RANKS_PER_NODE ))}}
GPUS_PER_NODE=${GPUS_PER_NODE:-0} TP=${TP:-1} LAUNCHER=${LAUNCHER:-srun} EXIT_BEFORE=${EXIT_BEFORE:-10}
RANKS=$((NODES * RANKS_PER_NODE))
# One CPU thread set per rank: OpenBLAS/OpenMP inside a rank use exactly its share of the node.
export OMP_NUM_THREADS=$CPUS_PER_RANK
device_args=(--threads "$CPUS_PER_RANK")
((GPUS_PER_NODE > 0)) && device_args+=(--device cuda)  # one GPU per rank: rank i of a node takes GPU i
# Open MPI (mpirun) on SIGTERM sends the ranks SIGCONT, SIGTERM odls_base_sigkill_timeout seconds later and SIGKILL as
# long after that (default 1 s: too short for a save; measured, tests/cli/test_preempt.sh). The trap below passes
# SIGUSR1 instead, forwarded at once; the timeout still bounds a rank that does not stop.
export OMPI_MCA_odls_base_sigkill_timeout=${KILL_GRACE:-120}
mkdir -p "$WORK/logs" "$WORK/.done"

say() { echo "[$(date -u +%FT%TZ) ${STAGE:-stage}] $*"; }
die() { say "error: $*" >&2; exit 1; }

# A run directory's state and step from RUN/status.json (written by world rank 0; one line of JSON).
run_state() { sed -n 's/.*"state" *: *"\([a-z]*\)".*/\1/p' "$1/status.json" 2>/dev/null; }
run_step() { sed -n 's/.*"step" *: *\([0-9]*\).*/\1/p' "$1/status.json" 2>/dev/null; }
run_reason() { sed -n 's/.*"reason" *: *"\([^"]*\)".*/\1/p' "$1/status.json" 2>/dev/null; }

# A stage's outputs are recorded with their SHA-256 in $WORK/.done/STAGE when it completes; the stage is skipped
# while every recorded file is still there, unchanged.
mark_done() {
  local stage=$1; shift
  (cd "$WORK" && find "$@" -type f ! -name '.lock' -print0 | sort -z | xargs -0 sha256sum) > "$WORK/.done/$stage.tmp" \
    && mv "$WORK/.done/$stage.tmp" "$WORK/.done/$stage"
}
is_done() {
  [[ -s $WORK/.done/$1 ]] && (cd "$WORK" && sha256sum --quiet -c "$WORK/.done/$1" >/dev/null 2>&1)
}
skip_if_done() {
  if is_done "$1"; then say "complete and verified ($WORK/.done/$1): skipped"; exit 0; fi
}

# The latest checkpoint of a run directory, as a step directory.
latest_of() {
  local latest
  latest=$(cat "$1/ckpt/latest" 2>/dev/null) || return 1
  [[ -n $latest && -d $1/ckpt/$latest ]] && echo "$1/ckpt/$latest"
}

# Runs a training verb to its end or to a clean stop: done -> 0; stopped (walltime or a signal, exit 3) -> the job
# is requeued to continue; anything else fails the job, so the stages after it do not start.
train_until_done() {
  local run=$1 verb=$2; shift 2
  local before end
  before=$(run_step "$run")
  end=$(job_end)
  local limit=()
  [[ -n $end && $end != 0 ]] && limit=(--exit-before "$EXIT_BEFORE" --job-end "$end")
  say "$verb: $RANKS ranks (tp $TP) on $NODES node(s), run $run${end:+, job ends $(date -u -d "@$end" +%FT%TZ)}"
  # LAUNCH_EXEC: the background job becomes the launcher itself (jobs/*/slurm.sh, pbs.sh), which the trap signals
  LAUNCH_EXEC=1 launch_all "$POLYLLAMA" "$verb" --run-dir "$run" --tp "$TP" "${device_args[@]}" "${limit[@]}" "$@" &
  launcher=$!
  # A signal to this shell (Slurm's --signal=B:USR1, scancel --batch, PBS's SIGTERM before a kill) goes on to the
  # launcher, which forwards it to every rank: they save, write status.json "stopped" and exit 3.
  trap 'say "signal: passing it on to the ranks"; kill -USR1 "$launcher" 2>/dev/null' USR1 TERM INT
  while ! wait "$launcher"; do kill -0 "$launcher" 2>/dev/null || break; done  # wait returns early on a trap
  trap - USR1 TERM INT
  local state
  state=$(run_state "$run")
  case $state in
    done) say "$verb finished: $(run_reason "$run")"; return 0 ;;
    stopped)
      say "$verb stopped at step $(run_step "$run"): $(run_reason "$run")"
      if [[ $(run_step "$run") == "$before" ]]; then
        die "no step was trained in this allocation (step $before before and after): not requeued; give the job more time"
      fi
      # Said before the request: the scheduler may end this script before requeue_self returns.
      say "requeueing this job to continue from step $(run_step "$run")"
      if requeue_self; then
        # The scheduler ends this job and starts it again; were it still alive after REQUEUE_WAIT seconds, the
        # requeue did not happen: fail, so that the stages after it do not start on an unfinished run.
        say "requeued; waiting to be ended by the scheduler"
        sleep "${REQUEUE_WAIT:-300}"
        die "still running ${REQUEUE_WAIT:-300} s after the requeue; resubmit the chain (jobs/submit CONFIG)"
      fi
      die "requeueing failed: resubmit the chain (jobs/submit CONFIG); finished stages are skipped and $run resumes" ;;
    *) die "$verb ended with status '${state:-none}' in $run/status.json: $(run_reason "$run") (see the job's log)" ;;
  esac
}

stage_tokenizer() {
  STAGE=tokenizer
  skip_if_done tokenizer
  # shellcheck disable=SC2086  # CORPUS and TOKENIZER_ARGS are word lists
  launch_one "$POLYLLAMA" tokenizer train --input ${CORPUS:?CORPUS is not set} --vocab-size "${VOCAB:-8000}" \
    --out "$WORK/tokenizer.model" ${TOKENIZER_ARGS:-} || die "tokenizer train failed"
  [[ -s $WORK/tokenizer.model ]] || die "no $WORK/tokenizer.model was written"
  mark_done tokenizer tokenizer.model
  say "wrote $WORK/tokenizer.model"
}

stage_data() {
  STAGE=data
  skip_if_done data
  is_done tokenizer || die "the tokenizer stage has not completed ($WORK/.done/tokenizer)"
  # shellcheck disable=SC2086
  launch_all "$POLYLLAMA" data --tokenizer "$WORK/tokenizer.model" --input ${CORPUS:?CORPUS is not set} \
    --out "$WORK/data" --overwrite ${DATA_ARGS:-}
  # `data` writes DATA.tmp and renames it when every rank has finished: metadata.json is the proof.
  [[ -f $WORK/data/metadata.json ]] || die "polyllama data wrote no $WORK/data/metadata.json (see the log)"
  mark_done data data
  say "wrote $WORK/data"
}

stage_pretrain() {
  STAGE=pretrain
  skip_if_done pretrain
  is_done data || die "the data stage has not completed ($WORK/.done/data)"
  local run=$WORK/pretrain
  if ! latest_of "$run" >/dev/null; then
    # shellcheck disable=SC2086
    launch_one "$POLYLLAMA" init --run-dir "$run" --tokenizer "$WORK/tokenizer.model" ${INIT_ARGS:-} \
      || die "init failed"
  fi
  # shellcheck disable=SC2086
  train_until_done "$run" pretrain --data "$WORK/data" ${PRETRAIN_ARGS:-} || exit 1
  mark_done pretrain "pretrain/ckpt/$(cat "$run/ckpt/latest")" pretrain/status.json
}

stage_sft() {
  STAGE=sft
  skip_if_done sft
  is_done pretrain || die "the pretrain stage has not completed ($WORK/.done/pretrain)"
  local base
  base=$(latest_of "$WORK/pretrain") || die "$WORK/pretrain has no checkpoint"
  # --init-from is used while $WORK/sft has no checkpoint; a requeued job resumes its own latest.
  # shellcheck disable=SC2086
  train_until_done "$WORK/sft" sft --init-from "$base" --data ${SFT_DATA:?SFT_DATA is not set} \
    --template "${SFT_TEMPLATE:-alpaca}" ${SFT_ARGS:-} || exit 1
  mark_done sft "sft/ckpt/$(cat "$WORK/sft/ckpt/latest")" sft/status.json
}

stage_eval() {
  STAGE="eval"
  skip_if_done eval
  is_done sft || die "the sft stage has not completed ($WORK/.done/sft)"
  rm -rf "$WORK/eval"
  # shellcheck disable=SC2086
  local first_corpus
  first_corpus=${CORPUS%% *}
  # Without EVAL_ARGS: the perplexity of the first corpus file's first 100 documents.
  # shellcheck disable=SC2086  # EVAL_ARGS is a word list
  launch_all "$POLYLLAMA" eval --ckpt "$WORK/sft" --tp "$TP" --out "$WORK/eval" --threads "$CPUS_PER_RANK" \
    ${EVAL_ARGS:---tasks ppl --ppl-files corpus:$first_corpus --ppl-max-docs 100}
  [[ -s $WORK/eval/results.json ]] || die "polyllama eval wrote no $WORK/eval/results.json (see the log)"
  mark_done eval eval
  say "results in $WORK/eval/results.md"
}
