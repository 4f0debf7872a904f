#!/usr/bin/env bash
# Setup command 2 (and CI's): install dependencies (with PyTorch, the tests' independent reference), build,
# and run every test through ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/install-deps.sh --with-reference
tools/build.sh
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
cd "${BUILD_DIR:-build}"
ctest --output-on-failure --timeout 900 "$@"
