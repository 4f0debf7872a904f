#!/usr/bin/env bash
# `polyllama sft` end to end: Alpaca and conversation records train (the loss falls, the template is stored in
# the checkpoint), and bad input is refused with the file and line, or counted with --skip-invalid; a tokenizer
# other than the checkpoint's is refused naming both checksums; `generate --chat` prompts the result through the
# template stored in it.
# Usage: test_sft.sh POLYLLAMA_BINARY
source "$(dirname "$0")/lib.sh" "$@"

for i in $(seq 1 200); do
  echo "The miller counted $((i % 17)) sacks of grain and the heron watched the weir."
done > "$work/text.txt"
{
  for i in $(seq 1 60); do
    n=$((i % 9))
    echo "{\"instruction\": \"How many sacks did the miller count on day $i?\", \"output\": \"He counted $n sacks.\"}"
    echo "{\"instruction\": \"Repeat the word.\", \"input\": \"heron $n\", \"output\": \"heron $n heron $n\"}"
    echo "{\"messages\": [{\"role\": \"user\", \"content\": \"Name a bird.\"}, {\"role\": \"assistant\", \"content\": \"A heron.\"}, {\"role\": \"user\", \"content\": \"And a number?\"}, {\"role\": \"assistant\", \"content\": \"$n.\"}]}"
  done
} > "$work/sft.jsonl"
"$bin" tokenizer train --input "$work/text.txt" --vocab-size 380 --out "$work/tok.model" >/dev/null || exit 1
"$bin" tokenizer train --input "$work/text.txt" --vocab-size 360 --out "$work/other.model" >/dev/null || exit 1
"$bin" init --run-dir "$work/base" --tokenizer "$work/tok.model" --preset tiny --seed 3 >/dev/null || exit 1
start=$work/base/ckpt/step_00000000
args=(--init-from "$start" --seq-len 64 --micro-batch 4 --global-batch 8 --lr 3e-3 --warmup-steps 5 --threads 2
      --log-interval 10 --template llama2-chat)

"$bin" sft --run-dir "$work/run" --data "$work/sft.jsonl" --steps 40 "${args[@]}" --json > "$work/out.json" 2> "$work/log" \
  || { bad "sft run: $(cat "$work/log")"; finish; exit; }
first=$(head -1 "$work/run/metrics.jsonl" | sed 's/.*"loss":\([0-9.]*\).*/\1/')
last=$(tail -1 "$work/out.json" | sed 's/.*"loss":\([0-9.]*\).*/\1/')
awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a - 1.0) }' && ok "loss fell from $first to $last" \
  || bad "loss did not fall: $first -> $last"
grep -q "sft data: 171 train + 9 validation examples" "$work/out.json" && ok "180 records, every 20th held out" \
  || bad "example counts: $(grep 'sft data' "$work/out.json")"
# --max-examples: a seeded subset of the 171 training examples, the same 9 validation examples; more than there
# are is refused with the count
"$bin" sft --run-dir "$work/sub" --data "$work/sft.jsonl" --steps 2 "${args[@]}" --max-examples 50 > "$work/sub.log" 2>&1 \
  && grep -q "sft data: 50 train + 9 validation examples" "$work/sub.log" \
  && grep -q "max-examples 50 of 171 training examples" "$work/sub.log" \
  && ok "--max-examples 50: 50 of 171 trained, validation unchanged" || bad "--max-examples: $(grep 'sft data' "$work/sub.log")"
"$bin" sft --run-dir "$work/sub2" --data "$work/sft.jsonl" --steps 2 "${args[@]}" --max-examples 500 > "$work/sub2.log" 2>&1
rc=$?
[ $rc = 1 ] && grep -q "only 171 training examples" "$work/sub2.log" && ok "--max-examples 500 refused (exit 1)" \
  || bad "--max-examples 500: rc $rc $(tail -2 "$work/sub2.log")"
grep -q "packing: .* filled" "$work/out.json" && ok "packing reported" || bad "no packing line"
grep -aqF '[INST] {system}{content} [/INST]' "$work/run/ckpt/step_00000040/model.h5" && ok "template stored in the checkpoint" || bad "no chat_template attribute in model.h5"
# generate --chat prompts through the stored template: the same record as naming it, another with another template
echo '{"prompt": "How many sacks did the miller count on day 3?"}' > "$work/q.jsonl"
chat() { "$bin" generate --ckpt "$work/run" --chat --input "$work/q.jsonl" --max-new-tokens 12 --threads 1 "$@" \
  2> /dev/null | sed 's/"tokens_per_s":[0-9.e+-]*//'; }
stored=$(chat); named=$(chat --template llama2-chat); other=$(chat --template alpaca)
[[ $stored == *'"completion"'* && "$stored" == "$named" && "$stored" != "$other" ]] \
  && ok "generate --chat prompts through the stored template: $(echo "$stored" | sed 's/.*"completion":\("[^"]*"\).*/\1/')" \
  || bad "generate --chat: stored [$stored] named [$named] other [$other]"

cp "$work/sft.jsonl" "$work/bad.jsonl"
echo '{"instruction": "no answer here"}' >> "$work/bad.jsonl"
echo '{"messages": [' >> "$work/bad.jsonl"
expect_fail 1 "bad.jsonl:181: missing field \"output\"" -- \
  "$bin" sft --run-dir "$work/bad" --data "$work/bad.jsonl" --steps 2 "${args[@]}"
"$bin" sft --run-dir "$work/skip" --data "$work/bad.jsonl" --steps 2 "${args[@]}" --skip-invalid > /dev/null 2> "$work/skip.log" \
  && grep -q "skipped 2 invalid records" "$work/skip.log" && ok "--skip-invalid counts 2" \
  || bad "--skip-invalid: $(cat "$work/skip.log")"
expect_fail 1 "other.model \(checksum [0-9a-f]+\) differs from the tokenizer of .*\(checksum [0-9a-f]+\)" -- \
  "$bin" sft --run-dir "$work/tk" --data "$work/sft.jsonl" --steps 2 "${args[@]}" --tokenizer "$work/other.model"
expect_fail 1 "--template 'nope' is neither a built-in template" -- \
  "$bin" sft --run-dir "$work/tp" --data "$work/sft.jsonl" --steps 2 --init-from "$start" --template nope
finish
