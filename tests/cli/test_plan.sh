#!/usr/bin/env bash
# polyllama plan: its CPU memory model against the peak RSS that `polyllama bench` measures (getrusage) for the
# same shapes, its refusals, and the forms --model takes.
#
# Tolerance: measured peak RSS = the process baseline + what the model allocates + OpenBLAS's packing buffer.
# The baseline (MPI, HDF5, the CUDA runtime and cuBLASLt this build links, the binary) is measured here with the
# tiny preset, whose model is ~4 MiB, and the plan's model bytes (--reserve 0) are added to it. OpenBLAS's
# buffer (one 32 MiB region per thread, touched in proportion to the GEMM panels: the tiny run barely touches it,
# a 512-wide model with a 32000 vocabulary all of it) is the one unmodelled term; glibc's heap slack and page
# rounding add a few MiB. So measured - (baseline + plan) must lie in [-16, +44] MiB. That catches any error
# above ~44 MiB, on either side: each of weights, grads and the two AdamW moments in the first and third configs
# (110-215 MiB each), the activations of all three (70-256 MiB; the second's include 128 MiB of attention
# probabilities).
source "$(dirname "$0")/lib.sh" "$@"
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1

json_field() { python3 -c 'import json,sys; d=json.loads(sys.stdin.readlines()[-1]); print(eval("d"+sys.argv[1]))' "$1"; }

bench_rss() {  # peak RSS in bytes of one bench step for the shape given as flags
  "$bin" bench --threads 1 --steps 1 --warmup 0 --sgemm-size 0 --json "$@" 2>/dev/null |
    json_field '["peak_rss_mib"]' | python3 -c 'import sys; print(int(float(sys.stdin.read()) * 1048576))'
}
plan_bytes() {  # the plan's memory total without the runtime reserve
  "$bin" plan --device cpu --threads 1 --reserve 0 --gpu-mem 64G --json "$@" | json_field '["memory_bytes"]["total"]'
}

base=$(bench_rss --preset tiny --seq-len 64 --micro-batch 2)
tiny=$(plan_bytes --preset tiny --seq 64 --micro-batch 2)
if [[ -n $base && $base -gt 0 ]]; then
  ok "baseline peak RSS $((base >> 20)) MiB (tiny preset, its model $((tiny >> 10)) KiB)"
else
  bad "bench did not report a peak RSS"; finish; exit
fi
base=$((base - tiny))

check_rss() {  # name, then the shape flags (bench and plan share them)
  local name=$1; shift
  local measured predicted
  measured=$(bench_rss "$@")
  predicted=$(plan_bytes "$@")
  local msg rc
  msg=$(python3 - "$measured" "$predicted" "$base" <<'PY'
import sys
measured, model, base = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
predicted = model + base
lo, hi = -16 * 2**20, 44 * 2**20
diff = measured - predicted
print(f"measured {measured / 2**20:.0f} MiB, planned {predicted / 2**20:.0f} MiB "
      f"(model {model / 2**20:.0f} + baseline {base / 2**20:.0f}), diff {diff / 2**20:+.1f} MiB, "
      f"window [{lo / 2**20:.0f}, {hi / 2**20:+.0f}] MiB")
sys.exit(0 if lo <= diff <= hi else 1)
PY
  ); rc=$?
  if [[ $rc -eq 0 ]]; then ok "$name: $msg"; else bad "$name: $msg"; fi
}
# Weights dominate (56M parameters x 16 bytes: f32 weights, grads, AdamW m and v); GQA 8 heads / 4 kv heads.
check_rss "bench preset, seq 128 x 2" --preset bench --seq-len 128 --micro-batch 2
# Activations dominate: the CPU keeps every layer's attention probabilities (B, H, T, T) in f32.
check_rss "2 layers, vocab 4096, seq 1024 x 2" --preset bench --num-hidden-layers 2 --vocab-size 4096 \
  --seq-len 1024 --micro-batch 2
# Tied embeddings, no GQA, a chunked LM head (vocab 32000 x 1024 rows > the 16M-logit budget).
check_rss "tied, 4 layers, seq 512 x 2" --preset bench --num-hidden-layers 4 --num-key-value-heads 8 \
  --tie-word-embeddings --seq-len 512 --micro-batch 2

# --model forms: the 7b shorthand is LLaMA-2-7B, a config.json (or its folder) gives the same plan.
a=$("$bin" plan --model 7b --tp 8 --dp 8 --seq 4096 --json | json_field '["memory_bytes"]["total"]')
b=$("$bin" plan --preset llama2-7b --tp 8 --dp 8 --seq 4096 --json | json_field '["memory_bytes"]["total"]')
[[ -n $a && $a == "$b" ]] && ok "--model 7b is llama2-7b ($a bytes)" || bad "--model 7b: $a vs $b"
mkdir -p "$work/hf"
"$bin" plan --model llama2-7b --json | python3 -c 'import json,sys; print(json.dumps(json.loads(sys.stdin.read())["model"]))' \
  >"$work/hf/config.json"
c=$("$bin" plan --model "$work/hf" --tp 8 --dp 8 --seq 4096 --json | json_field '["memory_bytes"]["total"]')
[[ $c == "$a" ]] && ok "--model FOLDER with config.json" || bad "--model FOLDER: $c vs $a"
out=$("$bin" plan --model 7b --tp 8 --dp 8 --seq 4096 --gpu-mem 80G)
[[ $out == *"FITS"* && $out == *"reduce-scatter"* && $out == *"time per step"* ]] && ok "table" || bad "table: $out"
out=$("$bin" plan --model 13b --tp 1 --dp 1 --seq 4096 --gpu-mem 80G)
[[ $out == *"DOES NOT FIT"* ]] && ok "13b on one 80G GPU does not fit" || bad "13b tp1: $out"

expect_fail 1 "tp=3 does not divide num_attention_heads=32" -- "$bin" plan --model 7b --tp 3
expect_fail 1 "'80Q' is not a memory size" -- "$bin" plan --model 7b --gpu-mem 80Q
expect_fail 1 "--gpu-mem must be a positive size" -- "$bin" plan --model 7b --gpu-mem 0
expect_fail 1 "unknown model preset 'llama-99b'" -- "$bin" plan --model llama-99b
expect_fail 1 "model flags such as --hidden-size apply to presets only" -- "$bin" plan --model "$work/hf" --hidden-size 8
finish
