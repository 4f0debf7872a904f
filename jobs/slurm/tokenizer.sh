#!/usr/bin/env bash
#SBATCH --job-name=pl-tokenizer
#SBATCH --open-mode=append
# Trains the SentencePiece tokenizer on CORPUS: WORK/tokenizer.model (one rank).
# Submitted by jobs/submit CONFIG, which sets POLYLLAMA_CONF, POLYLLAMA_JOBS and the resources; jobs/README.md.
source "${POLYLLAMA_JOBS:?POLYLLAMA_JOBS must name the jobs/ directory (jobs/submit sets it)}/slurm/slurm.sh"
stage_tokenizer
