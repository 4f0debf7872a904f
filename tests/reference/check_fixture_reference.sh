#!/bin/sh
# Regenerates a PyTorch reference fixture, checks it against the committed one (the script's --compare says how
# close: bit for bit where it can be), then runs the C++ tests that read it on the fresh file, so the code is checked
# against the live reference, not only against the committed numbers. A failure of the first step means the
# reference drifted (the script changed, or torch did): regenerate the fixture with --out and review the diff.
#
#   tests/reference/check_fixture_reference.sh PATH/TO/polyllama_tests SCRIPT FIXTURE ENV_VAR GTEST_FILTER
#     SCRIPT    a script in tests/reference taking --out FILE --compare COMMITTED (llama_torch_ref.py, ...)
#     FIXTURE   its committed output, relative to tests/fixtures (llama_ref_small.bin, hf_tiny/reference_...json)
#     ENV_VAR   the variable through which the tests read the fresh file instead of the committed one
#
# Exits 77 (ctest's SKIP_RETURN_CODE) when /usr/bin/python3 cannot import torch.
set -u

here=$(cd "$(dirname "$0")" && pwd)
python=/usr/bin/python3

if [ $# -ne 5 ] || [ ! -x "$1" ]; then
  echo "usage: $0 PATH/TO/polyllama_tests SCRIPT FIXTURE ENV_VAR GTEST_FILTER" >&2
  exit 2
fi
tests=$1 script=$2 fixture=$3 var=$4 filter=$5
committed="$here/../fixtures/$fixture"
if ! "$python" -c 'import torch, numpy' >/dev/null 2>&1; then
  echo "SKIP: $python cannot import torch (Debian: apt-get install python3-torch); the committed fixture is used as is"
  exit 77
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/polyllama_ref.XXXXXX") || exit 2
trap 'rm -rf "$tmp"' EXIT INT TERM
fresh="$tmp/$(basename "$fixture")"

status=0
if ! "$python" "$here/$script" --out "$fresh" --compare "$committed"; then
  echo "FAIL: the regenerated reference differs from $committed" >&2
  echo "      regenerate: $python tests/reference/$script --out tests/fixtures/$fixture" >&2
  status=1
fi
if [ ! -s "$fresh" ]; then
  echo "FAIL: $here/$script wrote no fixture" >&2
  exit 1
fi
if ! env "$var=$fresh" "$tests" --gtest_filter="$filter"; then
  echo "FAIL: polyllama disagrees with the regenerated PyTorch reference ($fixture)" >&2
  status=1
fi
exit $status
