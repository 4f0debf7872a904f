#!/usr/bin/env bash
# `pretrain --tp` (and `sft --tp`) under mpirun: tp 2, dp 2 and tp 2 x dp 2 give the single-process losses (metrics.jsonl, within
# 1e-5 relative: fp32 sums in another order) and resume across layouts; layouts that do not fit are refused with
# the numbers. Skips (77) without mpirun.
# Usage: test_parallel_cli.sh POLYLLAMA_BINARY
source "$(dirname "$0")/lib.sh" "$@"
command -v mpirun >/dev/null || { echo "no mpirun: skipped"; exit 77; }
if [[ $(id -u) -eq 0 ]]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
export OMP_NUM_THREADS=1
mpi=(mpirun --oversubscribe --bind-to none)

ledger_text "$work/text.txt" 300
"$bin" tokenizer train --input "$work/text.txt" --vocab-size 320 --out "$work/tok.model" >/dev/null || exit 1
"$bin" init --run-dir "$work/init" --tokenizer "$work/tok.model" --preset tiny --seed 3 >/dev/null || exit 1
args=(--data "$work/text.txt" --blank-line-docs --seq-len 32 --micro-batch 2 --global-batch 8 --steps 6
      --log-interval 1 --warmup-steps 1 --lr 2e-3 --threads 1 --save-interval 3)
same_losses() { close_losses "$1" "$2" 6 1e-5 "$3"; }  # every step within 1e-5 relative
cp -r "$work/init" "$work/one"
"$bin" pretrain --run-dir "$work/one" "${args[@]}" >/dev/null 2>&1 || bad "single-process pretrain"
for layout in "2 2" "2 1" "4 2"; do
  read -r np tp <<< "$layout"
  name="np${np}_tp${tp}"
  cp -r "$work/init" "$work/$name"
  if "${mpi[@]}" -np "$np" "$bin" pretrain --run-dir "$work/$name" "${args[@]}" --tp "$tp" > "$work/$name.log" 2>&1; then
    same_losses "$work/$name" "$work/one" "np $np --tp $tp losses equal one process" && passes=$((passes + 1)) \
      || fails=$((fails + 1))
  else
    bad "np $np --tp $tp: $(tail -3 "$work/$name.log")"
  fi
done
grep -q "tp 2 x dp 2" "$work/np4_tp2.log" && grep -q "collectives (rank 0): all_reduce" "$work/np4_tp2.log" \
  && ok "the log names the layout and the collectives' traffic" || bad "layout or traffic line missing"

# Resharding: the tp 2 x dp 2 run's step-3 checkpoint continued on one process gives the same steps 4..6.
mkdir -p "$work/re/ckpt" && cp -r "$work/np4_tp2/ckpt/step_00000003" "$work/re/ckpt/" && echo step_00000003 > "$work/re/ckpt/latest"
head -3 "$work/np4_tp2/metrics.jsonl" > "$work/re/metrics.jsonl"
"$bin" pretrain --run-dir "$work/re" "${args[@]}" >/dev/null 2>&1 && same_losses "$work/re" "$work/one" \
  "tp 2 x dp 2 checkpoint resumed on one process" && passes=$((passes + 1)) || fails=$((fails + 1))

# sft (packed examples, answer-only loss) shares the loop: tp 2 x dp 2 equals one process too.
for i in $(seq 1 60); do
  echo "{\"instruction\": \"How many sacks did the miller count on day $i?\", \"output\": \"He counted $((i % 9)) sacks.\"}"
done > "$work/sft.jsonl"
sargs=(--init-from "$work/init/ckpt/step_00000000" --data "$work/sft.jsonl" --seq-len 64 --micro-batch 2 --global-batch 8
       --steps 6 --lr 3e-3 --warmup-steps 1 --threads 1 --log-interval 1 --template llama2-chat)
"$bin" sft --run-dir "$work/sft1" "${sargs[@]}" >/dev/null 2>&1 || bad "single-process sft"
"${mpi[@]}" -np 4 "$bin" sft --run-dir "$work/sft4" "${sargs[@]}" --tp 2 > "$work/sft4.log" 2>&1 \
  && same_losses "$work/sft4" "$work/sft1" "sft at tp 2 x dp 2 equals one process" && passes=$((passes + 1)) \
  || { fails=$((fails + 1)); tail -3 "$work/sft4.log"; }

expect_fail 1 "--tp 3 does not divide the 2 launched ranks" -- "${mpi[@]}" -np 2 "$bin" pretrain --run-dir "$work/x" \
  "${args[@]}" --tp 3
cp -r "$work/init" "$work/tp4"
expect_fail 1 "num_key_value_heads = 2 does not divide by --tp 4" -- "${mpi[@]}" -np 4 "$bin" pretrain \
  --run-dir "$work/tp4" "${args[@]}" --tp 4
finish
