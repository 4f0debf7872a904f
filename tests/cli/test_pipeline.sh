#!/usr/bin/env bash
# The main job (jobs/pipeline.sh) end to end with a tiny model and a few steps per stage, under mpirun -np 2:
# every stage's outputs (corpora, both tokenizers, token shards, the three training runs done at their last step,
# the three evals), the printed summary and RUN/results.md with finite numbers; a rerun skips every stage and
# changes no checkpoint; a removed eval is redone alone; a larger SFT_STEPS resumes sft from its checkpoint; the
# practice questions of share/main/sft_mc.jsonl are rendered byte for byte as eval renders C-Eval prompts and
# share no poem with the scored ones. Skips (77) without fortunes-zh, bible-kjv(-text), mpirun or python3.
# Usage: test_pipeline.sh POLYLLAMA_BINARY
source "$(dirname "$0")/lib.sh" "$@"
root=$(cd "$(dirname "$0")/../.." && pwd)
for need in /usr/share/games/fortunes/tang300 /usr/lib/bible.data; do
  [[ -f $need ]] || { echo "$need not installed (tools/install-deps.sh: fortunes-zh, bible-kjv-text): skipped"; exit 77; }
done
for cmd in bible mpirun python3; do
  command -v "$cmd" >/dev/null || { echo "no $cmd: skipped"; exit 77; }
done
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
run=$work/run
tiny=(POLYLLAMA="$bin" RUN_DIR="$run" NP=2 THREADS=1 LAUNCH="mpirun -np 2 --oversubscribe --bind-to none"
      EN_VOCAB=1000 ZH_PIECES=3000 ZH_COVERAGE=0.98
      MODEL="--hidden-size 32 --intermediate-size 64 --num-hidden-layers 1 --num-attention-heads 2 --num-key-value-heads 1"
      SEQ=64 MICRO_BATCH=4 BASE_STEPS=6 CPT_STEPS=6 SFT_STEPS=4 SFT_SEQ=256 SFT_MICRO_BATCH=4
      PPL_DOCS=2 RESP_TOKENS=4)
pipeline() { env "${tiny[@]}" "$@" "$root/jobs/pipeline.sh"; }

# 1. The whole job.
t0=$SECONDS
pipeline > "$work/log1" 2>&1 && ok "pipeline ran ($((SECONDS - t0)) s)" || { bad "pipeline: $(tail -30 "$work/log1")"; finish; exit; }
for f in corpus/en_train.txt corpus/en_heldout.txt corpus/zh_poems.txt corpus/zh_prose.txt corpus/zh_heldout.txt \
         tokenizer/en.model tokenizer/en-zh.model tokenizer/zh-pieces.model sft_poems.jsonl \
         data/en/metadata.json data/zh_poems/metadata.json data/zh_prose/metadata.json; do
  [[ -s $run/$f ]] || bad "missing $f"
done
ok "corpora, tokenizers, shards written"
grep -q 'base pieces + [0-9]* new' "$run/tokenizer/extend.log" && ok "extend printed its report" \
  || bad "extend.log: $(head -5 "$run/tokenizer/extend.log")"
for r in base:6 cpt:6 sft:4; do
  d=${r%%:*} s=${r##*:}
  [[ $(cat "$run/$d/ckpt/latest" 2>/dev/null) == step_0000000$s ]] && grep -q '"state": *"done"' "$run/$d/status.json" \
    && ok "$d trained to step $s, status done" || bad "$d: latest $(cat "$run/$d/ckpt/latest" 2>/dev/null), $(cat "$run/$d/status.json" 2>/dev/null)"
done
[[ -f $run/resized/ckpt/latest ]] && ok "resize-vocab wrote a checkpoint" || bad "no resized checkpoint"
for e in base cpt sft; do
  [[ -s $run/eval/$e/results.json && -s $run/eval/$e/results.md && -s $run/eval/$e/samples_ceval.jsonl ]] \
    && ok "eval $e: results.json, results.md, samples" || bad "eval $e incomplete: $(ls "$run/eval/$e" 2>&1)"
done
[[ $(wc -l < "$run/eval/sft/responses.jsonl") -eq $(grep -c . "$root/share/responses/zh_instructions.jsonl") ]] \
  && ok "an answer per sample instruction" || bad "responses.jsonl: $(wc -l < "$run/eval/sft/responses.jsonl") lines"
grep -q '^| base: English pretraining (before) | [0-9.]* | [0-9.]* |' "$work/log1" && grep -q '^code-switching: [0-9.]* %' "$work/log1" \
  && grep -q "^report: $run/results.md" "$work/log1" && [[ -s $run/results.md ]] \
  && ok "summary printed, results.md written" || bad "summary: $(tail -12 "$work/log1")"
python3 - "$run/summary.json" > "$work/check.txt" 2>&1 <<'EOF' && ok "summary numbers finite and in range" || bad "summary.json: $(cat "$work/check.txt")"
import json, math, sys
s = json.load(open(sys.argv[1]))
assert [m["model"] for m in s["models"]] == ["base", "cpt", "sft"], s["models"]
for m in s["models"]:
    for k in ("bpc_zh", "bpc_en", "tppl_zh", "tppl_en"):
        assert math.isfinite(m[k]) and m[k] > 0, (m["model"], k, m[k])
    assert 0 <= m["mc_acc"] <= 1 and m["mc_n"] == 40, m
sft = s["models"][2]
assert 0 <= sft["cs_rate"] <= 1 and sft["answers"] == 51, sft
# The transfer's point: the extended tokenizer and Chinese training lower Chinese bits per character.
assert s["models"][1]["bpc_zh"] < s["models"][0]["bpc_zh"], s["models"]
EOF

# 2. A rerun skips every stage and rewrites no checkpoint.
stamp() { find "$run" -path '*/ckpt/*' -newer "$work/stamp" | sort; }
touch "$work/stamp"; sleep 1
pipeline > "$work/log2" 2>&1 && ok "rerun exit 0" || bad "rerun: $(tail -20 "$work/log2")"
n=$(grep -c 'complete, skipped\|complete, kept' "$work/log2")
[[ $n -eq 13 ]] && ! grep -q '^step ' "$work/log2" && [[ -z $(stamp) ]] \
  && ok "rerun skipped all 13 steps of the 8 stages" || bad "rerun skipped $n (want 13): $(grep -v '^|' "$work/log2" | head -40) $(stamp)"
grep -q '^| after instruction tuning |' "$work/log2" && ok "rerun printed the summary again" || bad "rerun summary"

# 3. A removed eval is redone alone; more sft steps resume sft from its last checkpoint.
rm -rf "$run/eval/sft"
pipeline SFT_STEPS=5 > "$work/log3" 2>&1 && ok "partial rerun exit 0" || bad "partial rerun: $(tail -20 "$work/log3")"
grep -q 'eval base: complete, skipped' "$work/log3" && grep -q 'continued pretraining: complete, skipped' "$work/log3" \
  && [[ -s $run/eval/sft/results.json ]] && [[ $(cat "$run/sft/ckpt/latest") == step_00000005 ]] \
  && grep -q 'step      5/5' "$work/log3" && ! grep -q 'step      1/5' "$work/log3" \
  && ok "only sft (resumed at step 4) and its eval were redone" || bad "partial rerun: $(grep -v '^|' "$work/log3" | head -60)"

# 4. The practice questions are C-Eval prompts exactly as eval renders them, about other poems.
"$bin" eval --tasks ceval --bench-dir "$root/share/main" --num-fewshot 0 --dump-prompts "$work/prompts.jsonl" > /dev/null 2>&1
python3 - "$root" "$work/prompts.jsonl" > "$work/mc.txt" 2>&1 <<'EOF' && ok "sft practice questions rendered as eval renders, disjoint poems" || bad "questions: $(cat "$work/mc.txt")"
import csv, importlib.util, json, re, sys
root, dump = sys.argv[1], sys.argv[2]
spec = importlib.util.spec_from_file_location("cq", root + "/tools/corpus-questions.py")
cq = importlib.util.module_from_spec(spec); spec.loader.exec_module(cq)
rows = list(csv.DictReader(open(root + "/share/main/ceval/val/tang_poetry_val.csv", encoding="utf-8")))
prompts = [json.loads(l) for l in open(dump, encoding="utf-8")]
assert len(prompts) == len(rows) == 40, (len(prompts), len(rows))
for r, p in zip(rows, prompts):
    item = {"question": r["question"], "options": [r[c] for c in "ABCD"], "answer": r["answer"]}
    assert cq.HEADER + cq.render(item, False) == p["prompt"], (p["prompt"], cq.render(item, False))
    assert p["gold"] == [r["answer"]]
assert sorted(r["answer"] for r in rows) == sorted("ABCD" * 10)
sft = [json.loads(l) for l in open(root + "/share/main/sft_mc.jsonl", encoding="utf-8")]
assert all(s["instruction"].startswith(cq.HEADER) and s["instruction"].endswith("\n答案：") and s["output"] in "ABCD" for s in sft)
def poem(question, right):  # the poem a question is about: named in it, or (which poem is this line from?) the answer
    return right if "出自" in question else re.search(r"《([^》]+)》", question).group(0)
held = {poem(r["question"], r[r["answer"]]) for r in rows}
practice = set()
for s in sft:
    q, opts = s["instruction"][len(cq.HEADER):].split("\nA. ", 1)
    options = ("A. " + opts[:-len("\n答案：")]).split("\n")
    practice.add(poem(q, options["ABCD".index(s["output"])][3:]))
assert len(held) == 40 and len(practice) > 200, (len(held), len(practice))
assert not held & practice, held & practice
EOF
finish
