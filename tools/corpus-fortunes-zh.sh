#!/usr/bin/env bash
# Writes the embedded default corpus: Chinese Tang and Song poems and classical prose from Debian's
# fortunes-zh package, as plain text with one document (one fortune) per blank-line-separated block.
# Usage: tools/corpus-fortunes-zh.sh OUT.txt
set -euo pipefail
out=${1:?usage: $0 OUT.txt}
dir=/usr/share/games/fortunes
for f in chinese tang300 song100; do
  [[ -f $dir/$f ]] || { echo "missing $dir/$f: run tools/install-deps.sh (package fortunes-zh)" >&2; exit 1; }
done
# Strip the ANSI colour codes around titles; a '%' line ends a fortune.
cat "$dir/tang300" "$dir/song100" "$dir/chinese" \
  | sed -e 's/\x1b\[[0-9;]*m//g' -e 's/^%$//' > "$out.tmp"
mv "$out.tmp" "$out"
echo "wrote $out ($(wc -c < "$out") bytes)"
