#!/usr/bin/env bash
#PBS -N pl-sft
#PBS -j oe
#PBS -r y
# Instruction-tunes the pretrained model on SFT_DATA into WORK/sft (SFT_ARGS); requeues itself like pretrain.
# Submitted by jobs/submit CONFIG, which sets POLYLLAMA_CONF, POLYLLAMA_JOBS and the resources; jobs/README.md.
source "${POLYLLAMA_JOBS:?POLYLLAMA_JOBS must name the jobs/ directory (jobs/submit sets it)}/pbs/pbs.sh"
stage_sft
