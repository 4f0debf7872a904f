#!/usr/bin/env bash
# jobs/study and tools/study-report.py end to end on a tiny model: a 2 x 2 grid (original / extended vocabulary x
# two pretraining budgets), one SFT size, every cell evaluated (perplexity in two languages, the poem questions,
# the sample instructions). Checks: one pretraining run per vocabulary however many budgets (counted in the
# study's log and in the run's metrics), the budgets kept as checkpoints through --keep-last 1, SFT branching from
# the budget's checkpoint, the report's tables equal to the numbers in each cell's own results.json (read here
# independently), the PNGs decoded by hand (size, CRCs, more than a blank canvas), a rerun that runs nothing, a
# changed setting refused, --submit's job graph through a fake sbatch and qsub, bad configs. The texts are made
# from files of the source tree, so nothing outside it is needed but mpirun and Debian's python3-matplotlib.
# Usage: test_study.sh POLYLLAMA_BINARY
source "$(dirname "$0")/lib.sh" "$@"
root=$(cd "$(dirname "$0")/../.." && pwd)
command -v mpirun >/dev/null || { echo "no mpirun: skipped"; exit 77; }
/usr/bin/python3 -c 'import matplotlib, tomllib' 2>/dev/null \
  || { echo "no /usr/bin/python3 with matplotlib and tomllib (python3-matplotlib, Debian 12): skipped"; exit 77; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

# Texts: English from the docs, Chinese from the practice questions' poems; every 5th document held out.
/usr/bin/python3 - "$root" "$work" <<'EOF'
import glob, json, os, sys
root, out = sys.argv[1], sys.argv[2]
en = []
for p in sorted(glob.glob(os.path.join(root, "docs", "*.md"))):
    en += [b.strip() for b in open(p, encoding="utf-8").read().split("\n\n") if len(b.strip()) > 80]
zh = [json.loads(l)["instruction"] for l in open(os.path.join(root, "share/main/sft_mc.jsonl"), encoding="utf-8")]
def write(name, docs):
    with open(os.path.join(out, name), "w", encoding="utf-8") as f:
        f.write("\n\n".join(docs) + "\n")
write("en.txt", [d for i, d in enumerate(en) if i % 5]); write("en_ho.txt", [d for i, d in enumerate(en) if i % 5 == 0][:20])
write("zh.txt", [d for i, d in enumerate(zh) if i % 5]); write("zh_ho.txt", [d for i, d in enumerate(zh) if i % 5 == 0][:20])
EOF

cat > "$work/grid.toml" <<EOF
[study]
work = "w"
polyllama = "$bin"
np = 2
threads = 1
launch = "mpirun -np 2 --oversubscribe --bind-to none"

[base]
corpus = "en.txt"
vocab_size = 500
data_args = "--blank-line-docs"
init_args = "--hidden-size 32 --intermediate-size 64 --num-hidden-layers 1 --num-attention-heads 2 --num-key-value-heads 1 --max-position-embeddings 512"
steps = 3
pretrain_args = "--seq-len 64 --micro-batch 2 --lr 3e-3 --warmup-steps 1 --log-interval 1 --val-every 0"

[target]
language = "zh"
corpus = "zh.txt"
heldout = "zh_ho.txt"
data_args = "--blank-line-docs"
stats_args = "--blank-line-docs"

[english]
heldout = "en_ho.txt"

[vocab]
extend = [false, true]
new_pieces = 2000
extend_args = "--spm character_coverage=0.98"
resize_args = "--init normal"

[pretrain]
budgets = [2, 4]
args = "--seq-len 64 --micro-batch 2 --lr 3e-3 --warmup-steps 1 --log-interval 1 --save-interval 1 --keep-last 1 --val-every 0"

[sft]
data = "{root}/share/main/sft_mc.jsonl"
sizes = [12]
steps = 2
args = "--template {root}/share/main/mc_template.json --seq-len 256 --micro-batch 2 --lr 1e-3 --warmup-steps 1 --val-every 0"

[eval]
ppl_args = "--blank-line-docs --ppl-max-docs 3 --ppl-seq 64"
knowledge = "ceval"
bench_dir = "{root}/share/main"
knowledge_args = "--num-fewshot 0"
responses = "{root}/share/responses/zh_instructions.jsonl"
responses_args = "--max-new-tokens 3 --cs-allow none"
EOF
study() { "$root/jobs/study" "$@"; }
cd "$work" || exit 1
w=$work/w

# 1. --submit: one job per stage, each held by afterok on its inputs' jobs (fake sbatch/qsub print ids).
mkdir -p fake
printf '#!/bin/bash\necho "sbatch $*" >> %s/submitted\necho $(( $(wc -l < %s/submitted) + 100 ))\n' "$work" "$work" > fake/sbatch
printf '#!/bin/bash\necho "qsub $*" >> %s/submitted\necho $(( $(wc -l < %s/submitted) + 100 )).pbs\n' "$work" "$work" > fake/qsub
chmod +x fake/sbatch fake/qsub
PATH=$work/fake:$PATH study grid.toml --submit slurm > submit.log 2>&1 || bad "submit: $(tail -3 submit.log)"
/usr/bin/python3 - "$work/submitted" "$w/jobs.json" <<'EOF' > check.txt 2>&1 && ok "--submit slurm: $(cat check.txt)" || bad "submit graph: $(cat check.txt)"
import json, re, sys
lines = open(sys.argv[1]).read().splitlines()
ids = json.load(open(sys.argv[2]))
by_id = {v: k for k, v in ids.items()}
assert len(lines) == len(ids) == 23, (len(lines), len(ids))
deps = {}
for l in lines:
    name = re.search(r"--job-name study-(\S+)", l).group(1)
    m = re.search(r"--dependency afterok:(\S+)", l)
    deps[name] = {by_id[i] for i in m.group(1).split(":")} if m else set()
    assert re.search(r"--wrap .*jobs/study .*grid.toml --only " + re.escape(name) + "'?$", l), l
assert deps["base-tokenizer"] == set(), deps["base-tokenizer"]
assert deps["pretrain-ext-s1234"] == {"resize", "data-ext"}, deps["pretrain-ext-s1234"]
assert deps["sft-orig-b2-sft12-s1234"] == {"pretrain-orig-s1234"}
assert deps["eval-ext-b4-sft12-s1234"] == {"sft-ext-b4-sft12-s1234"}
assert len(deps["report"]) == 9 and "fertility" in deps["report"], deps["report"]
order = [re.search(r"--job-name study-(\S+)", l).group(1) for l in lines]
assert all(order.index(d) < order.index(n) for n, ds in deps.items() for d in ds), "a job submitted before its input"
print("23 jobs, every dependency submitted first")
EOF
rm -f submitted
PATH=$work/fake:$PATH study grid.toml --submit pbs > submit.log 2>&1 \
  && grep -q -- '-W depend=afterok:[0-9]*.pbs:[0-9]*.pbs' submitted && [[ $(wc -l < submitted) -eq 23 ]] \
  && ok "--submit pbs: 23 qsub lines with depend=afterok" || bad "submit pbs: $(head -3 submitted) $(tail -3 submit.log)"
rm -rf "$w"

# 2. The grid, end to end.
t0=$SECONDS
study grid.toml > run1.log 2>&1 && ok "study ran ($((SECONDS - t0)) s)" || { bad "study: $(tail -30 run1.log)"; finish; exit; }
n_pt=$(grep -c ' run pretrain-' "$w/study.log")
[[ $n_pt -eq 2 ]] && ok "2 pretraining runs (one per vocabulary) for 2 budgets each" || bad "$n_pt pretraining runs: $(grep ' run pretrain-' "$w/study.log")"
for v in orig ext; do
  r=$w/pretrain/$v-s1234
  # --save-interval 1 --keep-last 1: step 1 is pruned, step 3 is the newest other one, 2 and 4 are the budgets
  [[ $(cd "$r/ckpt" && echo step_*) == "step_00000002 step_00000003 step_00000004" ]] \
    && ok "$v: budgets 2 and 4 kept as checkpoints (--save-at) through --keep-last 1" || bad "$v checkpoints: $(cd "$r/ckpt" && echo step_*)"
  [[ $(grep '"loss"' "$r/metrics.jsonl" | grep -o '"step":[0-9]*' | tr '\n' ' ') == '"step":1 "step":2 "step":3 "step":4 ' ]] \
    && ok "$v: one run, steps 1-4 logged once" || bad "$v metrics: $(cat "$r/metrics.jsonl")"
  grep -q "sft --run-dir $w/sft/$v-b2-sft12-s1234 --init-from $r/ckpt/step_00000002 " "$w/study.log" \
    && ok "$v: SFT of budget 2 starts from step 2 of that run" || bad "$v sft init: $(grep "run sft-$v-b2" "$w/study.log")"
done
[[ $(grep -c ' run base:' "$w/study.log") -eq 2 && $(grep -c ' run resize:' "$w/study.log") -eq 2 ]] \
  && ok "base trained once, resized once" || bad "base/resize: $(grep -E ' run (base|resize):' "$w/study.log")"

# 3. The report's tables against each cell's own results.json.
/usr/bin/python3 - "$w" <<'EOF' > check.txt 2>&1 && ok "report tables equal the cells' results ($(cat check.txt))" || bad "report: $(cat check.txt)"
import csv, json, math, os, sys
w = sys.argv[1]
cells = json.load(open(os.path.join(w, "study.json")))["cells"]
assert sorted(c["id"] for c in cells) == sorted(
    ["orig-b2-s1234", "orig-b4-s1234", "ext-b2-s1234", "ext-b4-s1234",
     "orig-b2-sft12-s1234", "orig-b4-sft12-s1234", "ext-b2-sft12-s1234", "ext-b4-sft12-s1234"]), [c["id"] for c in cells]
res = {c["id"]: json.load(open(os.path.join(w, "eval", c["id"], "results.json")))["results"] for c in cells}
rows = list(csv.DictReader(open(os.path.join(w, "report", "perplexity.csv"))))
assert [r["budget"] for r in rows] == ["2", "4"], rows
checked = 0
for r in rows:
    for v, name in (("orig", "original"), ("ext", "extended")):
        for lang in ("zh", "en"):
            p = res["%s-b%s-s1234" % (v, r["budget"])]["ppl_" + lang]
            assert abs(float(r["%s ppl (%s)" % (lang, name)]) - p["token_perplexity,none"]) <= 0.005 + 1e-9, (r, p)
            assert abs(float(r["%s bits/char (%s)" % (lang, name)]) - p["bits_per_char,none"]) <= 0.00005 + 1e-12, (r, p)
            checked += 2
for r in csv.DictReader(open(os.path.join(w, "report", "knowledge.csv"))):
    c = res[r["cell"]]["ceval"]
    assert abs(float(r["ceval acc"]) - c["acc,none"]) <= 0.00005 and int(r["ceval n"]) == c["samples"] == 40, (r, c)
    checked += 1
resp = list(csv.DictReader(open(os.path.join(w, "report", "responses.csv"))))
assert len(resp) == 4, resp
for r in resp:
    d = res[r["cell"]]["responses"]
    assert int(r["answers"]) == d["samples"] == 51 and r["AVG"] == "" and d["AVG,none"] is None, (r, d)
    assert abs(float(r["code-switching %"]) - 100 * d["code_switch_rate,none"]) <= 0.05, (r, d)
    checked += 1
cs = list(csv.DictReader(open(os.path.join(w, "report", "code_switching.csv"))))
assert len(cs) == 4 * 17 and sum(int(r["answers"]) for r in cs) == 4 * 51, len(cs)
fert = list(csv.DictReader(open(os.path.join(w, "report", "fertility.csv"))))
f = {(r["input"], r["tokenizer"]): float(r["tokens/char"]) for r in fert}
assert f[("zh_ho.txt", "extended.model")] < f[("zh_ho.txt", "base.model")], f  # the point of extending
md = open(os.path.join(w, "report", "report.md"), encoding="utf-8").read()
for t in ("Perplexity per pretraining budget", "Knowledge accuracy", "Response quality", "fertility", "perplexity.png"):
    assert t in md, t
print("%d numbers" % checked)
EOF

# 4. The plots are PNGs of the data: chunks and CRCs valid, the figure's size, pixels decoded and not blank.
/usr/bin/python3 - "$w/report" <<'EOF' > check.txt 2>&1 && ok "PNGs decode: $(cat check.txt)" || bad "PNG: $(cat check.txt)"
import os, struct, sys, zlib
def decode(path):
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "signature"
    pos, idat, hdr = 8, b"", None
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        assert struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])[0] == zlib.crc32(kind + body), "CRC of " + str(kind)
        if kind == b"IHDR":
            hdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    w, h, depth, color = hdr[:4]
    assert depth == 8 and color in (2, 6), hdr
    bpp = 3 if color == 2 else 4
    raw, stride, prev, pixels = zlib.decompress(idat), w * bpp, bytearray(w * bpp), []
    for y in range(h):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if f == 1: line[i] = (line[i] + a) & 255
            elif f == 2: line[i] = (line[i] + b) & 255
            elif f == 3: line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        pixels.append(bytes(line))
        prev = line
    return w, h, bpp, pixels
out = []
for name in ("perplexity.png", "loss.png"):
    w, h, bpp, px = decode(os.path.join(sys.argv[1], name))
    assert (w, h) == (1100, 400), (name, w, h)  # figsize 11 x 4 inches at 100 dpi
    colours = {row[i:i + 3] for row in px[::4] for i in range(0, len(row), bpp * 4)}
    blue = sum(1 for row in px for i in range(0, len(row), bpp) if row[i + 2] > 150 and row[i] < 80)
    assert len(colours) > 20 and blue > 200, (name, len(colours), blue)  # axes, text and the blue data line
    out.append("%s %dx%d, %d colours, %d blue line pixels" % (name, w, h, len(colours), blue))
print("; ".join(out))
EOF

# 5. A rerun does nothing but the report; a changed setting is refused; bad configs are named.
sums() { find "$w/pretrain" "$w/sft" -name '*.h5' -print0 | sort -z | xargs -0 sha256sum; }
before=$(sums); lines=$(wc -l < "$w/study.log")
study grid.toml > run2.log 2>&1 && [[ $(sed -n "$((lines + 1)),\$p" "$w/study.log" | grep -vc ' run report:') -eq 0 ]] \
  && [[ $(sums) == "$before" ]] && grep -q '1 to run' run2.log \
  && ok "rerun: every stage skipped but the report, no checkpoint changed" || bad "rerun: $(head -3 run2.log)"
sed -i 's/^budgets = \[2, 4\]/budgets = [2, 5]/' grid.toml
expect_fail 1 "stage pretrain-orig-s1234 was done with other commands" -- study grid.toml
sed -i 's/^budgets = \[2, 5\]/budgets = [2, -1]/' grid.toml
expect_fail 1 "budgets: a list of whole numbers >= 0" -- study grid.toml --dry-run
# The shipped configs parse into their graphs: the mini-study, and the full-scale Arabic one (another language
# differs in corpora, instructions, questions and code-switching settings only).
POLYLLAMA=$bin study "$root/jobs/studies/zh-mini.toml" --dry-run > mini.txt 2>&1 && grep -q '^52 stages, 24 cells$' mini.txt \
  && [[ $(grep -Ec '^(todo|done) pretrain-' mini.txt) -eq 2 ]] && ok "zh-mini.toml: 52 stages, 24 cells, 2 pretraining runs" \
  || bad "zh-mini.toml: $(tail -3 mini.txt)"
PATH=$(dirname "$bin"):$PATH study "$root/jobs/studies/ar-llama7b.toml" --dry-run > ar.txt 2>&1 \
  && grep -q '^64 stages, 32 cells$' ar.txt && grep -q -- '--ppl-files ar:/scratch/corpora/ar/heldout.jsonl en:' ar.txt \
  && grep -q -- '--cs-language ar --cs-allow none' ar.txt && [[ $(grep -c '^todo pretrain-' ar.txt) -eq 2 ]] \
  && ok "ar-llama7b.toml: 64 stages, 32 cells, ppl_ar, Arabic code-switching" || bad "ar-llama7b.toml: $(tail -3 ar.txt)"
PATH=$(dirname "$bin"):$PATH study "$root/jobs/studies/ar-llama7b.toml" --cost > cost.txt 2>&1 \
  && grep -q 'total .* GPU-hours on 64 GPUs' cost.txt && grep -q '(fits)' cost.txt \
  && ok "--cost: $(grep -o 'total .*' cost.txt | head -1)" || bad "--cost: $(cat cost.txt)"
printf '[study]\nwork = "x"\n[grid]\n' > bad.toml
expect_fail 1 "bad.toml: unknown table \[grid\]" -- study bad.toml --dry-run
printf '[study\n' > bad.toml
expect_fail 1 "bad.toml: not valid TOML" -- study bad.toml --dry-run
finish
