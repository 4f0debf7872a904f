#!/usr/bin/env bash
#PBS -N pl-data
#PBS -j oe
# Tokenizes CORPUS into token shards with the tokenizer: WORK/data (all ranks split the input).
# Submitted by jobs/submit CONFIG, which sets POLYLLAMA_CONF, POLYLLAMA_JOBS and the resources; jobs/README.md.
source "${POLYLLAMA_JOBS:?POLYLLAMA_JOBS must name the jobs/ directory (jobs/submit sets it)}/pbs/pbs.sh"
stage_data
