#!/usr/bin/env bash
# `polyllama eval` end to end, on a small MMLU-format benchmark written here (no ../shared needed):
#   a checkpoint trained until it answers each of the 8 val questions with a chosen letter (the gold one for 7 of
#   them, a wrong one for the 6th) predicts exactly those letters and scores exactly 7/8 = 0.875, with per-subject
#   accuracies 1 and 3/4; the results files have lm-evaluation-harness's layout; -np 2 (dp 2) writes bit-identical
#   samples, results, perplexity and generated answers to one process, and -np 4 --tp 2 (tp 2 x dp 2) the same
#   predictions with log-probabilities within 1e-4 (a tp group sums its ranks' partial products in another order);
#   --dump-prompts needs no model; bad input exits 1 naming what is wrong.
# Usage: test_eval.sh POLYLLAMA_BINARY
source "$(dirname "$0")/lib.sh" "$@"
here=$(cd "$(dirname "$0")" && pwd)
export OMP_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
bench="$work/bench"
mkdir -p "$bench/mmlu/dev" "$bench/mmlu/val"
python3 "$here/eval_test_data.py" bench "$bench/mmlu" || bad "writing the benchmark"

# ---- prompts without a model ----
"$bin" eval --tasks mmlu --bench-dir "$bench" --num-fewshot 0 --dump-prompts "$work/p0.jsonl" > /dev/null 2>&1 &&
  [[ $(wc -l < "$work/p0.jsonl") -eq 8 ]] && ok "--dump-prompts: 8 prompts, no model" || bad "--dump-prompts"

# ---- a checkpoint that answers what it was taught: the gold letter, except one question taught a wrong one ----
python3 "$here/eval_test_data.py" teach "$work/p0.jsonl" "$work" || bad "writing the training text"
# The tokenizer learns the letters with their leading space ("▁A" ...) from the repeated answers.
for r in $(seq 1 30); do cat "$work/train.txt"; done > "$work/corpus.txt"
"$bin" tokenizer train --input "$work/corpus.txt" --vocab-size 400 --out "$work/tok.model" > /dev/null 2>&1 ||
  bad "tokenizer train"
"$bin" init --run-dir "$work/run" --tokenizer "$work/tok.model" --preset tiny --max-position-embeddings 512 \
  --seed 3 > /dev/null 2>&1 || bad "init"
# Instruction tuning with the plain template: each example alone, BOS + the prompt + the taught letter, loss on the
# letter only (pretraining on the packed text instead lets a model learn the letters from the documents before them).
"$bin" sft --run-dir "$work/sft" --init-from "$work/run/ckpt/step_00000000" --data "$work/train.jsonl" \
  --template plain --val-every 0 --steps 200 --seq-len 128 --micro-batch 8 --lr 3e-3 --warmup-steps 10 \
  --min-lr 3e-4 --log-interval 200 > "$work/pt.log" 2>&1 && ok "sft on the taught answers" ||
  bad "sft: $(tail -3 "$work/pt.log")"
"$bin" eval --ckpt "$work/sft" --tasks mmlu --bench-dir "$bench" --num-fewshot 0 --out "$work/ev0" --json \
  > "$work/ev0.json" 2> "$work/ev0.log" && ok "eval 0-shot" || bad "eval: $(tail -3 "$work/ev0.log")"
python3 "$here/eval_test_data.py" check-taught "$work" &&
  ok "the predictions are the taught letters; acc exactly 7/8, subjects 1 and 3/4" || bad "controlled scores"

# ---- the same results however the ranks split the work ----
head -c 3000 "$work/corpus.txt" > "$work/heldout.txt"
args=(eval --ckpt "$work/sft" --tasks mmlu,ppl --bench-dir "$bench" --ppl-files xx:"$work/heldout.txt"
      --blank-line-docs --ppl-seq 64 --ppl-stride 32 --batch-size 3)
"$bin" "${args[@]}" --out "$work/np1" > /dev/null 2>&1 || bad "eval -np 1"
if command -v mpirun > /dev/null; then
  mpirun --oversubscribe -np 2 "$bin" "${args[@]}" --out "$work/np2" > /dev/null 2>&1 || bad "eval -np 2"
  mpirun --oversubscribe -np 4 "$bin" "${args[@]}" --tp 2 --out "$work/tp2" > /dev/null 2>&1 || bad "eval -np 4 --tp 2"
  cmp -s "$work/np1/samples_mmlu.jsonl" "$work/np2/samples_mmlu.jsonl" &&
    ok "-np 2: samples identical to one process" || bad "-np 2 samples differ"
  # Generated answers too (one generate() call per subject): the same completions under -np 2.
  gen=(eval --ckpt "$work/sft" --tasks mmlu --bench-dir "$bench" --method generate --max-new-tokens 4 --batch-size 3)
  "$bin" "${gen[@]}" --out "$work/g1" > /dev/null 2>&1 || bad "eval --method generate"
  mpirun --oversubscribe -np 2 "$bin" "${gen[@]}" --out "$work/g2" > /dev/null 2>&1 ||
    bad "eval --method generate -np 2"
  cmp -s "$work/g1/samples_mmlu.jsonl" "$work/g2/samples_mmlu.jsonl" &&
    ok "-np 2, generated answers: samples identical to one process" || bad "-np 2 generated samples differ"
  python3 "$here/eval_test_data.py" check-split "$work" &&
    ok "-np 2 results identical; -np 4 --tp 2 the same predictions, log-probabilities within 1e-4" ||
    bad "split runs differ"
fi

# ---- bad input ----
expect_fail 1 "unknown task" -- "$bin" eval --tasks nosuch --bench-dir "$bench" --dump-prompts "$work/x.jsonl"
expect_fail 1 "needs --bench-dir" -- "$bin" eval --tasks mmlu --ckpt "$work/run" --out "$work/y"
expect_fail 1 "needs --ppl-files" -- "$bin" eval --tasks ppl --ckpt "$work/run" --out "$work/y"
printf 'q,a,b,c,d,E\n' > "$bench/mmlu/val/abstract_algebra_val.csv"
expect_fail 1 "abstract_algebra_val.csv:1" -- "$bin" eval --tasks mmlu --bench-dir "$bench" \
  --dump-prompts "$work/x.jsonl"
finish
