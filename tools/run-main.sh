#!/usr/bin/env bash
# Setup command 1: install dependencies, build, and run the main job on its embedded default
# (jobs/pipeline.sh: a Chinese corpus from Debian's fortunes-zh, a new tokenizer, a small model, pretraining).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/install-deps.sh
tools/build.sh
exec jobs/pipeline.sh "$@"
