# shellcheck shell=bash
# What the stages need from Slurm (sourced by jobs/slurm/*.sh): launching ranks, the job's end, requeueing.
#
# Launch. LAUNCHER=srun (default): `srun --mpi=pmix` starts the ranks from the allocation's layout (sbatch
# --nodes, --ntasks-per-node, --cpus-per-task, --gpus-per-node from jobs/submit), block distribution, so the tp
# consecutive ranks of a tensor-parallel group share a node (TP must divide RANKS_PER_NODE; jobs/submit checks).
# Needs Slurm's PMIx plugin (`srun --mpi=list` shows pmix) and an MPI built against PMIx (Open MPI 4/5).
# LAUNCHER=mpirun: Open MPI reads the allocation itself (its ras/slurm component) and starts its daemons through
# srun; MPIRUN_ARGS defaults to one rank per CPUS_PER_RANK cores, bound.
# GPUs: --gpus-per-node=G with G ranks per node; polyllama gives node-local rank i the i-th visible GPU. For NCCL
# across nodes set the fabric in the config, e.g. NCCL_SOCKET_IFNAME=ib0 (bootstrap interface), NCCL_IB_HCA=mlx5
# (InfiniBand adapters), NCCL_DEBUG=WARN; for Open MPI over UCX: OMPI_MCA_pml=ucx, UCX_NET_DEVICES=mlx5_0:1,
# UCX_TLS=rc,sm,self. Exported variables reach every rank (srun and mpirun both pass the environment on).
#
# Preemption and time limits. Slurm ends a job with SIGTERM to every process, then SIGKILL KillWait seconds later
# (30 s by default; `scontrol show config | grep KillWait`): polyllama saves on SIGTERM, so the save must fit in
# KillWait. Better: --exit-before (EXIT_BEFORE minutes in the config) stops the run itself before the time limit,
# and `--signal=B:USR1@SECONDS` (jobs/submit sets SIGNAL_BEFORE) makes Slurm send USR1 to this script that long
# before the limit as a backstop; the script passes it to the launcher, which forwards it to every rank.
# A stopped run is requeued (scontrol requeue; the job keeps its id, so the dependent stages keep waiting). Slurm
# holds a requeued job for about two minutes before it may start again (the job credential's lifetime).

POLYLLAMA_JOBS=${POLYLLAMA_JOBS:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
# shellcheck source=jobs/lib/stages.sh
source "$POLYLLAMA_JOBS/lib/stages.sh"
[[ -n ${SLURM_JOB_ID:-} ]] || die "not inside a Slurm job (no SLURM_JOB_ID): submit with jobs/submit CONFIG"

# LAUNCH_EXEC=1 (train_until_done, which runs this in the background): exec the launcher, so the PID the job
# script signals is srun's or mpirun's, which forward the signal to every rank; a subshell would just die of it.
# shellcheck disable=SC2086  # MPIRUN_ARGS is a word list
launch_all() {
  case $LAUNCHER in
    srun) ${LAUNCH_EXEC:+exec} srun --mpi=pmix --nodes="$NODES" --ntasks="$RANKS" --cpus-per-task="$CPUS_PER_RANK" "$@" ;;
    mpirun) ${LAUNCH_EXEC:+exec} mpirun -np "$RANKS" ${MPIRUN_ARGS:---map-by ppr:$RANKS_PER_NODE:node:PE=$CPUS_PER_RANK --bind-to core} "$@" ;;
    *) die "LAUNCHER=$LAUNCHER: expected srun or mpirun" ;;
  esac
}
launch_one() {
  case $LAUNCHER in
    srun) srun --mpi=pmix --nodes=1 --ntasks=1 --cpus-per-task="$CPUS_PER_RANK" "$@" ;;
    *) mpirun -np 1 "$@" ;;
  esac
}

# The job's end in epoch seconds: SLURM_JOB_END_TIME (Slurm 23.02 and later set it), else squeue's end time
# (local time); empty for a job without a time limit.
job_end() {
  if [[ -n ${SLURM_JOB_END_TIME:-} ]]; then echo "$SLURM_JOB_END_TIME"; return; fi
  local end
  end=$(squeue -h -j "$SLURM_JOB_ID" -o %e 2>/dev/null)
  [[ $end =~ ^[0-9]{4}-[0-9]{2}-[0-9]{2}T ]] && date -d "$end" +%s
}

requeue_self() { scontrol requeue "$SLURM_JOB_ID"; }
