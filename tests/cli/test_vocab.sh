#!/usr/bin/env bash
# Vocabulary extension through the command line: tokenizer extend (--train-on and --add give the same model,
# spm_encode loads it) -> resize-vocab of a pretrained checkpoint (with AdamW state) -> pretraining continues
# on Chinese text with the merged tokenizer; and the errors a user sees.
# Usage: test_vocab.sh POLYLLAMA_BINARY
source "$(dirname "$0")/lib.sh" "$@"

for i in $(seq 1 300); do
  echo "The river runs to the sea number $i, and the sea returns the rain to the hills."
  echo
done > "$work/en.txt"
for i in $(seq 1 200); do
  echo "学而时习之，不亦说乎？有朋自远方来，不亦乐乎？人不知而不愠，不亦君子乎？第${i}章"
  echo "关关雎鸠，在河之洲。窈窕淑女，君子好逑。中国人民的文化。"
  echo
done > "$work/zh.txt"

"$bin" tokenizer train --input "$work/en.txt" --vocab-size 300 --out "$work/en.model" >/dev/null \
  && ok "base tokenizer" || bad "base tokenizer"
"$bin" tokenizer extend --base "$work/en.model" --train-on "$work/zh.txt" --new-pieces 340 --out "$work/m.model" \
  --json > "$work/ext.json" 2>"$work/ext.log" \
  && grep -q '"base_pieces":300' "$work/ext.json" && grep -Eq '"vocab_size":(384|448|512)' "$work/ext.json" \
  && [[ -f $work/m.train.model ]] && ok "extend --train-on" || bad "extend --train-on: $(cat "$work/ext.json" "$work/ext.log")"
"$bin" tokenizer extend --base "$work/en.model" --add "$work/m.train.model" --out "$work/m2.model" --report "$work/zh.txt" \
  > "$work/ext2.txt" 2>&1 && cmp -s "$work/m.model" "$work/m2.model" && grep -q "vs 1st" "$work/ext2.txt" \
  && ok "extend --add gives the same model, fertility report" || bad "extend --add: $(cat "$work/ext2.txt")"
if command -v spm_encode >/dev/null; then
  echo "学而时习之 the river" | spm_encode --model "$work/m.model" --output_format=id > "$work/ids.txt" \
    && [[ -s $work/ids.txt ]] && ok "spm_encode loads the merged model" || bad "spm_encode"
fi
expect_fail 1 "give --add OTHER.model or --train-on" -- "$bin" tokenizer extend --base "$work/en.model" --out "$work/x.model"
expect_fail 1 "--out must end in .model" -- "$bin" tokenizer extend --base "$work/en.model" --add "$work/m.model" --out "$work/x"
expect_fail 1 "excludes" -- "$bin" tokenizer extend --base "$work/en.model" --add "$work/m.model" --train-on "$work/zh.txt" --out "$work/x.model"
expect_fail 1 "pad-to-multiple must be >= 1" -- "$bin" tokenizer extend --base "$work/en.model" --add "$work/m.model" --out "$work/x.model" --pad-to-multiple 0
expect_fail 1 "not a SentencePiece model" -- "$bin" tokenizer extend --base "$work/en.txt" --add "$work/m.model" --out "$work/x.model"

# A pretrained checkpoint with optimizer state, resized, then trained further on Chinese.
"$bin" init --run-dir "$work/run" --tokenizer "$work/en.model" --preset tiny --num-hidden-layers 1 >/dev/null 2>&1 \
  && "$bin" pretrain --run-dir "$work/run" --data "$work/en.txt" --blank-line-docs --seq-len 32 --micro-batch 4 \
       --steps 3 --threads 2 >/dev/null 2>&1 && [[ -f $work/run/ckpt/step_00000003/optim.h5 ]] \
  && ok "pretrained base" || bad "pretrained base"
"$bin" resize-vocab --checkpoint "$work/run" --tokenizer "$work/m.model" --out "$work/zh_run" --json \
  > "$work/rv.json" 2>"$work/rv.log" && grep -q '"optimizer_state":true' "$work/rv.json" \
  && [[ $(cat "$work/zh_run/ckpt/latest") == step_00000003 ]] && ok "resize-vocab" \
  || bad "resize-vocab: $(cat "$work/rv.json" "$work/rv.log")"
"$bin" pretrain --run-dir "$work/zh_run" --data "$work/zh.txt" --blank-line-docs --seq-len 32 --micro-batch 4 \
  --steps 5 --threads 2 --json > "$work/zh.json" 2>"$work/zh.log" && grep -q '"step":5' "$work/zh.json" \
  && grep -q "resumed from .*step_00000003" "$work/zh.json" "$work/zh.log" && ok "pretraining continues with the merged tokenizer" \
  || bad "continue: $(cat "$work/zh.json" "$work/zh.log")"
expect_fail 1 "already holds a checkpoint" -- "$bin" resize-vocab --checkpoint "$work/run" --tokenizer "$work/m.model" --out "$work/zh_run"
expect_fail 1 "must extend the checkpoint's" -- "$bin" resize-vocab --checkpoint "$work/run" --tokenizer "$work/m.train.model" --out "$work/bad"
expect_fail 1 "neither a checkpoint step directory" -- "$bin" resize-vocab --checkpoint "$work/none" --tokenizer "$work/m.model" --out "$work/bad"
expect_fail 1 "nothing to grow" -- "$bin" resize-vocab --checkpoint "$work/run" --tokenizer "$work/en.model" --out "$work/bad"
[[ ! -e $work/bad/ckpt/latest ]] && ok "no checkpoint left by a refused resize" || bad "refused resize left a checkpoint"
if command -v mpirun >/dev/null; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
  expect_fail 1 "runs on one rank" -- mpirun --oversubscribe -np 2 "$bin" resize-vocab --checkpoint "$work/run" \
    --tokenizer "$work/m.model" --out "$work/np2"
fi
finish
