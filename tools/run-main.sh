#!/usr/bin/env bash
# Setup command 1: install dependencies, build, and run the main job (jobs/pipeline.sh): the study in miniature
# under `mpirun -np 2` on texts Debian installs (bible-kjv-text, fortunes-zh): an English base model, its
# tokenizer extended with Chinese pieces, resize-vocab, continued pretraining on Chinese, instruction tuning,
# and eval before and after (perplexity per language, multiple-choice questions, answers and code-switching),
# ending in a summary table and runs/main/results.md. About 12 minutes on 2 cores; rerun to resume.
# Settings: the environment variables listed at the top of jobs/pipeline.sh (RUN_DIR, NP, BASE_STEPS, ...).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/install-deps.sh
tools/build.sh
exec jobs/pipeline.sh "$@"
