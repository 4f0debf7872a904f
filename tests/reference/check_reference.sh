#!/bin/sh
# Regenerates the PyTorch reference fixture and checks it against what is committed, when PyTorch is present.
#
#   tests/reference/check_reference.sh PATH/TO/polyllama_tests
#
# 1. /usr/bin/python3 tests/reference/llama_torch_ref.py writes a fresh fixture to a temporary directory and
#    compares it with tests/fixtures/llama_ref_small.bin: drawn parameters and token ids bit for bit, the
#    float64 logits, loss and gradients to 1e-10 relative. A failure here means the reference drifted (the
#    script changed, or torch's seeded generator did): regenerate the fixture with --out and review the diff.
# 2. The C++ torch-reference tests run against the fresh fixture (POLYLLAMA_REF_FIXTURE), so the model is
#    checked against the live reference, not only against the committed numbers.
# Exits 77 (ctest's SKIP_RETURN_CODE) when /usr/bin/python3 cannot import torch.
set -u

here=$(cd "$(dirname "$0")" && pwd)
committed="$here/../fixtures/llama_ref_small.bin"
python=/usr/bin/python3

if [ $# -ne 1 ] || [ ! -x "$1" ]; then
  echo "usage: $0 PATH/TO/polyllama_tests" >&2
  exit 2
fi
tests_bin=$1

if ! "$python" -c 'import torch, numpy' >/dev/null 2>&1; then
  echo "SKIP: $python cannot import torch (Debian: apt-get install python3-torch); the committed fixture is used as is"
  exit 77
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/polyllama_ref.XXXXXX") || exit 2
trap 'rm -rf "$tmp"' EXIT INT TERM
fresh="$tmp/llama_ref_small.bin"

status=0
if ! "$python" "$here/llama_torch_ref.py" --out "$fresh" --compare "$committed"; then
  echo "FAIL: the regenerated reference differs from $committed" >&2
  echo "      regenerate: $python tests/reference/llama_torch_ref.py --out tests/fixtures/llama_ref_small.bin" >&2
  status=1
fi
if [ ! -s "$fresh" ]; then
  echo "FAIL: $here/llama_torch_ref.py wrote no fixture" >&2
  exit 1
fi

if ! POLYLLAMA_REF_FIXTURE="$fresh" "$tests_bin" --gtest_filter='TorchReference.*'; then
  echo "FAIL: the C++ model disagrees with the regenerated PyTorch reference" >&2
  status=1
fi
exit $status
