#!/usr/bin/env bash
# End to end through the command line: tokenizer train -> init -> pretrain -> resume, and the errors a user
# sees for bad input (exit code 1 and a message naming the file or flag).
# Usage: test_cli.sh POLYLLAMA_BINARY
source "$(dirname "$0")/lib.sh" "$@"

# A small English text made here (the test needs nothing outside the repository).
for i in $(seq 1 400); do
  echo "The river runs to the sea number $i, and the sea returns the rain to the hills."
  echo "Every morning the baker opens the door and the town smells of bread."
  echo
done > "$work/text.txt"

"$bin" tokenizer train --input "$work/text.txt" --vocab-size 300 --out "$work/tok.model" >/dev/null \
  && [[ -s $work/tok.model ]] && ok "tokenizer train" || bad "tokenizer train"
"$bin" init --run-dir "$work/run" --tokenizer "$work/tok.model" --preset tiny --num-hidden-layers 1 --json \
  > "$work/init.json" && grep -q '"checkpoint"' "$work/init.json" && [[ -f $work/run/ckpt/step_00000000/model.h5 ]] \
  && ok "init" || bad "init"

common=(--data "$work/text.txt" --blank-line-docs --seq-len 32 --micro-batch 4 --log-interval 2
        --warmup-steps 2 --lr 1e-3 --threads 2)
"$bin" pretrain --run-dir "$work/run" "${common[@]}" --global-batch 8 --steps 4 --json > "$work/a.json" \
  && grep -q '"step":4' "$work/a.json" && [[ $(grep -c '"loss"' "$work/run/metrics.jsonl") -eq 4 ]] \
  && ok "pretrain 4 steps, metrics.jsonl" || bad "pretrain 4 steps: $(cat "$work/a.json")"
# Continuing the same run to 8 steps resumes at step 4 from ckpt/latest.
"$bin" pretrain --run-dir "$work/run" "${common[@]}" --global-batch 8 --steps 8 > "$work/b.log" \
  && grep -q "resumed from .*step_00000004 at step 4" "$work/b.log" && grep -q "latest" <(ls "$work/run/ckpt") \
  && [[ $(cat "$work/run/ckpt/latest") == step_00000008 ]] && ok "resume to step 8" || bad "resume: $(cat "$work/b.log")"
expect_fail 1 "already holds a training checkpoint" -- "$bin" pretrain --run-dir "$work/run" "${common[@]}" --steps 9 --no-resume
expect_fail 1 "has no checkpoint: run .polyllama init" -- "$bin" pretrain --run-dir "$work/none" "${common[@]}"
expect_fail 1 "global_batch 6 must be a multiple of micro_batch 4" -- "$bin" pretrain --run-dir "$work/run" "${common[@]}" --global-batch 6
expect_fail 1 "cannot open text file .*missing.txt" -- "$bin" pretrain --run-dir "$work/run" --data "$work/missing.txt"
# Token shards from `polyllama data`, blended with weights, feed pretrain the same way.
"$bin" data --tokenizer "$work/tok.model" --input "$work/text.txt" --blank-line-docs --out "$work/ds" >/dev/null \
  && "$bin" pretrain --run-dir "$work/ds_run" --init-from "$work/run/ckpt/step_00000000" --data "0.7:$work/ds" \
       "0.3:$work/ds" --seq-len 32 --micro-batch 4 --steps 3 --threads 2 --json > "$work/ds.json" \
  && grep -q '"step":3' "$work/ds.json" && ok "pretrain on blended token shards" || bad "pretrain on shards: $(cat "$work/ds.json")"
"$bin" tokenizer train --input "$work/text.txt" --vocab-size 310 --out "$work/tok2.model" >/dev/null
"$bin" data --tokenizer "$work/tok2.model" --input "$work/text.txt" --out "$work/ds2" >/dev/null
expect_fail 1 "tokenized with tokenizer [0-9a-f]+, but the model.s tokenizer is [0-9a-f]+" -- "$bin" pretrain --run-dir "$work/ds_run3" --init-from "$work/run/ckpt/step_00000000" \
  --data "$work/ds2" --seq-len 32 --micro-batch 4 --steps 1
expect_fail 1 "mixes .polyllama data. directories and text files" -- "$bin" pretrain --run-dir "$work/ds_run2" \
  --init-from "$work/run/ckpt/step_00000000" --data "$work/ds" "$work/text.txt"
expect_fail 1 "not a SentencePiece model" -- "$bin" init --run-dir "$work/r2" --tokenizer "$work/text.txt"
expect_fail 1 "not divisible by num_attention_heads" -- "$bin" init --run-dir "$work/r3" --tokenizer "$work/tok.model" --hidden-size 65
expect_fail 1 "smaller than the tokenizer" -- "$bin" init --run-dir "$work/r4" --tokenizer "$work/tok.model" --vocab-size 10
expect_fail 1 "unknown model preset 'huge'" -- "$bin" bench --preset huge
# A TOML config gives any option; the command line overrides it (2 steps of 2 x 16 tokens = 64); unknown keys
# are errors naming the key.
printf 'seq_len = 16\nsteps = 3\nmicro_batch = 2\njson = true\nblank_line_docs = true\ndata = ["%s"]\n' "$work/text.txt" > "$work/pt.toml"
"$bin" pretrain --config "$work/pt.toml" --run-dir "$work/cfg" --init-from "$work/run/ckpt/step_00000000" --steps 2 \
  > "$work/cfg.json" && grep -q '"step":2' "$work/cfg.json" && grep -q '"consumed_tokens":64' "$work/cfg.json" \
  && ok "--config file, flag overrides" || bad "--config: $(cat "$work/cfg.json")"
echo "seq_len = 64" > "$work/bad.toml"; echo "no_such_key = 1" >> "$work/bad.toml"
expect_fail 1 "unknown key 'no_such_key' for .pretrain" -- "$bin" pretrain --config "$work/bad.toml" --run-dir "$work/run" --data "$work/text.txt"
# A corrupt checkpoint names the tensor that fails its checksum.
cp -r "$work/run" "$work/corrupt"
python3 - "$work/corrupt/ckpt/step_00000008/model.h5" <<'PY' || true
import sys
p = sys.argv[1]; b = bytearray(open(p, 'rb').read())
# Flip bytes a tenth into the file: inside the embedding's data, the first dataset written.
for i in range(len(b) // 10, len(b) // 10 + 64): b[i] ^= 0xFF
open(p, 'wb').write(bytes(b))
PY
# Loading that step names the file whose SHA-256 differs from manifest.json; without a manifest (a checkpoint
# from before manifests) the tensor's own checksum still names the tensor.
expect_fail 1 "step_00000008/model.h5: SHA-256 .* differs from manifest.json" -- "$bin" generate --ckpt "$work/corrupt/ckpt/step_00000008" --prompt "the" --max-new-tokens 2
cp -r "$work/corrupt" "$work/corrupt2" && rm "$work/corrupt2/ckpt/step_00000008/manifest.json"
expect_fail 1 "tensor 'model.embed_tokens.weight' failed its checksum" -- "$bin" generate --ckpt "$work/corrupt2/ckpt/step_00000008" --prompt "the" --max-new-tokens 2
# Resuming skips it for the newest intact checkpoint (step 4) and says so.
"$bin" pretrain --run-dir "$work/corrupt" "${common[@]}" --steps 9 > "$work/corrupt.log" 2>&1 \
  && grep -q "rebuilt it from step_00000004, the newest intact checkpoint" "$work/corrupt.log" \
  && [ "$(cat "$work/corrupt/ckpt/latest")" = step_00000009 ] \
  && ok "resume skipped the corrupt step 8, trained from step 4 to 9" || bad "corrupt resume: $(tail -3 "$work/corrupt.log")"
# Captured first: with pipefail, grep -q closing the pipe early would fail a help text longer than one pipe write.
help=$("$bin" --help) && grep -q "pretrain" <<<"$help" && ok "--help lists verbs" || bad "--help"

finish
