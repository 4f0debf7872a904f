#!/usr/bin/env bash
# The polyllama pipeline on one node: corpus -> tokenizer -> token shards -> init -> continued pretraining ->
# instruction tuning -> generation.
# With no arguments it runs the embedded default: Chinese poems and prose from Debian's fortunes-zh, a
# 8000-piece tokenizer, a 4-layer model, 300 steps on 2 cores (a few minutes).
# Every stage is a polyllama verb; override any of them with the variables below.
#   RUN_DIR   (runs/default)   where the tokenizer, checkpoints and metrics go
#   CORPUS    (generated)      plain-text file(s); blank lines separate documents
#   VOCAB     (8000)           pieces of the new tokenizer
#   MODEL     (--hidden-size 128 --intermediate-size 352 --num-hidden-layers 4 --num-attention-heads 4
#              --num-key-value-heads 2)    model flags for `polyllama init`
#   STEPS (300)  SEQ (128)  MICRO_BATCH (8)  LR (3e-3)  THREADS (all cores)
#   SFT_DATA  (generated)      instruction records (JSONL/JSON); the default asks about the Tang poems
#   SFT_TEMPLATE (alpaca)  SFT_STEPS (100)  SFT_SEQ (256)  SFT_LR (1e-3)
#   GEN_PROMPTS (generated)    JSONL prompts answered by the instruction-tuned model (`generate --chat`)
#   GEN_TOKENS (48)            new tokens per answer at most
#   POLYLLAMA (build/polyllama)  LAUNCH ("" ; e.g. "srun" or "mpirun -np 1")
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${POLYLLAMA:-$root/build/polyllama}
run=${RUN_DIR:-$root/runs/default}
launch=${LAUNCH:-}
mkdir -p "$run"
[[ -x $bin ]] || { echo "pipeline: $bin not found; build first (tools/build.sh)" >&2; exit 1; }

corpus=${CORPUS:-}
if [[ -z $corpus ]]; then
  corpus=$run/corpus.txt
  [[ -s $corpus ]] || "$root/tools/corpus-fortunes-zh.sh" "$corpus"
fi
# shellcheck disable=SC2206
corpus_files=($corpus)

if [[ ! -s $run/tokenizer.model ]]; then
  echo "== tokenizer train"
  $launch "$bin" tokenizer train --input "${corpus_files[@]}" --vocab-size "${VOCAB:-8000}" --out "$run/tokenizer.model" \
    --spm character_coverage=0.9995
fi
if [[ ! -f $run/data/metadata.json ]]; then
  echo "== data"
  $launch "$bin" data --tokenizer "$run/tokenizer.model" --input "${corpus_files[@]}" --blank-line-docs \
    --out "$run/data"
fi
if [[ ! -f $run/ckpt/latest ]]; then
  echo "== init"
  # shellcheck disable=SC2086
  $launch "$bin" init --run-dir "$run" --tokenizer "$run/tokenizer.model" --preset tiny \
    ${MODEL:---hidden-size 128 --intermediate-size 352 --num-hidden-layers 4 --num-attention-heads 4 --num-key-value-heads 2}
fi
echo "== pretrain"
threads=()
[[ -n ${THREADS:-} ]] && threads=(--threads "$THREADS")
set +e
$launch "$bin" pretrain --run-dir "$run" --data "$run/data" \
  --steps "${STEPS:-300}" --seq-len "${SEQ:-128}" --micro-batch "${MICRO_BATCH:-8}" --lr "${LR:-3e-3}" \
  --min-lr 3e-4 --warmup-steps 30 --log-interval 25 --eval-interval 100 --save-interval 100 --keep-last 2 "${threads[@]}"
rc=$?
set -e
if [[ $rc -eq 3 ]]; then echo "pipeline: stopped by a signal after a clean checkpoint; rerun to resume"; exit 3; fi
[[ $rc -eq 0 ]] || exit $rc

sft_data=${SFT_DATA:-}
if [[ -z $sft_data ]]; then
  sft_data=$run/sft.jsonl
  [[ -s $sft_data ]] || "$root/tools/sft-demo-data.sh" "$sft_data"
fi
echo "== sft"
set +e
$launch "$bin" sft --run-dir "$run/sft" --init-from "$run/ckpt/$(cat "$run/ckpt/latest")" --data "$sft_data" \
  --template "${SFT_TEMPLATE:-alpaca}" --steps "${SFT_STEPS:-100}" --seq-len "${SFT_SEQ:-256}" \
  --micro-batch "${MICRO_BATCH:-8}" --lr "${SFT_LR:-1e-3}" --min-lr 1e-4 --warmup-steps 10 --log-interval 25 \
  --save-interval 50 --keep-last 2 "${threads[@]}"
rc=$?
set -e
if [[ $rc -eq 3 ]]; then echo "pipeline: stopped by a signal after a clean checkpoint; rerun to resume"; exit 3; fi
[[ $rc -eq 0 ]] || exit $rc
gen_prompts=${GEN_PROMPTS:-}
if [[ -z $gen_prompts ]]; then
  gen_prompts=$run/prompts.jsonl
  printf '%s\n' '{"instruction": "写一首题为《静夜思》的诗。"}' \
    '{"instruction": "请续写这首诗。", "input": "白日依山尽，黄河入海流。"}' > "$gen_prompts"
fi
echo "== generate (greedy, through the sft template)"
$launch "$bin" generate --ckpt "$run/sft" --chat --input "$gen_prompts" --output "$run/generate.jsonl" \
  --max-new-tokens "${GEN_TOKENS:-48}" "${threads[@]}"
python3 -c 'import json, sys
for line in open(sys.argv[1], encoding="utf-8"):
    r = json.loads(line)
    print("  >", r["prompt"], r.get("input", ""), "\n ", r["completion"].replace("\n", "\n  "), "[%s]" % r["finish_reason"])' \
  "$run/generate.jsonl" 2> /dev/null || cat "$run/generate.jsonl"
echo "== done: checkpoints in $run/ckpt (pretrained) and $run/sft/ckpt (instruction-tuned), metrics in metrics.jsonl," \
  "answers in $run/generate.jsonl"
