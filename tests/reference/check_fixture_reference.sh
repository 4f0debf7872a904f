#!/bin/sh
# Regenerates the greedy-generation reference (tests/reference/hf_generate_ref.py, PyTorch) and checks it against
# tests/fixtures/hf_tiny/reference_generate.json, then runs the C++ generation tests on the fresh file.
#
#   tests/reference/check_generate_reference.sh PATH/TO/polyllama_tests
#
# Exits 77 (ctest's SKIP_RETURN_CODE) when /usr/bin/python3 cannot import torch.
set -u

here=$(cd "$(dirname "$0")" && pwd)
committed="$here/../fixtures/hf_tiny/reference_generate.json"
python=/usr/bin/python3

if [ $# -ne 1 ] || [ ! -x "$1" ]; then
  echo "usage: $0 PATH/TO/polyllama_tests" >&2
  exit 2
fi
if ! "$python" -c 'import torch' >/dev/null 2>&1; then
  echo "SKIP: $python cannot import torch (Debian: apt-get install python3-torch); the committed fixture is used as is"
  exit 77
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/polyllama_genref.XXXXXX") || exit 2
trap 'rm -rf "$tmp"' EXIT INT TERM
fresh="$tmp/reference_generate.json"

status=0
if ! "$python" "$here/hf_generate_ref.py" --out "$fresh" --compare "$committed"; then
  echo "FAIL: the regenerated reference differs from $committed" >&2
  echo "      regenerate: $python tests/reference/hf_generate_ref.py --out tests/fixtures/hf_tiny/reference_generate.json" >&2
  status=1
fi
if [ ! -s "$fresh" ]; then
  echo "FAIL: $here/hf_generate_ref.py wrote no fixture" >&2
  exit 1
fi
if ! POLYLLAMA_GEN_REF_FIXTURE="$fresh" "$1" --gtest_filter='*HfGreedy*'; then
  echo "FAIL: polyllama's greedy generation disagrees with the regenerated PyTorch reference" >&2
  status=1
fi
exit $status
