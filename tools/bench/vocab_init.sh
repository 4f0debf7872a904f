#!/usr/bin/env bash
# Which initialisation of the new embedding/LM-head rows makes continued pretraining on the new language start
# (and stay) best? A small measured comparison of resize-vocab's --init subword-mean | mean | normal:
#   1. a small LLaMA (the `tiny` preset: hidden 64, 2 layers) with LLaMA 2's tokenizer is pretrained briefly on English plus the
#      Chinese training documents, so the base rows (Han characters, byte pieces) mean something;
#   2. LLaMA 2's tokenizer is extended with pieces trained on the Chinese corpus (tokenizer extend);
#   3. for each init (of the embedding, and of the untied LM head): resize-vocab, then continued pretraining on
#      Chinese only (fresh optimizer, same data order); reported: validation loss on held-out Chinese documents
#      at step 0 and after the steps, and the training loss of the first step.
# Needs ../shared/data (LLaMA 2's tokenizer, the zh and en corpora). A few minutes on 2 cores.
# Usage: tools/bench/vocab_init.sh [BUILD_DIR] [STEPS_A] [STEPS_B]
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=${1:-build}/polyllama
steps_a=${2:-300}
steps_b=${3:-150}
data=../shared/data
[[ -f $data/tokenizers/llama2-tokenizer.model ]] || { echo "no $data/tokenizers/llama2-tokenizer.model"; exit 77; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export OMP_NUM_THREADS=2

# Chinese documents (blank-line separated); every 10th is held out: pretrain --val-every 10 holds out exactly
# documents 9, 19, ... so stage 1 trains on the others only.
cat "$data"/corpora/zh/*.txt | awk 'BEGIN{RS=""; ORS="\n\n"} {print}' > "$work/zh.txt"
awk 'BEGIN{RS=""; ORS="\n\n"} NR % 10 != 0 {print}' "$work/zh.txt" > "$work/zh_train.txt"
awk 'BEGIN{RS=""; ORS="\n\n"} {print}' "$data/corpora/en/tinyshakespeare_input.txt" > "$work/en.txt"
echo "zh documents: $(awk 'BEGIN{RS=""} END{print NR}' "$work/zh.txt") (training: $(awk 'BEGIN{RS=""} END{print NR}' "$work/zh_train.txt"))"

model=(--preset tiny)  # hidden 64, 2 layers, GQA 4/2
common=(--blank-line-docs --seq-len 64 --micro-batch 8 --threads 2 --log-interval 50 --eval-batches 0)
"$bin" init --run-dir "$work/base" --tokenizer "$data/tokenizers/llama2-tokenizer.model" "${model[@]}" >/dev/null
echo "== stage 1: $steps_a steps on English + Chinese with LLaMA 2's tokenizer"
"$bin" pretrain --run-dir "$work/base" --data "$work/en.txt" "$work/zh_train.txt" "${common[@]}" --steps "$steps_a" \
  --lr 3e-3 --min-lr 3e-4 --warmup-steps 30 --val-every 0 --json | tail -1

echo "== tokenizer extend"
"$bin" tokenizer extend --base "$data/tokenizers/llama2-tokenizer.model" --train-on "$work/zh_train.txt" \
  --new-pieces 8000 --out "$work/merged.model" --report "$work/zh.txt" 2>&1 | grep -E "base pieces|^total" | head -3

printf '\n%-13s %-13s %-16s %-16s %s\n' init head-init "val loss step 0" "val loss step $steps_b" "train loss step 1"
for pair in subword-mean:subword-mean mean:mean normal:normal subword-mean:mean subword-mean:normal; do
  init=${pair%%:*} head=${pair##*:}
  "$bin" resize-vocab --checkpoint "$work/base" --tokenizer "$work/merged.model" --out "$work/r_$pair" \
    --init "$init" --head-init "$head" >/dev/null 2>&1
  step=$(cat "$work/r_$pair/ckpt/latest")
  # Step 0: one step at learning rate 1e-30 (below every weight's fp32 ulp, so nothing moves) reports the
  # validation loss of the resized model as it is.
  v0=$("$bin" pretrain --run-dir "$work/z_$pair" --init-from "$work/r_$pair/ckpt/$step" --data "$work/zh.txt" \
         "${common[@]}" --val-every 10 --steps 1 --lr 1e-30 --min-lr 1e-30 --warmup-steps 0 --json 2>/dev/null | tail -1)
  vn=$("$bin" pretrain --run-dir "$work/c_$pair" --init-from "$work/r_$pair/ckpt/$step" --data "$work/zh.txt" \
         "${common[@]}" --val-every 10 --steps "$steps_b" --lr 1e-3 --min-lr 1e-4 --warmup-steps 10 --json 2>/dev/null | tail -1)
  first=$(head -1 "$work/c_$pair/metrics.jsonl" | python3 -c 'import json,sys; print("%.4f" % json.loads(sys.stdin.readline())["loss"])')
  printf '%-13s %-13s %-16s %-16s %s\n' "$init" "$head" \
    "$(python3 -c 'import json,sys; print("%.4f" % json.loads(sys.argv[1])["val_loss"])' "$v0")" \
    "$(python3 -c 'import json,sys; print("%.4f" % json.loads(sys.argv[1])["val_loss"])' "$vn")" "$first"
done
