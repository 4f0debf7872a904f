# shellcheck shell=bash
# What the stages need from PBS (PBS Pro / OpenPBS, or Torque; sourced by jobs/pbs/*.sh): launching ranks, the
# job's end, requeueing.
#
# Launch: `mpirun --hostfile $PBS_NODEFILE` (PBS lists each node once per MPI slot: mpiprocs=R in PBS Pro's
# select, ppn=R in Torque), ranks placed RANKS_PER_NODE per node in order, so the tp consecutive ranks of a
# tensor-parallel group share a node. MPIRUN_ARGS replaces the placement flags. NCCL/UCX settings as in
# jobs/slurm/slurm.sh (exported in the config; mpirun passes OMPI_*, NCCL_* and UCX_* on with -x below).
#
# Time limits. PBS exports no end time. The job's end is taken as its start plus its walltime: the start is
# `qstat -f`'s stime (PBS Pro, OpenPBS, Torque), else when this script began; the walltime is PBS_WALLTIME
# (Torque exports it, in seconds), else `qstat -f`'s Resource_List.walltime (HH:MM:SS). It is passed to
# polyllama as --job-end for --exit-before. PBS ends a job with SIGTERM, then SIGKILL after the server's
# kill_delay (10 s by default in PBS Pro): the script passes SIGTERM on to mpirun, which forwards it to the
# ranks and gives them KILL_GRACE seconds (OMPI_MCA_odls_base_sigkill_timeout) before killing them.
# Requeue: `qrerun $PBS_JOBID` (the job keeps its id and the stages after it keep waiting; `#PBS -r y` makes it
# rerunnable). PBS Pro and Torque allow qrerun to managers and operators only by default; where a user may not,
# the stage fails with a message and rerunning jobs/submit continues the run.

stage_start=$(date +%s)
POLYLLAMA_JOBS=${POLYLLAMA_JOBS:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
# shellcheck source=jobs/lib/stages.sh
source "$POLYLLAMA_JOBS/lib/stages.sh"
[[ -n ${PBS_JOBID:-} ]] || die "not inside a PBS job (no PBS_JOBID): submit with jobs/submit CONFIG"
[[ -r ${PBS_NODEFILE:-} ]] || die "PBS_NODEFILE (${PBS_NODEFILE:-unset}) is not readable: the job's nodes are unknown"
cd "${PBS_O_WORKDIR:-$WORK}" || die "cannot enter PBS_O_WORKDIR=${PBS_O_WORKDIR:-}"

mpi_env=(-x OMP_NUM_THREADS -x OMPI_MCA_odls_base_sigkill_timeout)
for v in $(compgen -e | grep -E '^(NCCL|UCX|CUDA)_'); do mpi_env+=(-x "$v"); done
launch_all() {
  # shellcheck disable=SC2086  # MPIRUN_ARGS is a word list
  ${LAUNCH_EXEC:+exec} mpirun -np "$RANKS" --hostfile "$PBS_NODEFILE" "${mpi_env[@]}" \
    ${MPIRUN_ARGS:---map-by ppr:$RANKS_PER_NODE:node:PE=$CPUS_PER_RANK --bind-to core} "$@"
}
launch_one() {
  # shellcheck disable=SC2086
  mpirun -np 1 --hostfile "$PBS_NODEFILE" "${mpi_env[@]}" ${MPIRUN_ARGS:-} "$@"
}

# HH:MM:SS, MM:SS or SS as seconds.
hms_seconds() { awk -F: '{ s = 0; for (i = 1; i <= NF; i++) s = s * 60 + $i; print s }' <<< "$1"; }
job_end() {
  local info="" start walltime
  info=$(qstat -f "$PBS_JOBID" 2>/dev/null) || info=""
  start=$(sed -n 's/^ *stime = //p' <<< "$info")
  start=$([[ -n $start ]] && date -d "$start" +%s 2>/dev/null || echo "$stage_start")
  walltime=${PBS_WALLTIME:-}
  [[ -z $walltime ]] && walltime=$(hms_seconds "$(sed -n 's/^ *Resource_List.walltime = //p' <<< "$info")")
  [[ -n $walltime && $walltime != 0 ]] && echo $((start + walltime))
}

requeue_self() { qrerun "$PBS_JOBID"; }
