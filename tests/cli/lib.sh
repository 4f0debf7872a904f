# Sourced by the command-line tests: a scratch directory, pass/fail counting and the closing line ctest reads.
# Usage: source "$(dirname "$0")/lib.sh" "$@" at the top (sets bin and work), finish at the end.
set -uo pipefail
bin=${1:?usage: $0 POLYLLAMA_BINARY}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fails=0 passes=0
ok() { echo "ok: $1"; passes=$((passes + 1)); }
bad() { echo "FAIL: $1"; fails=$((fails + 1)); }
# expect_fail CODE PATTERN -- command...: the command exits with CODE and its stderr matches PATTERN
expect_fail() {
  local code=$1 pat=$2; shift 3
  local err; err=$("$@" 2>&1 >/dev/null); local rc=$?
  if [[ $rc -eq $code && $err =~ $pat ]]; then ok "exit $code: $pat"; else bad "wanted exit $code matching '$pat', got $rc: $err"; fi
}
finish() {
  echo "$passes passed, $fails failed"
  [[ $fails -eq 0 ]]
}
