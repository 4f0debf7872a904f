#!/usr/bin/env bash
# `polyllama data` and `polyllama tokenizer stats` through the command line. The dataset written by
# `mpirun -np 2` (and -np 3 with small shards and 2 threads) equals the -np 1 one token for token and
# document for document; SentencePiece's encoder gives the same tokens as the fast one; and the errors a user
# sees: malformed JSONL names FILE:LINE (exit 1, also under mpirun), --skip-invalid counts it, a missing input,
# an existing --out. Skips (77) without mpirun.
# Usage: test_data_mpi.sh POLYLLAMA_BINARY
source "$(dirname "$0")/lib.sh" "$@"
command -v mpirun >/dev/null || { echo "no mpirun: skipped"; exit 77; }
if [[ $(id -u) -eq 0 ]]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
export OMP_NUM_THREADS=1
mpi=(mpirun --oversubscribe --bind-to none)
# Document lengths of a dataset, one per line, from its .idx files in shard order.
doc_lengths() { for f in "$1"/part-*.idx; do od -An -v -tu8 -w8 "$f" | awk 'NR > 1 { print $1 - prev } { prev = $1 }'; done; }
json_field() { sed -n "s/.*\"$2\":\([0-9]*\).*/\1/p" "$1"; }

# A corpus made here: blank-line documents (big enough that each rank gets many), JSONL and gzip'ed JSONL.
for i in $(seq 1 3000); do
  echo "The river runs to the sea number $i, and the sea returns the rain to the hills."
  [[ $((i % 3)) -eq 0 ]] && echo "河水流向大海，第 $i 次。Every morning the baker opens the door."
  [[ $((i % 2)) -eq 0 ]] && echo
done > "$work/a.txt"
for i in $(seq 1 500); do echo "{\"id\": $i, \"text\": \"document $i: the town smells of bread\\n第二行 $i\"}"; done > "$work/b.jsonl"
for i in $(seq 1 300); do echo "{\"text\": \"compressed document $i\"}"; done | gzip > "$work/c.jsonl.gz"
"$bin" tokenizer train --input "$work/a.txt" --vocab-size 400 --out "$work/tok.model" >/dev/null \
  && ok "tokenizer train" || bad "tokenizer train"

inputs=(--input "$work/a.txt" "$work/b.jsonl" "$work/c.jsonl.gz")
common=(--tokenizer "$work/tok.model" "${inputs[@]}" --blank-line-docs --progress-interval 0 --json)
"$bin" data "${common[@]}" --out "$work/d1" > "$work/d1.json" && [[ -f $work/d1/metadata.json && ! -e $work/d1.tmp ]] \
  && ok "data -np 1" || bad "data -np 1: $(cat "$work/d1.json")"
"${mpi[@]}" -np 2 "$bin" data "${common[@]}" --out "$work/d2" > "$work/d2.json" \
  && [[ $(ls "$work"/d2/part-0000[01]-*.tok | wc -l) -ge 2 ]] && ok "data -np 2 wrote shards from both ranks" \
  || bad "data -np 2: $(cat "$work/d2.json")"
"${mpi[@]}" -np 3 "$bin" data "${common[@]}" --out "$work/d3" --max-shard-tokens 5000 --threads 2 > "$work/d3.json" \
  && ok "data -np 3 --threads 2" || bad "data -np 3: $(cat "$work/d3.json")"
"$bin" data "${common[@]}" --out "$work/d4" --encoder sentencepiece > "$work/d4.json" && ok "data --encoder sentencepiece" \
  || bad "data --encoder sentencepiece"
docs=$(json_field "$work/d1.json" documents); tokens=$(json_field "$work/d1.json" tokens)
[[ $docs -eq $((1500 + 500 + 300)) && $tokens -gt 0 ]] && ok "counts: $docs documents, $tokens tokens" \
  || bad "counts: $(cat "$work/d1.json")"
for d in d2 d3 d4; do
  if cmp -s <(cat "$work"/d1/part-*.tok) <(cat "$work/$d"/part-*.tok) \
     && cmp -s <(doc_lengths "$work/d1") <(doc_lengths "$work/$d") \
     && [[ $(json_field "$work/$d.json" documents) -eq $docs && $(json_field "$work/$d.json" tokens) -eq $tokens ]]; then
    ok "$d equals d1 token for token and document for document"
  else
    bad "$d differs from d1"
  fi
done
grep -q "\"checksum\": \"$(sed -n 's/.*"tokenizer_checksum":"\([0-9a-f]*\)".*/\1/p' "$work/d1.json")\"" "$work/d1/metadata.json" \
  && cmp -s "$work/d1/tokenizer.model" "$work/tok.model" && ok "metadata names the tokenizer; tokenizer.model copied" \
  || bad "metadata tokenizer"

# Errors and skips.
{ echo '{"text": "good"}'; echo '{"text": "also good"}'; echo '{"text": broken}'; echo '{"body": "no text"}'; } > "$work/bad.jsonl"
expect_fail 1 "bad.jsonl:3: malformed JSON" -- "$bin" data --tokenizer "$work/tok.model" --input "$work/bad.jsonl" --out "$work/e1"
expect_fail 1 "bad.jsonl:3: malformed JSON" -- "${mpi[@]}" -np 2 "$bin" data --tokenizer "$work/tok.model" --input "$work/bad.jsonl" --out "$work/e2"
"${mpi[@]}" -np 2 "$bin" data --tokenizer "$work/tok.model" --input "$work/bad.jsonl" --out "$work/e3" --skip-invalid \
  > "$work/e3.log" && grep -q "skipped 2 invalid records" "$work/e3.log" && grep -q "bad.jsonl:4: no field 'text'" "$work/e3.log" \
  && grep -q '"skipped": 2' "$work/e3/metadata.json" && ok "--skip-invalid counts and reports" || bad "--skip-invalid: $(cat "$work/e3.log")"
expect_fail 1 "input file not found: .*missing.txt" -- "${mpi[@]}" -np 2 "$bin" data --tokenizer "$work/tok.model" --input "$work/missing.txt" --out "$work/e4"
expect_fail 1 "already exists; pass --overwrite" -- "$bin" data --tokenizer "$work/tok.model" --input "$work/b.jsonl" --out "$work/d1"
"$bin" data --tokenizer "$work/tok.model" --input "$work/b.jsonl" --out "$work/d1" --overwrite --progress-interval 0 >/dev/null \
  && grep -q '"documents": 500' "$work/d1/metadata.json" && ok "--overwrite replaces the dataset" || bad "--overwrite"
printf 'tokenizer = "%s"\ninput = ["%s"]\ntext_field = "text"\nout = "%s"\njson = true\n' \
  "$work/tok.model" "$work/b.jsonl" "$work/cfg" > "$work/data.toml"
"$bin" data --config "$work/data.toml" > "$work/cfg.json" && grep -q '"documents":500' "$work/cfg.json" \
  && ok "data --config" || bad "data --config: $(cat "$work/cfg.json")"

# tokenizer stats: a table, and one JSON document with --json.
"$bin" tokenizer stats --tokenizer "$work/tok.model" "$work/tok.model" --input "$work/a.txt" "$work/b.jsonl" > "$work/stats.txt" \
  && grep -q "^Latin" "$work/stats.txt" && grep -q "^Han" "$work/stats.txt" && grep -q "1.000x" "$work/stats.txt" \
  && ok "tokenizer stats table" || bad "tokenizer stats: $(cat "$work/stats.txt")"
"$bin" tokenizer stats --tokenizer "$work/tok.model" --input "$work/c.jsonl.gz" --json > "$work/stats.json" \
  && [[ $(wc -l < "$work/stats.json") -eq 1 ]] && grep -q '"tokens_per_word"' "$work/stats.json" \
  && ok "tokenizer stats --json (gzip JSONL input)" || bad "tokenizer stats --json: $(cat "$work/stats.json")"
"$bin" tokenizer train --input "$work/a.txt" --vocab-size 350 --out "$work/t2.model" --json | grep -q "\"vocab_size\":350" \
  && ok "tokenizer train still works" || bad "tokenizer train"

finish
