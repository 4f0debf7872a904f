#!/usr/bin/env bash
# `polyllama convert` end to end on the committed Hugging Face fixture tests/fixtures/hf_tiny (bf16 weights that
# tests/reference/hf_export_ref.py wrote by hand in Python, the reference implementation's layout):
#   hf (bf16) -> ckpt -> hf gives back the Python-written model.safetensors byte for byte; fp32, fp16 and sharded
#   exports round-trip byte for byte; a converted run continues with `pretrain`; tied embeddings and old rotary
#   buffers import; each kind of bad input exits 1 with a message naming the file or tensor. With Debian's
#   python3-torch, the fixture is regenerated and compared, and the exported folders are checked independently
#   (config fields that transformers, vLLM and llama.cpp read; logits recomputed from the exported weights).
# Usage: test_convert.sh POLYLLAMA_BINARY
source "$(dirname "$0")/lib.sh" "$@"
here=$(cd "$(dirname "$0")" && pwd)
fixture="$here/../fixtures/hf_tiny"
ref="$here/../reference/hf_export_ref.py"
# variant NAME EDIT_ARGS...: a copy of the fixture edited by hf_export_ref.py (standard library only)
variant() {
  local name=$1; shift
  cp -r "$fixture" "$work/$name"
  [[ $# -eq 0 ]] || python3 "$ref" edit "$work/$name" "$@" || bad "editing $name"
}
same() { cmp -s "$1" "$2"; }

# ---- round trips ----
"$bin" convert --from hf "$fixture" --to ckpt "$work/run" --json > "$work/import.json" \
  && grep -q '"source_dtype":"bfloat16"' "$work/import.json" && [[ -f $work/run/ckpt/step_00000000/model.h5 ]] \
  && [[ $(cat "$work/run/ckpt/latest") == step_00000000 ]] && ok "hf (bf16) -> ckpt" || bad "hf -> ckpt: $(cat "$work/import.json")"
"$bin" convert --from ckpt "$work/run" --to hf "$work/hf_bf16" > /dev/null \
  && same "$fixture/model.safetensors" "$work/hf_bf16/model.safetensors" \
  && same "$fixture/tokenizer.model" "$work/hf_bf16/tokenizer.model" \
  && ok "ckpt -> hf in the imported dtype (bf16): model.safetensors and tokenizer.model byte-identical to the source" \
  || bad "bf16 round trip differs"
for f in config.json generation_config.json tokenizer_config.json; do
  [[ -s $work/hf_bf16/$f ]] || bad "export lacks $f"
done
grep -q '"torch_dtype": "bfloat16"' "$work/hf_bf16/config.json" && grep -q '"rope_theta": 500000.0' "$work/hf_bf16/config.json" \
  && grep -q '"architectures": \[' "$work/hf_bf16/config.json" && grep -q '"bos_token_id": 1' "$work/hf_bf16/generation_config.json" \
  && ok "config.json and generation_config.json fields" || bad "config.json: $(cat "$work/hf_bf16/config.json")"

"$bin" convert --from ckpt "$work/run/ckpt/step_00000000" --to hf "$work/hf32" --dtype f32 > /dev/null \
  && "$bin" convert --from hf "$work/hf32" --to ckpt "$work/run32" > /dev/null \
  && "$bin" convert --from ckpt "$work/run32" --to hf "$work/hf32b" > /dev/null \
  && same "$work/hf32/model.safetensors" "$work/hf32b/model.safetensors" \
  && grep -q '"torch_dtype": "float32"' "$work/hf32b/config.json" \
  && ok "fp32: hf -> ckpt -> hf byte-identical (step dir as --from; dtype remembered)" || bad "fp32 round trip"

"$bin" convert --from ckpt "$work/run32" --to hf "$work/hf_sharded" --max-shard-size 30KB --json > "$work/sh.json" \
  && [[ -f $work/hf_sharded/model.safetensors.index.json && ! -e $work/hf_sharded/model.safetensors ]] \
  && [[ $(ls "$work/hf_sharded" | grep -c '^model-000.*-of-00006\.safetensors$') -eq 6 ]] \
  && grep -q '"total_size": 174720' "$work/hf_sharded/model.safetensors.index.json" \
  && "$bin" convert --from hf "$work/hf_sharded" --to ckpt "$work/run_sh" > /dev/null \
  && "$bin" convert --from ckpt "$work/run_sh" --to hf "$work/hf32c" > /dev/null \
  && same "$work/hf32/model.safetensors" "$work/hf32c/model.safetensors" \
  && ok "sharded export (6 shards + index) reads back to the same fp32 bytes" || bad "sharding: $(cat "$work/sh.json")"

"$bin" convert --from ckpt "$work/run" --to hf "$work/hf16" --dtype f16 > /dev/null \
  && "$bin" convert --from hf "$work/hf16" --to ckpt "$work/run16" > /dev/null \
  && "$bin" convert --from ckpt "$work/run16" --to hf "$work/hf16b" > /dev/null \
  && same "$work/hf16/model.safetensors" "$work/hf16b/model.safetensors" \
  && ok "fp16: hf -> ckpt -> hf byte-identical" || bad "fp16 round trip"

# The converted run continues with pretrain, and its export keeps the imported dtype.
python3 "$ref" tokenizer-text --out "$work/text.txt"
"$bin" pretrain --run-dir "$work/run" --data "$work/text.txt" --steps 1 --seq-len 16 --micro-batch 2 --threads 2 \
  > "$work/pt.log" 2>&1 && [[ $(cat "$work/run/ckpt/latest") == step_00000001 ]] \
  && "$bin" convert --from ckpt "$work/run" --to hf "$work/hf_trained" > /dev/null \
  && grep -q '"torch_dtype": "bfloat16"' "$work/hf_trained/config.json" \
  && ! same "$fixture/model.safetensors" "$work/hf_trained/model.safetensors" \
  && ok "pretrain continues the converted run; its export uses ckpt/latest" || bad "pretrain after convert: $(tail -5 "$work/pt.log")"

# A checkpoint that was never imported (init) exports as bf16, and bf16 round-trips byte for byte from there.
"$bin" init --run-dir "$work/run_init" --tokenizer "$fixture/tokenizer.model" --preset tiny --num-hidden-layers 1 > /dev/null \
  && "$bin" convert --from ckpt "$work/run_init" --to hf "$work/hf_init" > /dev/null \
  && grep -q '"torch_dtype": "bfloat16"' "$work/hf_init/config.json" \
  && "$bin" convert --from hf "$work/hf_init" --to ckpt "$work/run_init2" > /dev/null \
  && "$bin" convert --from ckpt "$work/run_init2" --to hf "$work/hf_init2" > /dev/null \
  && same "$work/hf_init/model.safetensors" "$work/hf_init2/model.safetensors" \
  && ok "an init checkpoint exports as bf16 (the default) and round-trips" || bad "init -> hf"

# Tied embeddings: HF omits lm_head.weight; polyllama has no separate head; the export omits it again.
variant tied --drop lm_head.weight --config tie_word_embeddings=true
"$bin" convert --from hf "$work/tied" --to ckpt "$work/run_tied" > /dev/null \
  && "$bin" convert --from ckpt "$work/run_tied" --to hf "$work/hf_tied" > /dev/null \
  && grep -q '"tie_word_embeddings": true' "$work/hf_tied/config.json" \
  && ! grep -q 'lm_head' "$work/hf_tied/model.safetensors" \
  && same "$work/tied/model.safetensors" "$work/hf_tied/model.safetensors" \
  && ok "tied embeddings both ways" || bad "tied embeddings"
variant tied_head --config tie_word_embeddings=true
expect_fail 1 "lm_head.weight differs from model.embed_tokens.weight, but .*config.json says tie_word_embeddings true" -- \
  "$bin" convert --from hf "$work/tied_head" --to ckpt "$work/r_th"

# Old checkpoints carry rotary inv_freq buffers: skipped.
variant invfreq --add-inv-freq
"$bin" convert --from hf "$work/invfreq" --to ckpt "$work/run_inv" --json > "$work/inv.json" \
  && grep -q '"skipped":\["model.layers.0.self_attn.rotary_emb.inv_freq","model.layers.1.self_attn.rotary_emb.inv_freq"\]' "$work/inv.json" \
  && grep -q '"source_dtype":"bfloat16"' "$work/inv.json" && ok "rotary inv_freq buffers skipped" || bad "inv_freq: $(cat "$work/inv.json")"

# ---- bad input: exit 1, the message names the file and the tensor or field ----
variant noconfig; rm "$work/noconfig/config.json"
expect_fail 1 "noconfig/config.json: not found" -- "$bin" convert --from hf "$work/noconfig" --to ckpt "$work/r1"
variant notok; rm "$work/notok/tokenizer.model"
expect_fail 1 "notok/tokenizer.model: not found" -- "$bin" convert --from hf "$work/notok" --to ckpt "$work/r2"
variant missing --drop model.layers.1.mlp.up_proj.weight
expect_fail 1 "tensor 'model.layers.1.mlp.up_proj.weight' is missing" -- "$bin" convert --from hf "$work/missing" --to ckpt "$work/r3"
variant nohead --drop lm_head.weight
expect_fail 1 "tensor 'lm_head.weight' is missing from the weights \(config.json says tie_word_embeddings false\)" -- \
  "$bin" convert --from hf "$work/nohead" --to ckpt "$work/r4"
variant shape --reshape model.layers.0.self_attn.q_proj.weight=16,64
expect_fail 1 "shape/model.safetensors: tensor 'model.layers.0.self_attn.q_proj.weight' has shape \(16, 64\), expected \(32, 32\)" -- \
  "$bin" convert --from hf "$work/shape" --to ckpt "$work/r5"
variant extra --config num_hidden_layers=1
expect_fail 1 "extra/model.safetensors: unexpected tensor 'model.layers.1" -- "$bin" convert --from hf "$work/extra" --to ckpt "$work/r6"
variant scaled --config 'rope_scaling={"type":"linear","factor":2.0}'
expect_fail 1 "scaled/config.json: rope_scaling .* is not supported" -- "$bin" convert --from hf "$work/scaled" --to ckpt "$work/r7"
variant mistral --config 'model_type="mistral"'
expect_fail 1 "mistral/config.json: model_type \"mistral\" is not \"llama\"" -- "$bin" convert --from hf "$work/mistral" --to ckpt "$work/r8"
variant smallvocab --config vocab_size=100
expect_fail 1 "vocab_size 100 is smaller than the 300 pieces of" -- "$bin" convert --from hf "$work/smallvocab" --to ckpt "$work/r9"
variant truncated; head -c 50000 "$fixture/model.safetensors" > "$work/truncated/model.safetensors"
expect_fail 1 "truncated/model.safetensors: tensor '.*': data_offsets .* reach past the data area" -- \
  "$bin" convert --from hf "$work/truncated" --to ckpt "$work/r10"
variant garbage; printf 'not a safetensors file at all' > "$work/garbage/model.safetensors"
expect_fail 1 "garbage/model.safetensors: the header length field says" -- "$bin" convert --from hf "$work/garbage" --to ckpt "$work/r11"
expect_fail 1 "already holds a checkpoint" -- "$bin" convert --from hf "$fixture" --to ckpt "$work/run"
expect_fail 1 "already holds weights \(model.safetensors\); choose an empty folder or pass --overwrite" -- \
  "$bin" convert --from ckpt "$work/run" --to hf "$work/hf_bf16"
"$bin" convert --from ckpt "$work/run32" --to hf "$work/hf_sharded" --overwrite > /dev/null \
  && [[ ! -e $work/hf_sharded/model.safetensors.index.json ]] && same "$work/hf32/model.safetensors" "$work/hf_sharded/model.safetensors" \
  && ok "--overwrite replaces a sharded export" || bad "--overwrite"
expect_fail 1 "--dtype and --max-shard-size apply to --to hf" -- "$bin" convert --from hf "$fixture" --to ckpt "$work/r12" --dtype f32
expect_fail 1 "--dtype wants f32, bf16 or f16, got 'f8'" -- "$bin" convert --from ckpt "$work/run" --to hf "$work/r13" --dtype f8
expect_fail 1 "--max-shard-size wants a positive size" -- "$bin" convert --from ckpt "$work/run" --to hf "$work/r14" --max-shard-size 5TB
expect_fail 1 "--from and --to take hf or ckpt and a path, got 'gguf'" -- "$bin" convert --from gguf x --to ckpt "$work/r15"
expect_fail 1 "not from ckpt to ckpt" -- "$bin" convert --from ckpt "$work/run" --to ckpt "$work/r16"
expect_fail 1 "is neither a checkpoint step directory" -- "$bin" convert --from ckpt "$work" --to hf "$work/r17"
# fp16 cannot hold 70000: the export fails naming the tensor and leaves no weights behind.
variant big; cp "$work/hf32/model.safetensors" "$work/big/model.safetensors"
python3 "$ref" edit "$work/big" --set model.norm.weight:3=70000
"$bin" convert --from hf "$work/big" --to ckpt "$work/run_big" > /dev/null || bad "importing the big-valued model"
expect_fail 1 "tensor 'model.norm.weight' element 3 = 70000.* overflows F16 \(largest finite 65504\)" -- \
  "$bin" convert --from ckpt "$work/run_big" --to hf "$work/hf_big" --dtype f16 --max-shard-size 20KB
[[ -z $(ls "$work/hf_big" | grep safetensors) ]] && ok "a failed sharded export leaves no weight file" || bad "leftovers: $(ls "$work/hf_big")"
cp -r "$work/hf32" "$work/hf_keep"
expect_fail 1 "overflows F16" -- "$bin" convert --from ckpt "$work/run_big" --to hf "$work/hf_keep" --dtype f16 --overwrite
same "$work/hf32/model.safetensors" "$work/hf_keep/model.safetensors" && ok "a failed --overwrite export keeps the old weights" \
  || bad "the failed export damaged the folder it was to overwrite"

# ---- with PyTorch: the fixture regenerates, and the exports load as Hugging Face's LLaMA ----
if /usr/bin/python3 -c 'import torch, numpy' > /dev/null 2>&1; then
  /usr/bin/python3 "$ref" fixture --out "$work/regen" --compare "$fixture" > "$work/regen.log" 2>&1 \
    && ok "fixture regenerates: model.safetensors byte-identical, logits $(grep -o 'difference [0-9.e+-]*' "$work/regen.log")" \
    || bad "the regenerated fixture differs: $(cat "$work/regen.log")"
  for d in hf_bf16 hf32 hf32c hf16; do
    tol=1e-12; [[ $d == hf16 ]] && tol=1e-6  # bf16 values below fp16's normal range lose bits
    /usr/bin/python3 "$ref" verify "$work/$d" --reference "$fixture" --logits-tol $tol > "$work/v.log" 2>&1 \
      && ok "$(tail -1 "$work/v.log")" || bad "verify $d: $(cat "$work/v.log")"
  done
  "$bin" convert --from ckpt "$work/run32" --to hf "$work/hf_sharded2" --max-shard-size 30KB > /dev/null
  /usr/bin/python3 "$ref" verify "$work/hf_sharded2" --reference "$fixture" > "$work/v.log" 2>&1 \
    && ok "$(tail -1 "$work/v.log")" || bad "verify sharded: $(cat "$work/v.log")"
else
  echo "skip: /usr/bin/python3 cannot import torch; the fixture is not regenerated and exports are not re-verified"
fi

finish
