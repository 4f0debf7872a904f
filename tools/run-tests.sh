#!/usr/bin/env bash
# Setup command 2 (and CI's): install dependencies (with PyTorch, the tests' independent reference), build,
# and run every test through ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/install-deps.sh --with-reference
tools/build.sh
# The Hugging Face `tokenizers` package (a PyPI wheel of a few MB), the reference of the tokenizer.json test, in a
# venv beside the build; without network the test skips.
pyref="${BUILD_DIR:-build}/pyref"
if [[ ! -x "$pyref/bin/python" ]] || ! "$pyref/bin/python" -c 'import tokenizers' 2> /dev/null; then
  python3 -m venv --system-site-packages "$pyref" && "$pyref/bin/pip" install -q tokenizers ||
    echo "run-tests: could not install the Python package tokenizers; cli_tokenizer_json will skip"
fi
[[ -x "$pyref/bin/python" ]] && export POLYLLAMA_PYTHON="$PWD/$pyref/bin/python"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
(cd "${BUILD_DIR:-build}" && ctest --output-on-failure --timeout 900 --parallel "${CTEST_JOBS:-$(nproc)}" "$@")
# The sanitizer stage (docs/fuzzing.md, tools/sanitize-tests.sh): the unit tests under ASan + UBSan and each fuzz
# target for FUZZ_SECONDS, in a clang-14 build of its own (13 minutes on 2 cores). CI runs it
# (CI=true); elsewhere POLYLLAMA_SANITIZE_TESTS=1 asks for it and POLYLLAMA_SANITIZE_TESTS=0 leaves it out.
if [[ "${POLYLLAMA_SANITIZE_TESTS:-}" == 1 || ( "${CI:-}" == true && "${POLYLLAMA_SANITIZE_TESTS:-}" != 0 ) ]]; then
  tools/sanitize-tests.sh
fi
