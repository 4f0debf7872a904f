#!/usr/bin/env bash
#SBATCH --job-name=pl-sft
#SBATCH --open-mode=append
#SBATCH --requeue
#SBATCH --signal=B:USR1@120
# Instruction-tunes the pretrained model on SFT_DATA into WORK/sft (SFT_ARGS); requeues itself like pretrain.
# Submitted by jobs/submit CONFIG, which sets POLYLLAMA_CONF, POLYLLAMA_JOBS and the resources; jobs/README.md.
source "${POLYLLAMA_JOBS:?POLYLLAMA_JOBS must name the jobs/ directory (jobs/submit sets it)}/slurm/slurm.sh"
stage_sft
