#!/usr/bin/env bash
# Writes the main job's corpora (jobs/pipeline.sh) from two Debian packages, as plain text with one document per
# blank-line-separated block:
#   en_train.txt, en_heldout.txt   the King James Bible (bible-kjv-text, read through bible-kjv's `bible`), one
#                                  chapter per document; every EN_HOLDOUT-th chapter (default 20th) is held out
#   zh_poems.txt                   Tang and Song poems (fortunes-zh: tang300, song100), one poem per document,
#                                  title and author first; all 313 Tang poems are training text, since the main
#                                  job's questions (share/main/ceval) ask about them; every ZH_HOLDOUT-th Song poem
#                                  (default 10th) is held out
#   zh_prose.txt                   fortunes-zh's `chinese` (classical and modern prose, sayings), one fortune per
#                                  document (its inner blank lines dropped); every ZH_HOLDOUT-th one held out
#   zh_heldout.txt                 the held-out Song poems and prose, interleaved
# Held-out documents never appear in the training files, so the perplexities the main job reports on
# en_heldout.txt and zh_heldout.txt are on unseen text.
# Usage: tools/corpus-main.sh OUTDIR        (files already complete are kept; `.done` marks completion)
set -euo pipefail
out=${1:?usage: $0 OUTDIR}
en_holdout=${EN_HOLDOUT:-20}
zh_holdout=${ZH_HOLDOUT:-10}
[[ -f $out/.done ]] && { echo "corpus-main: $out complete, kept"; exit 0; }
fdir=/usr/share/games/fortunes
for f in tang300 song100 chinese; do
  [[ -f $fdir/$f ]] || { echo "corpus-main: missing $fdir/$f: run tools/install-deps.sh (package fortunes-zh)" >&2; exit 1; }
done
command -v bible > /dev/null || {
  echo "corpus-main: no \`bible\` program: run tools/install-deps.sh (packages bible-kjv, bible-kjv-text)" >&2; exit 1; }
mkdir -p "$out"
export LC_ALL=C.UTF-8

# The whole KJV, one verse a line prefixed by its reference ("Ge1:1 In the beginning ..."; -f turns the
# pretty-printing off). A new book+chapter starts a document; the references are dropped.
bible -f gen1:1-rev22:21 | awk -v n="$en_holdout" -v tr="$out/en_train.txt.tmp" -v ho="$out/en_heldout.txt.tmp" '
  { ref = $1; sub(/^[^ ]+ /, ""); chapter = ref; sub(/:[0-9]+$/, "", chapter)
    if (chapter != prev) { if (NR > 1) flush(); prev = chapter }
    doc = doc $0 "\n" }
  function flush() { f = (++k % n == 0) ? ho : tr; printf "%s\n", doc > f; doc = "" }
  END { flush(); printf "corpus-main: KJV: %d chapters, every %dth held out\n", k, n > "/dev/stderr" }'
mv "$out/en_train.txt.tmp" "$out/en_train.txt"; mv "$out/en_heldout.txt.tmp" "$out/en_heldout.txt"

# fortunes: a "%" line ends a fortune; ANSI colour codes around titles are stripped, blank lines inside a
# fortune dropped, so each fortune is exactly one blank-line document. HOLD: every Nth to the held-out file
# (0: none). Appends to the given files.
split_fortunes() {  # FILE HOLD TRAIN_OUT HELDOUT_OUT
  sed -e 's/\x1b\[[0-9;]*m//g' "$1" | awk -v n="$2" -v tr="$3" -v ho="$4" '
    function flush() { if (doc != "") { f = (n > 0 && ++k % n == 0) ? ho : tr; printf "%s\n", doc >> f; doc = "" } }
    /^%$/ { flush(); next }
    /^[ \t]*$/ { next }
    { doc = doc $0 "\n" }
    END { flush() }'
}
rm -f "$out"/zh_*.tmp
split_fortunes "$fdir/tang300" 0 "$out/zh_poems.txt.tmp" /dev/null
split_fortunes "$fdir/song100" "$zh_holdout" "$out/zh_poems.txt.tmp" "$out/zh_heldout.txt.tmp"
split_fortunes "$fdir/chinese" "$zh_holdout" "$out/zh_prose.txt.tmp" "$out/zh_heldout.txt.tmp"
for f in zh_poems zh_prose zh_heldout; do mv "$out/$f.txt.tmp" "$out/$f.txt"; done
touch "$out/.done"
for f in en_train en_heldout zh_poems zh_prose zh_heldout; do
  printf 'corpus-main: %-14s %6d documents %9d bytes\n' "$f.txt" \
    "$(grep -c '^$' "$out/$f.txt")" "$(wc -c < "$out/$f.txt")"
done
