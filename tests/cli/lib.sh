# Sourced by the command-line tests: a scratch directory, pass/fail counting and the closing line ctest reads.
# Usage: source "$(dirname "$0")/lib.sh" "$@" at the top (sets bin and work), finish at the end.
set -uo pipefail
bin=${1:?usage: $0 POLYLLAMA_BINARY}
work=$(mktemp -d)
trap '[[ -n ${KEEP_WORK:-} ]] || rm -rf "$work"' EXIT
fails=0 passes=0
ok() { echo "ok: $1"; passes=$((passes + 1)); }
bad() { echo "FAIL: $1"; fails=$((fails + 1)); }
# expect_fail CODE PATTERN -- command...: the command exits with CODE and its stderr matches PATTERN
expect_fail() {
  local code=$1 pat=$2; shift 3
  local err; err=$("$@" 2>&1 >/dev/null); local rc=$?
  if [[ $rc -eq $code && $err =~ $pat ]]; then ok "exit $code: $pat"; else bad "wanted exit $code matching '$pat', got $rc: $err"; fi
}
# ledger_text FILE LINES: the small English corpus the training tests share (blank lines separate documents).
ledger_text() {
  for i in $(seq 1 "$2"); do
    echo "Line $i of the ledger: the mill ground $((i * 7 % 13)) sacks and the weir held."
    echo "A heron stood in the shallows while the miller counted his coins."
    echo
  done > "$1"
}
# The per-step training losses of a run directory, one per line.
losses() { sed -n 's/.*"loss":\([-0-9.e]*\).*/\1/p' "$1/metrics.jsonl"; }
# close_losses RUN REF STEPS TOL WHAT: both runs logged STEPS losses, each within TOL relative of REF's.
close_losses() {
  paste <(losses "$1") <(losses "$2") | awk -v what="$5" -v steps="$3" -v tol="$4" '
    { n++; d = $1 - $2; if (d < 0) d = -d; if (d > tol * ($2 < 0 ? -$2 : $2)) bad = bad " step " n ": " $1 " vs " $2 }
    END { if (n == steps && bad == "") { print "ok: " what; exit 0 } print "FAIL: " what " (" n " steps)" bad; exit 1 }'
}
finish() {
  echo "$passes passed, $fails failed"
  [[ $fails -eq 0 ]]
}
