#!/usr/bin/env bash
#SBATCH --job-name=pl-eval
#SBATCH --open-mode=append
# Evaluates WORK/sft (EVAL_ARGS; default: perplexity on the corpus): WORK/eval/results.json and results.md.
# Submitted by jobs/submit CONFIG, which sets POLYLLAMA_CONF, POLYLLAMA_JOBS and the resources; jobs/README.md.
source "${POLYLLAMA_JOBS:?POLYLLAMA_JOBS must name the jobs/ directory (jobs/submit sets it)}/slurm/slurm.sh"
stage_eval
