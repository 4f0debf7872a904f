#!/usr/bin/env python3
"""Writes the main job's multiple-choice questions about the Tang poems of Debian's fortunes-zh (tang300).

The questions are in C-Eval's release layout so that `polyllama eval --tasks ceval --bench-dir share/main`
reads them exactly like the real benchmark (one subject, tang_poetry, 唐诗):

  share/main/ceval/subject_mapping.json          {"tang_poetry": ["Tang Poetry", "唐诗", "Humanities"]}
  share/main/ceval/dev/tang_poetry_dev.csv        5 questions with explanations (the few-shot examples)
  share/main/ceval/val/tang_poetry_val.csv        40 scored questions, 10 per answer letter
  share/main/sft_mc.jsonl                         instruction records teaching the question format on the
                                                  OTHER poems (no val or dev poem appears in them)

Three kinds of question, each answerable from the poem's text in tang300 (which the main job pretrains on):
who wrote 《T》 (four poets), which half-line follows a given one (four half-lines of the same length), and
which poem a first line comes from (four titles). Wrong options are drawn from other poems; wrong poets are
drawn in proportion to how many poems each wrote, so that a model preferring prolific poets gains nothing.
Every answer letter is equally frequent in val, so a model that always answers one letter scores exactly 25 %.

The sft records hold the exact zero-shot C-Eval prompt (header, question, options, "答案：") as the instruction
and the letter as the output; with share/main/mc_template.json (the prompt verbatim, the answer directly after)
instruction tuning teaches the format that eval's letter log-probabilities read. `--shots K` renders them
K-shot with the dev questions instead (use the same K as eval's --num-fewshot).

Deterministic (seeded); rerun it only to change the set. Usage:
  tools/corpus-questions.py [--tang300 /usr/share/games/fortunes/tang300] [--out share/main] [--shots 0]
"""
import argparse
import csv
import io
import json
import os
import random
import re
import sys

HEADER = "以下是中国关于唐诗考试的单项选择题，请选出其中的正确答案。\n\n"  # ceval.cpp's header for 唐诗
LETTERS = "ABCD"
N_VAL, N_DEV = 40, 5


def read_poems(path):
    """tang300 -> [{title, author, lines}] (fortunes separated by '%' lines, ANSI colour codes around titles)."""
    with open(path, encoding="utf-8") as f:
        text = re.sub(r"\x1b\[[0-9;]*m", "", f.read())
    poems = []
    for block in text.split("\n%\n"):
        rows = [r.strip() for r in block.strip().split("\n") if r.strip()]
        if len(rows) < 3 or not (rows[0].startswith("《") and rows[0].endswith("》")) or \
                not rows[1].startswith("作者："):
            continue
        poems.append({"title": rows[0][1:-1], "author": rows[1][len("作者："):], "lines": rows[2:]})
    return poems


COUPLET = re.compile(r"^([\u4e00-\u9fff]{5}|[\u4e00-\u9fff]{7})，([\u4e00-\u9fff]{5}|[\u4e00-\u9fff]{7})[。？！]$")


def couplets(poem):
    return [m.groups() for m in map(COUPLET.match, poem["lines"]) if m and len(m.group(1)) == len(m.group(2))]


def make_question(kind, poem, pool, rng):
    """(question, correct option, [three wrong options], explanation) or None when the poem lacks the material."""
    if kind == "author":
        counts = {}
        for p in pool:
            if p["author"] != poem["author"]:
                counts[p["author"]] = counts.get(p["author"], 0) + 1
        names = sorted(counts)
        wrong = set()
        while len(wrong) < 3:  # weighted by poems per poet, so prolific poets are as often wrong as right
            wrong.add(rng.choices(names, weights=[counts[n] for n in names])[0])
        return ("《%s》的作者是____。" % poem["title"], poem["author"], sorted(wrong),
                "《%s》是%s的诗。" % (poem["title"], poem["author"]))
    if kind == "next":
        cs = couplets(poem)
        if not cs:
            return None
        first, second = cs[rng.randrange(len(cs))]
        halves = sorted({h for p in pool if p is not poem for c in couplets(p) for h in c if len(h) == len(second)}
                        - {second})
        return ("《%s》中，“%s”的下一句是____。" % (poem["title"], first), second, rng.sample(halves, 3),
                "《%s》：“%s，%s。”" % (poem["title"], first, second))
    if kind == "title":
        first = poem["lines"][0]
        titles = sorted({p["title"] for p in pool if p["title"] != poem["title"]})
        return ("“%s”出自哪一首诗？____" % first, "《%s》" % poem["title"],
                ["《%s》" % t for t in rng.sample(titles, 3)], "“%s”是《%s》的第一句。" % (first, poem["title"]))
    raise ValueError(kind)


def place(q, letter_index):
    question, right, wrong, explanation = q
    options = list(wrong)
    options.insert(letter_index, right)
    return {"question": question, "options": options, "answer": LETTERS[letter_index], "explanation": explanation}


def render(item, with_answer):
    """One question as ceval.cpp renders it: question, options, then \n答案： (and the letter for examples)."""
    s = item["question"] + "".join("\n%s. %s" % (LETTERS[i], o) for i, o in enumerate(item["options"]))
    return s + "\n答案：" + (item["answer"] + "\n\n" if with_answer else "")


def write_csv(path, items, explanations):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["id", "question", "A", "B", "C", "D", "answer"] + (["explanation"] if explanations else []))
    for i, it in enumerate(items):
        w.writerow([i, it["question"]] + it["options"] + [it["answer"]] + ([it["explanation"]] if explanations else []))
    with open(path, "w", encoding="utf-8") as f:
        f.write(buf.getvalue())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tang300", default="/usr/share/games/fortunes/tang300")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "share", "main"))
    ap.add_argument("--shots", type=int, default=0, help="dev examples before each sft question (eval's --num-fewshot)")
    ap.add_argument("--seed", type=int, default=17)
    a = ap.parse_args()
    if not os.path.isfile(a.tang300):
        sys.exit("corpus-questions: %s not found: install Debian's fortunes-zh (tools/install-deps.sh)" % a.tang300)
    poems = read_poems(a.tang300)
    if len(poems) < 200:
        sys.exit("corpus-questions: only %d poems parsed from %s; expected about 300" % (len(poems), a.tang300))
    # A title several poems share (《杂诗》, 《无题・其一》) would make "who wrote 《T》" ambiguous: such poems
    # are never the subject of a question (they still serve as wrong options).
    n_title = {}
    for p in poems:
        n_title[p["title"]] = n_title.get(p["title"], 0) + 1
    rng = random.Random(a.seed)
    kinds = ["author", "next", "title"]
    order = list(range(len(poems)))
    rng.shuffle(order)

    # val and dev: one question per poem, kinds in turn, letters balanced (each letter N_VAL/4 times).
    held, val, dev = set(), [], []
    letters = [i % 4 for i in range(N_VAL)]
    rng.shuffle(letters)
    for target, n, letter_of in ((val, N_VAL, lambda k: letters[k]), (dev, N_DEV, lambda k: k % 4)):
        for pi in order:
            if len(target) == n:
                break
            if pi in held or n_title[poems[pi]["title"]] > 1:
                continue
            q = make_question(kinds[len(target) % 3], poems[pi], poems, rng)
            if q is None:
                continue
            held.add(pi)
            target.append(place(q, letter_of(len(target))))

    # sft: every kind for every other poem, letters in turn.
    train = []
    for pi in order:
        if pi in held or n_title[poems[pi]["title"]] > 1:
            continue
        for kind in kinds:
            q = make_question(kind, poems[pi], [p for j, p in enumerate(poems) if j not in held], rng)
            if q is not None:
                train.append(place(q, len(train) % 4))
    rng.shuffle(train)

    root = os.path.join(a.out, "ceval")
    write_csv(os.path.join(root, "val", "tang_poetry_val.csv"), val, False)
    write_csv(os.path.join(root, "dev", "tang_poetry_dev.csv"), dev, True)
    with open(os.path.join(root, "subject_mapping.json"), "w", encoding="utf-8") as f:
        json.dump({"tang_poetry": ["Tang Poetry", "唐诗", "Humanities"]}, f, ensure_ascii=False, indent=1)
        f.write("\n")
    shots = "".join(render(d, True) for d in dev[:a.shots])
    with open(os.path.join(a.out, "sft_mc.jsonl"), "w", encoding="utf-8") as f:
        for it in train:
            f.write(json.dumps({"instruction": HEADER + shots + render(it, False), "output": it["answer"]},
                               ensure_ascii=False) + "\n")
    print("corpus-questions: %d poems; %d val, %d dev questions; %d sft records (%d-shot) in %s"
          % (len(poems), len(val), len(dev), len(train), a.shots, os.path.abspath(a.out)))


if __name__ == "__main__":
    main()
