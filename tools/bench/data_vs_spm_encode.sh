#!/usr/bin/env bash
# Tokenization throughput of `polyllama data` on 2 cores against Debian's `spm_encode` (SentencePiece's own
# command-line encoder, one core) on the same file with the same .model. Runs alternate so both see the same
# machine; each time is the wall clock of the whole command (start-up, reading, encoding, writing), median of
# ROUNDS. Prints tokens/s and input MB/s of each and the ratios against spm_encode.
# polyllama rows: mpirun -np 2 and one process with --threads 2 (its default encoder, which gives SentencePiece's
# ids), and mpirun -np 2 --encoder sentencepiece (SentencePiece's encoder inside polyllama, for comparison).
# Usage: tools/bench/data_vs_spm_encode.sh [CORPUS] [MODEL]
#   CORPUS  text with blank-line documents (default: tools/corpus-fortunes-zh.sh's corpus repeated REPEAT times)
#   MODEL   SentencePiece .model (default: ../shared/data/tokenizers/llama2-tokenizer.model, else an 8000-piece
#           model trained on the corpus)
# Environment: ROUNDS (3), REPEAT (10, about 20 MB; REPEAT=1 gives a corpus without repeats), POLYLLAMA (binary).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${POLYLLAMA:-$root/build/polyllama}
rounds=${ROUNDS:-3}
repeat=${REPEAT:-10}
command -v spm_encode >/dev/null || { echo "needs spm_encode (apt-get install sentencepiece)" >&2; exit 1; }
command -v mpirun >/dev/null || { echo "needs mpirun (apt-get install openmpi-bin)" >&2; exit 1; }
[[ -x $bin ]] || { echo "no polyllama binary at $bin (build it, or set POLYLLAMA)" >&2; exit 1; }
if [[ $(id -u) -eq 0 ]]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
export OMP_NUM_THREADS=1
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

corpus=${1:-}
if [[ -z $corpus ]]; then
  bash "$root/tools/corpus-fortunes-zh.sh" "$tmp/one.txt" >/dev/null
  for _ in $(seq 1 "$repeat"); do cat "$tmp/one.txt"; done > "$tmp/corpus.txt"
  corpus=$tmp/corpus.txt
  name="fortunes-zh x$repeat"
else
  name=$(basename "$corpus")
fi
model=${2:-$root/../shared/data/tokenizers/llama2-tokenizer.model}
if [[ ! -f $model ]]; then
  "$bin" tokenizer train --input "$corpus" --vocab-size 8000 --out "$tmp/bench.model" >/dev/null
  model=$tmp/bench.model
fi
bytes=$(stat -c %s "$corpus")
echo "corpus: $name ($bytes bytes), model: $model ($(getconf _NPROCESSORS_ONLN) cores here)"

now() { date +%s.%N; }
declare -A secs tokens
run() {  # run NAME TOKENS_FROM(json|spm) command...
  local name=$1 kind=$2; shift 2
  local t0 t1; t0=$(now); "$@" > "$tmp/out.txt"; t1=$(now)
  secs[$name]+="$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }') "
  if [[ $kind == json ]]; then tokens[$name]=$(sed -n 's/.*"tokens":\([0-9]*\).*/\1/p' "$tmp/out.txt" | tail -1); fi
}
data=(data --tokenizer "$model" --input "$corpus" --blank-line-docs --progress-interval 0 --overwrite --json)
for r in $(seq 1 "$rounds"); do
  run spm spm spm_encode --model="$model" --output_format=id --input="$corpus" --output="$tmp/spm.ids"
  run np2 json mpirun --oversubscribe --bind-to none -np 2 "$bin" "${data[@]}" --out "$tmp/np2"
  run threads2 json "$bin" "${data[@]}" --threads 2 --out "$tmp/t2"
  run np2spm json mpirun --oversubscribe --bind-to none -np 2 "$bin" "${data[@]}" --encoder sentencepiece --out "$tmp/np2spm"
  echo "round $r done"
done
tokens[spm]=$(wc -w < "$tmp/spm.ids")
cmp -s <(cat "$tmp"/np2/part-*.tok) <(cat "$tmp"/np2spm/part-*.tok) && echo "polyllama's encoder and SentencePiece's: identical shards"

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
printf '\n| %-46s | %5s | %8s | %10s | %12s | %8s | %-22s |\n' encoder cores seconds tokens tokens/s "MB/s" "vs spm_encode (tok/s, MB/s)"
printf '|%s|%s|%s|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..48})" ------- ---------- ------------ -------------- ---------- ------------------------
spm_s=$(echo "${secs[spm]}" | median)
for row in "spm:spm_encode (SentencePiece 0.1.97, per line):1" \
           "np2:polyllama data, mpirun -np 2:2" "threads2:polyllama data --threads 2:2" \
           "np2spm:polyllama data -np 2 --encoder sentencepiece:2"; do
  IFS=: read -r key label cores <<< "$row"
  s=$(echo "${secs[$key]}" | median)
  awk -v label="$label" -v cores="$cores" -v s="$s" -v tok="${tokens[$key]}" -v bytes="$bytes" -v ss="$spm_s" \
      -v stok="${tokens[spm]}" 'BEGIN {
    tps = tok / s; mbs = bytes / s / 1e6; stps = stok / ss; smbs = bytes / ss / 1e6
    printf "| %-46s | %5s | %8.2f | %10d | %12.0f | %8.2f | %6.2fx, %6.2fx |\n", label, cores, s, tok, tps, mbs, tps / stps, mbs / smbs
  }'
done
echo
echo "tokens: spm_encode encodes each line on its own (a leading space per line, no newlines); polyllama encodes each"
echo "blank-line-separated document whole and appends EOS, so its token counts differ; MB/s compares the same input."
