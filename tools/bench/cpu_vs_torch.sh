#!/usr/bin/env bash
# polyllama's CPU training step side by side with PyTorch's (the peer script in ../shared/bench, or
# tools/bench/torch_llama_step.py when given) on the same config, alternating runs so both see the same
# machine. Prints tokens/s, GFLOP/s, peak RSS and the ratios; the sgemm rate comes from polyllama bench, which
# times an sgemm between its steps.
# Usage: tools/bench/cpu_vs_torch.sh [ROUNDS=2] [TORCH_SCRIPT]
# Config (the issue's bench config): dim 512, 8 layers, 8 heads, 4 kv heads, ffn 1408, vocab 32000,
# seq 256, batch 4, 2 threads.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
rounds=${1:-2}
torch_script=${2:-$root/../shared/bench/torch_llama_step.py}
bin=${POLYLLAMA:-$root/build/polyllama}
[[ -f $torch_script ]] || { echo "no PyTorch peer script at $torch_script" >&2; exit 1; }
/usr/bin/python3 -c "import torch" 2>/dev/null || { echo "PyTorch missing: tools/install-deps.sh --with-reference" >&2; exit 1; }
[[ -x /usr/bin/time ]] || { echo "needs /usr/bin/time (apt-get install time)" >&2; exit 1; }
export OMP_NUM_THREADS=2
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
for r in $(seq 1 "$rounds"); do
  /usr/bin/time -f "%M" -o "$tmp/pl_rss_$r" "$bin" bench --preset bench --seq-len 256 --micro-batch 4 --threads 2 \
    --steps 5 --warmup 1 --json | tail -1 > "$tmp/pl_$r.json"
  /usr/bin/time -f "%M" -o "$tmp/pt_rss_$r" /usr/bin/python3 "$torch_script" --dim 512 --layers 8 --heads 8 --kv-heads 4 \
    --ffn 1408 --vocab 32000 --seq 256 --batch 4 --steps 5 --threads 2 | tail -1 > "$tmp/pt_$r.txt"
  echo "round $r: polyllama $(cat "$tmp/pl_$r.json")"
  echo "round $r: pytorch   $(cat "$tmp/pt_$r.txt") peak_rss_kib=$(cat "$tmp/pt_rss_$r")"
done
python3 - "$tmp" "$rounds" <<'PY'
import json, re, statistics, sys
tmp, rounds = sys.argv[1], int(sys.argv[2])
pl = [json.load(open(f"{tmp}/pl_{r}.json")) for r in range(1, rounds + 1)]
pt = [dict(re.findall(r"(\w+)=([\d.]+)", open(f"{tmp}/pt_{r}.txt").read())) for r in range(1, rounds + 1)]
pl_rss = [int(open(f"{tmp}/pl_rss_{r}").read()) / 1024 for r in range(1, rounds + 1)]
pt_rss = [int(open(f"{tmp}/pt_rss_{r}").read()) / 1024 for r in range(1, rounds + 1)]
med = statistics.median
pl_tps, pt_tps = med(p["tokens_per_s"] for p in pl), med(float(p["tokens_per_s"]) for p in pt)
pl_gf, pt_gf, sg = med(p["gflops"] for p in pl), med(float(p["gflops"]) for p in pt), med(p["sgemm_gflops"] for p in pl)
print(f"| | polyllama | PyTorch {__import__('subprocess').run(['/usr/bin/python3','-c','import torch;print(torch.__version__)'],capture_output=True,text=True).stdout.strip()} | ratio |")
print("|---|---|---|---|")
print(f"| tokens/s | {pl_tps:.1f} | {pt_tps:.1f} | {pl_tps/pt_tps:.2f}x |")
print(f"| GFLOP/s | {pl_gf:.1f} | {pt_gf:.1f} | |")
print(f"| share of sgemm rate ({sg:.1f} GFLOP/s) | {100*pl_gf/sg:.0f} % | {100*pt_gf/sg:.0f} % | |")
print(f"| peak RSS (MiB) | {med(pl_rss):.0f} | {med(pt_rss):.0f} | {med(pl_rss)/med(pt_rss):.2f} |")
PY
