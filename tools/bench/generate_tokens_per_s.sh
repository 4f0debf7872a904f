#!/usr/bin/env bash
# Tokens/s of `polyllama generate` on the CPU benchmark config (--preset bench: hidden 512, 8 layers, 8/4 heads,
# ffn 1408, vocab 32000, 56.4M parameters, random weights), batch 1 and batch 8, on THREADS (2) threads:
# prompts of ~40 tokens, 128 new tokens each (EOS ignored, so every run decodes the same number of tokens).
#   tools/bench/generate_tokens_per_s.sh [TOKENIZER]   (default ../shared/data/tokenizers/llama2-tokenizer.model)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${POLYLLAMA:-$root/build/polyllama}
tok=${1:-$root/../shared/data/tokenizers/llama2-tokenizer.model}
threads=${THREADS:-2}
[[ -f $tok ]] || { echo "no tokenizer at $tok (pass one: any 32000-piece SentencePiece model)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$bin" init --run-dir "$work/run" --tokenizer "$tok" --preset bench --vocab-size 32000 > /dev/null
for i in $(seq 1 8); do
  echo "{\"prompt\": \"Prompt number $i: the river carries the boats of the town down to the sea, and the sea returns the rain to the hills.\"}"
done > "$work/p8.jsonl"
head -1 "$work/p8.jsonl" > "$work/p1.jsonl"
for b in 1 8; do
  for round in 1 2; do
    "$bin" generate --ckpt "$work/run" --input "$work/p$b.jsonl" --output "$work/out.jsonl" --batch-size $b \
      --max-new-tokens 128 --ignore-eos --threads "$threads" 2>&1 | sed "s/^/batch $b, round $round: /"
  done
done
