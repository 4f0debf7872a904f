#!/usr/bin/env python3
"""`polyllama eval` side by side with lm-evaluation-harness on the same model and the same questions.

    tools/bench/eval_vs_lm_eval.py --polyllama build/polyllama --ckpt RUN --hf HF_FOLDER --bench BENCH_DIR \
        --tasks ceval,mmlu --subjects-ceval a,b --work DIR [--python LM_EVAL_PYTHON]

Both evaluate the same prompts: polyllama writes them (`eval --dump-prompts`, checked byte for byte against the
benchmarks' official prompt code by its tests), and lm-evaluation-harness reads them as a local JSON dataset
(`doc_to_text: "{{prompt}}"`, `num_fewshot: 0`: the five examples are already in each prompt), scoring the choices
" A" .. " D" by log-likelihood with its `hf` backend on the CPU (float32, add_bos_token, the slow LlamaTokenizer
over the exported tokenizer.model). " A" after "Answer:" / "答案：" is the single token "▁A", the one polyllama
reads, so both compute the log-probability of the same token after the same ids. Prints the wall time and
questions/s of each (model loading included for both; the median of --repeat runs, taken in turns, so that both
see the same machine) and the agreement of per-question predictions; a difference where two options are within
1e-4 of each other is a near-tie, listed, not a disagreement.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

SHIM = '''import datasets
import evaluate


class ExactMatch(evaluate.Metric):  # lm-eval imports this metric at start-up; offline, it cannot fetch it
    def _info(self):
        return evaluate.MetricInfo(description="exact match", citation="", inputs_description="",
                                   features=datasets.Features({"predictions": datasets.Value("string"),
                                                               "references": datasets.Value("string")}))

    def _compute(self, predictions, references, **kwargs):
        return {"exact_match": sum(p == r for p, r in zip(predictions, references)) / max(1, len(predictions))}
'''

LM_EVAL = r'''
import json, sys, time
t0 = time.time()
from lm_eval import evaluator
from lm_eval.tasks import TaskManager
hf, tasks_dir, names, out, threads = sys.argv[1:6]
import torch
torch.set_num_threads(int(threads))
tm = TaskManager(include_path=tasks_dir)
res = evaluator.simple_evaluate(model="hf", model_args=f"pretrained={hf},dtype=float32,add_bos_token=True,"
                                "use_fast_tokenizer=False", tasks=names.split(","), batch_size=8, device="cpu",
                                log_samples=True, task_manager=tm)
preds = {}
for task, samples in res["samples"].items():
    for s in samples:
        lls = [r[0] for r in s["filtered_resps"]]
        preds[f"{task}/{s['doc']['index']}"] = lls
json.dump({"seconds": time.time() - t0, "logprobs": preds}, open(out, "w"))
'''


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--polyllama", required=True)
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--hf", required=True)
    ap.add_argument("--bench", required=True)
    ap.add_argument("--tasks", default="ceval,mmlu")
    ap.add_argument("--subjects-ceval", default="")
    ap.add_argument("--work", required=True)
    ap.add_argument("--python", default=sys.executable, help="a Python with lm-eval installed")
    ap.add_argument("--threads", default="2")
    ap.add_argument("--repeat", type=int, default=3,
                    help="runs of each program, alternating, so both see the same machine; medians are compared")
    a = ap.parse_args()
    os.makedirs(a.work + "/tasks", exist_ok=True)
    os.makedirs(a.work + "/exact_match", exist_ok=True)
    open(a.work + "/exact_match/exact_match.py", "w").write(SHIM)
    env = dict(os.environ, OMP_NUM_THREADS=a.threads, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1")

    # The prompts, as polyllama renders them; one lm-eval task per (benchmark, subject).
    questions = []
    for task in a.tasks.split(","):
        extra = ["--subjects", a.subjects_ceval] if task == "ceval" and a.subjects_ceval else []
        out = f"{a.work}/prompts_{task}.jsonl"  # one task at a time: --subjects names ceval's
        subprocess.run([a.polyllama, "eval", "--tasks", task, "--bench-dir", a.bench, "--dump-prompts", out] + extra,
                       check=True, env=env, stderr=subprocess.DEVNULL)
        questions += [json.loads(line) for line in open(out)]
    names = []
    by_subject = {}
    for q in questions:
        by_subject.setdefault((q["task"], q["subject"]), []).append(q)
    for (task, subject), qs in by_subject.items():
        name = f"pl_{task}_{subject}"
        names.append(name)
        data = f"{a.work}/tasks/{name}.jsonl"
        with open(data, "w") as f:
            for q in qs:
                f.write(json.dumps({"prompt": q["prompt"], "gold": "ABCD".index(q["gold"][0]),
                                    "index": q["index"]}, ensure_ascii=False) + "\n")
        with open(f"{a.work}/tasks/{name}.yaml", "w") as f:
            f.write(f"task: {name}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {data}\n"
                    "test_split: test\noutput_type: multiple_choice\ndoc_to_text: \"{{prompt}}\"\n"
                    "doc_to_choice: [\"A\", \"B\", \"C\", \"D\"]\ndoc_to_target: gold\ntarget_delimiter: \" \"\n"
                    "num_fewshot: 0\nmetric_list:\n  - metric: acc\n")

    # lm-evaluation-harness, then polyllama on the same questions in one run as a user would; in turns.
    script = f"{a.work}/run_lm_eval.py"
    open(script, "w").write(LM_EVAL)
    subjects = ",".join("ceval:" + x for x in a.subjects_ceval.split(",") if x)
    lm_times, pl_times = [], []
    for _ in range(a.repeat):
        t0 = time.time()
        subprocess.run([a.python, script, a.hf, a.work + "/tasks", ",".join(names), a.work + "/lm_eval.json",
                        a.threads], check=True, env=env, cwd=a.work)
        lm_times.append(time.time() - t0)
        t0 = time.time()
        subprocess.run([a.polyllama, "eval", "--ckpt", a.ckpt, "--tasks", a.tasks, "--bench-dir", a.bench,
                        "--out", f"{a.work}/pl", "--threads", a.threads] + (["--subjects", subjects] if subjects else []),
                       check=True, env=env)
        pl_times.append(time.time() - t0)
    lm = json.load(open(a.work + "/lm_eval.json"))
    lm_seconds, pl_seconds = statistics.median(lm_times), statistics.median(pl_times)
    pl = {}
    for task in a.tasks.split(","):
        for line in open(f"{a.work}/pl/samples_{task}.jsonl"):
            s = json.loads(line)
            pl[f"pl_{task}_{s['subject']}/{s['index']}"] = s["logprobs"]

    # Agreement.
    n, same, ties, worst = 0, 0, [], 0.0
    for key, ours in pl.items():
        theirs = lm["logprobs"][key]
        n += 1
        worst = max(worst, max(abs(x - y) for x, y in zip(ours, theirs)))
        p_ours = max(range(4), key=lambda i: (ours[i], -i))
        p_theirs = max(range(4), key=lambda i: (theirs[i], -i))
        if p_ours == p_theirs:
            same += 1
        else:
            gap = abs(sorted(ours)[-1] - sorted(ours)[-2])
            ties.append((key, gap))
    near = [t for t in ties if t[1] < 1e-4]
    print(f"| | polyllama eval | lm-evaluation-harness (hf, CPU) |")
    print("|---|---|---|")
    print(f"| questions | {n} | {n} |")
    print(f"| wall time (s), model loading included, median of {a.repeat} | {pl_seconds:.1f} | {lm_seconds:.1f} |")
    print(f"| every run (s) | {', '.join(f'{t:.1f}' for t in pl_times)} | {', '.join(f'{t:.1f}' for t in lm_times)} |")
    print(f"| questions/s | {n / pl_seconds:.2f} | {n / lm_seconds:.2f} |")
    print(f"| polyllama speed-up | {lm_seconds / pl_seconds:.1f}x | |")
    print(f"\nidentical predictions: {same}/{n}; worst |log-probability difference|: {worst:.2e}")
    for key, gap in ties:
        print(f"  differs: {key} (top-2 gap {gap:.2e}{', a near-tie' if gap < 1e-4 else ''})")
    return 0 if len(ties) == len(near) else 1


if __name__ == "__main__":
    sys.exit(main())
