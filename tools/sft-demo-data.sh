#!/usr/bin/env bash
# Writes the embedded default instruction data: questions and answers about the Tang poems of Debian's
# fortunes-zh (tang300), as JSON lines in both shapes `polyllama sft` reads. Per poem:
#   {"instruction": "写一首题为《T》的诗。", "output": POEM}                       (Alpaca/BELLE)
#   {"instruction": "请续写这首诗。", "input": FIRST LINE, "output": THE REST}     (Alpaca with input)
#   {"conversations": [{"from": "human", "value": "背诵《T》。"}, {"from": "gpt", "value": POEM},
#                      {"from": "human", "value": "这首诗的作者是谁？"}, {"from": "gpt", "value": "A。"}]}
# Usage: tools/sft-demo-data.sh OUT.jsonl
set -euo pipefail
out=${1:?usage: $0 OUT.jsonl}
src=/usr/share/games/fortunes/tang300
[[ -f $src ]] || { echo "missing $src: run tools/install-deps.sh (package fortunes-zh)" >&2; exit 1; }
sed -e 's/\x1b\[[0-9;]*m//g' "$src" | LC_ALL=C.UTF-8 awk '
  function esc(s) { gsub(/\\/, "\\\\", s); gsub(/"/, "\\\"", s); gsub(/\t/, " ", s); return s }
  function flush(   i, poem, rest) {
    if (title == "" || n < 2) { title = ""; author = ""; n = 0; return }
    poem = lines[1]; for (i = 2; i <= n; i++) poem = poem "\\n" lines[i]
    rest = lines[2]; for (i = 3; i <= n; i++) rest = rest "\\n" lines[i]
    printf "{\"instruction\": \"写一首题为《%s》的诗。\", \"output\": \"%s\"}\n", title, poem
    printf "{\"instruction\": \"请续写这首诗。\", \"input\": \"%s\", \"output\": \"%s\"}\n", lines[1], rest
    printf "{\"conversations\": [{\"from\": \"human\", \"value\": \"背诵《%s》。\"}, {\"from\": \"gpt\", \"value\": \"%s\"}, ", title, poem
    printf "{\"from\": \"human\", \"value\": \"这首诗的作者是谁？\"}, {\"from\": \"gpt\", \"value\": \"%s。\"}]}\n", author
    title = ""; author = ""; n = 0
  }
  /^%$/ { flush(); next }
  /^《.*》$/ { title = esc(substr($0, 4, length($0) - 6)); next }
  /^作者：/ { author = esc(substr($0, 10)); next }
  /[^ \t]/ { if (title != "") lines[++n] = esc($0) }
  END { flush() }
' > "$out.tmp"
mv "$out.tmp" "$out"
echo "wrote $out ($(wc -l < "$out") records)"
