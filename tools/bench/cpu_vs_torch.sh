#!/usr/bin/env bash
# polyllama's CPU training step side by side with PyTorch's (the peer script in ../shared/bench, or
# tools/bench/torch_llama_step.py when given) on the same config, alternating runs so both see the same
# machine. Prints tokens/s, GFLOP/s, peak RSS and the ratios; the sgemm rate comes from polyllama bench, which
# times an sgemm between its steps. PyTorch runs twice per round: as installed, and with OPENBLAS_CORETYPE set
# to the kernel family polyllama chose (Debian's PyTorch calls the same OpenBLAS, whose CPU detection can fall
# back to SSE kernels on CPUs newer than the library; polyllama corrects that for itself, PyTorch does not).
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
  core=$(python3 -c 'import json,sys; b=json.load(open(sys.argv[1]))["blas"].split(); print(b[1])' "$tmp/pl_$r.json")
  for variant in pt ptk; do
    envs=(); [[ $variant == ptk ]] && envs=(OPENBLAS_CORETYPE="$core")
    env "${envs[@]}" /usr/bin/time -f "%M" -o "$tmp/${variant}_rss_$r" /usr/bin/python3 "$torch_script" --dim 512 \
      --layers 8 --heads 8 --kv-heads 4 --ffn 1408 --vocab 32000 --seq 256 --batch 4 --steps 5 --threads 2 \
      | tail -1 > "$tmp/${variant}_$r.txt"
  done
  echo "round $r: polyllama $(cat "$tmp/pl_$r.json")"
  echo "round $r: pytorch   $(cat "$tmp/pt_$r.txt") peak_rss_kib=$(cat "$tmp/pt_rss_$r")"
  echo "round $r: pytorch with OPENBLAS_CORETYPE=$core  $(cat "$tmp/ptk_$r.txt") peak_rss_kib=$(cat "$tmp/ptk_rss_$r")"
done
python3 - "$tmp" "$rounds" <<'PY'
import json, re, statistics, subprocess, sys
tmp, rounds = sys.argv[1], int(sys.argv[2])
R = range(1, rounds + 1)
med = statistics.median
pl = [json.load(open(f"{tmp}/pl_{r}.json")) for r in R]
def torch_runs(v):
    runs = [dict(re.findall(r"(\w+)=([\d.]+)", open(f"{tmp}/{v}_{r}.txt").read())) for r in R]
    rss = med(int(open(f"{tmp}/{v}_rss_{r}").read()) / 1024 for r in R)
    return med(float(x["tokens_per_s"]) for x in runs), med(float(x["gflops"]) for x in runs), rss
pl_tps, pl_gf = med(p["tokens_per_s"] for p in pl), med(p["gflops"] for p in pl)
pl_rss = med(int(open(f"{tmp}/pl_rss_{r}").read()) / 1024 for r in R)
sg = med(p["sgemm_gflops"] for p in pl)
pt, ptk = torch_runs("pt"), torch_runs("ptk")
ver = subprocess.run(["/usr/bin/python3", "-c", "import torch; print(torch.__version__)"], capture_output=True, text=True).stdout.strip()
print(f"medians of {rounds} alternating rounds; BLAS: {pl[0]['blas']}; sgemm rate between polyllama's steps: {sg:.1f} GFLOP/s")
print(f"| | polyllama | PyTorch {ver} | PyTorch {ver}, OPENBLAS_CORETYPE set |")
print("|---|---|---|---|")
print(f"| tokens/s | {pl_tps:.1f} | {pt[0]:.1f} | {ptk[0]:.1f} |")
print(f"| polyllama speed-up | | {pl_tps/pt[0]:.2f}x | {pl_tps/ptk[0]:.2f}x |")
print(f"| GFLOP/s | {pl_gf:.1f} | {pt[1]:.1f} | {ptk[1]:.1f} |")
print(f"| share of the sgemm rate | {100*pl_gf/sg:.0f} % | {100*pt[1]/sg:.0f} % | {100*ptk[1]/sg:.0f} % |")
print(f"| peak RSS (MiB) | {pl_rss:.0f} | {pt[2]:.0f} | {ptk[2]:.0f} |")
PY
