#!/usr/bin/env bash
#SBATCH --job-name=pl-pretrain
#SBATCH --open-mode=append
#SBATCH --requeue
#SBATCH --signal=B:USR1@120
# Initialises WORK/pretrain (INIT_ARGS) and pretrains it on WORK/data (PRETRAIN_ARGS); stops EXIT_BEFORE minutes before the time limit and requeues itself until status.json says done.
# Submitted by jobs/submit CONFIG, which sets POLYLLAMA_CONF, POLYLLAMA_JOBS and the resources; jobs/README.md.
source "${POLYLLAMA_JOBS:?POLYLLAMA_JOBS must name the jobs/ directory (jobs/submit sets it)}/slurm/slurm.sh"
stage_pretrain
