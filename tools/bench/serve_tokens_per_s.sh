#!/usr/bin/env bash
# `polyllama serve` throughput: generated tokens/s with 1 and with 16 concurrent clients on the bench config
# (56M parameters, LLaMA 2's tokenizer, random weights), 32 requests of 64 sampled tokens each, one server, the
# same run. Continuous batching is what turns 16 clients into a batch: the ratio of the two lines is its gain. For
# reference, `generate --batch-size 16` on the same 32 prompts (the offline upper bound) is timed alongside.
# Usage: tools/bench/serve_tokens_per_s.sh [THREADS=2] [MAX_BATCH=16]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${POLYLLAMA:-$root/build/polyllama}
tok=${TOKENIZER:-$root/../shared/data/tokenizers/llama2-tokenizer.model}
threads=${1:-2}
batch=${2:-16}
work=$(mktemp -d)
pid=""
trap '[[ -n $pid ]] && kill $pid 2>/dev/null; rm -rf "$work"' EXIT
"$bin" init --run-dir "$work/run" --tokenizer "$tok" --preset bench --max-position-embeddings 512 --seed 1 > /dev/null
OMP_NUM_THREADS=$threads "$bin" serve --ckpt "$work/run" --port 0 --port-file "$work/port" --max-batch "$batch" \
  > "$work/serve.log" 2>&1 &
pid=$!
for _ in $(seq 1 300); do [[ -s $work/port ]] && break; sleep 0.1; done
port=$(cat "$work/port")
echo "serve: bench config, $threads threads, --max-batch $batch"
for clients in 1 16; do
  python3 "$root/tests/cli/serve_client.py" bench "$port" "$clients" 64 32
done
kill -TERM $pid; wait $pid; pid=""
python3 -c 'import json
W = ["the mill", "a heron", "coins", "the weir", "sacks", "river", "ledger", "miller", "stone", "water"]
for i in range(32): print(json.dumps({"prompt": " ".join(W[(i + k) % len(W)] for k in range(20))}))' > "$work/p.jsonl"
OMP_NUM_THREADS=$threads "$bin" generate --ckpt "$work/run" --input "$work/p.jsonl" --output "$work/g.jsonl" \
  --max-new-tokens 64 --ignore-eos --temperature 0.7 --batch-size 16 --json | sed 's/^/generate --batch-size 16: /'
