#!/usr/bin/env bash
# Training throughput of the parallel layouts on the bench config (dim 512, 8 layers, 8 heads / 4 kv heads,
# ffn 1408, vocab 32000 from the LLaMA-2 tokenizer; seq 256, global batch 8 = micro-batch 4 x 2): one process
# with 2 threads, dp=2 (2 processes x 1 thread) and tp=2 (2 processes x 1 thread), the same samples in the same
# order. Prints tokens/s (steps 2.. of each run, the first one warms up) and the bytes each collective moved
# on rank 0 over the whole run.
# Usage: tools/bench/parallel_tokens_per_s.sh [STEPS=6]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
steps=${1:-6}
bin=${POLYLLAMA:-$root/build/polyllama}
data=$root/../shared/data/corpora/en/tinyshakespeare_input.txt
tok=$root/../shared/data/tokenizers/llama2-tokenizer.model
[[ -f $data && -f $tok ]] || { echo "needs ../shared/data (tinyshakespeare, llama2 tokenizer)" >&2; exit 1; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
"$bin" init --run-dir "$tmp/init" --tokenizer "$tok" --preset bench --seed 1 >/dev/null
run() {  # name np threads tp
  cp -r "$tmp/init" "$tmp/$1"
  OMP_NUM_THREADS=$3 mpirun --oversubscribe -np "$2" "$bin" pretrain --run-dir "$tmp/$1" --data "$data" \
    --steps "$steps" --seq-len 256 --micro-batch 4 --global-batch 8 --threads "$3" --tp "$4" --warmup-steps 1 \
    --log-interval 1 --val-every 0 --json > "$tmp/$1.log" 2>&1 || { cat "$tmp/$1.log"; exit 1; }
  # tokens/s of steps 2..: the progress lines print per-interval throughput.
  tps=$(grep -o '[0-9]* tok/s' "$tmp/$1.log" | tail -n +2 | awk '{s+=$1; n++} END {printf "%.0f", s/n}')
  loss=$(grep -o '"loss":[0-9.]*' "$tmp/$1.log" | cut -d: -f2)
  coll=$(grep -o 'collectives (rank 0): .*' "$tmp/$1.log" | cut -d: -f2- || true)
  printf "%-28s %8s tok/s  final loss %s  |%s\n" "$5" "$tps" "$loss" "${coll:- none}"
}
run single 1 2 1 "np=1, 2 threads"
run dp2 2 1 1 "np=2 dp=2, 1 thread each"
run tp2 2 1 2 "np=2 tp=2, 1 thread each"
