#!/usr/bin/env bash
#PBS -N pl-eval
#PBS -j oe
# Evaluates WORK/sft (EVAL_ARGS; default: perplexity on the corpus): WORK/eval/results.json and results.md.
# Submitted by jobs/submit CONFIG, which sets POLYLLAMA_CONF, POLYLLAMA_JOBS and the resources; jobs/README.md.
source "${POLYLLAMA_JOBS:?POLYLLAMA_JOBS must name the jobs/ directory (jobs/submit sets it)}/pbs/pbs.sh"
stage_eval
