#!/usr/bin/env python3
"""Data and checks of tests/cli/test_eval.sh.

  bench DIR          writes an MMLU-format benchmark: two subjects, 5 dev and 4 val rows each, no header
  teach PROMPTS DIR  from the 0-shot prompts (`eval --dump-prompts`), DIR/train.jsonl: Alpaca records, each prompt
                     with the letter taught for it (the gold one, except question 5: two letters further), for
                     `sft --template plain` (BOS, the prompt's ids, then the letter's "▁A" ...: what eval reads);
                     DIR/train.txt: the same as text (the tokenizer's corpus); DIR/taught.json: the letters
  check-taught DIR   the 0-shot evaluation in DIR/ev0 predicted exactly the taught letters and scored 7/8
  check-split DIR    DIR/np1, np2 (dp 2) and tp2 (tp 2 x dp 2) agree (see test_eval.sh)
"""
import csv
import json
import sys


def bench(root):
    animals = ["otter", "heron", "badger", "marten", "plover", "stoat", "vole", "wren", "kestrel", "newt"]
    for s, subject in enumerate(["abstract_algebra", "world_religions"]):
        for split, n in (("dev", 5), ("val", 4)):
            with open(f"{root}/{split}/{subject}_{split}.csv", "w", newline="") as f:
                w = csv.writer(f)
                for i in range(n):
                    k = s * 20 + (0 if split == "dev" else 10) + i
                    opts = [animals[(k + j) % 10] + f" {k}{j}" for j in range(4)]
                    question = f"Which animal is number {k} in the {subject.replace('_', ' ')} list?"
                    w.writerow([question] + opts + ["ABCD"[(k * 7 + 1) % 4]])


def teach(prompts, out):
    qs = [json.loads(line) for line in open(prompts)]
    taught = []
    with open(out + "/train.txt", "w") as f, open(out + "/train.jsonl", "w") as j:
        for i, q in enumerate(qs):
            gold = q["gold"][0]
            letter = gold if i != 5 else "ABCD"[("ABCD".index(gold) + 2) % 4]
            taught.append(letter)
            f.write(q["prompt"] + " " + letter + "\n\n")
            j.write(json.dumps({"instruction": q["prompt"], "output": letter}) + "\n")
    json.dump(taught, open(out + "/taught.json", "w"))


def check_taught(w):
    taught = json.load(open(w + "/taught.json"))
    samples = [json.loads(line) for line in open(w + "/ev0/samples_mmlu.jsonl")]
    preds = [s["pred"] for s in samples]
    assert preds == taught, (preds, taught)
    r = json.load(open(w + "/ev0/results.json"))
    for key in ("results", "groups", "group_subtasks", "configs", "versions", "n-shot", "config"):
        assert key in r, key
    res = r["results"]
    assert res["mmlu"]["acc,none"] == 7 / 8, res["mmlu"]
    assert res["mmlu"]["acc_subject_mean,none"] == (1 + 3 / 4) / 2, res["mmlu"]
    assert res["mmlu_abstract_algebra"]["acc,none"] == 1.0 and res["mmlu_world_religions"]["acc,none"] == 0.75
    assert r["n-shot"]["mmlu_abstract_algebra"] == 0 and r["groups"]["mmlu_stem"]["samples"] == 4
    s = samples[5]
    assert not s["correct"] and len(s["logprobs"]) == 4 and s["choices"] == ["A", "B", "C", "D"]
    assert json.loads(open(w + "/ev0.json").read().strip().splitlines()[-1])["mmlu"] == 7 / 8


def check_split(w):
    r1, r2, r4 = (json.load(open(f"{w}/{d}/results.json"))["results"] for d in ("np1", "np2", "tp2"))
    assert r1 == r2, "np 2 results differ"
    s1, s4 = ([json.loads(line) for line in open(f"{w}/{d}/samples_mmlu.jsonl")] for d in ("np1", "tp2"))
    assert [s["pred"] for s in s1] == [s["pred"] for s in s4]
    worst = max(abs(a - b) for x, y in zip(s1, s4) for a, b in zip(x["logprobs"], y["logprobs"]))
    assert worst < 1e-4, worst
    p1, p4 = r1["ppl_xx"], r4["ppl_xx"]
    assert p1["tokens"] == p4["tokens"] and abs(p1["nats"] - p4["nats"]) < 1e-5 * p1["nats"], (p1, p4)
    print(f"tp 2: worst log-probability difference {worst:.2e}")


if __name__ == "__main__":
    cmd = sys.argv[1]
    {"bench": lambda: bench(sys.argv[2]), "teach": lambda: teach(sys.argv[2], sys.argv[3]),
     "check-taught": lambda: check_taught(sys.argv[2]), "check-split": lambda: check_split(sys.argv[2])}[cmd]()
