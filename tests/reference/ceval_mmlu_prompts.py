#!/usr/bin/env python3
"""C-Eval's and MMLU's official k-shot prompts, rebuilt in plain Python from their evaluation code, for the
C++ tasks' tests (tests/eval/test_ceval_mmlu.cpp) to compare with byte for byte.

  C-Eval: hkust-nlp/ceval code/evaluator_series/evaluators/llama.py, LLaMA_Evaluator.format_example and
          generate_few_shot_prompt (answer-only, cot=False); eval_llama.py reads the files with pd.read_csv.
  MMLU:   hendrycks/test evaluate.py, format_subject, format_example, gen_prompt; categories.py.

Both read the CSV files with pandas.read_csv, whose per-column type inference decides what the f-strings print
(an all-integer column prints "7" for "007", a numeric column with a decimal prints "3.0" for "3", an NA string
such as "None" prints "nan"). This script uses only the standard library: it reads with csv and turns each
column into the values pandas would make (pandas_values), then formats them with Python itself. With --pandas
it reads with pandas.read_csv instead (when pandas is installed), to check that emulation.

usage: ceval_mmlu_prompts.py BENCH_DIR [--task ceval|mmlu|all] [--split val] [--k 5] [--subjects a,b]
                             [--subject-key] [--pandas]
prints one JSON line per question {"task", "subject", "category", "index", "prompt", "gold"} and per task one
line {"task", "counts": {"questions", "subjects", "categories"}}.
"""
import argparse
import csv
import json
import math
import os
import re
import sys

CHOICES = ["A", "B", "C", "D"]

# ---- pandas.read_csv's default type inference, for the cases benchmark files hold ----

NA_STRINGS = {"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
              "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"}  # pandas >= 2.0 defaults
INT_RE = re.compile(r"[ \t\n\v\f\r]*[+-]?[0-9]+[ \t\n\v\f\r]*\Z")
FLOAT_RE = re.compile(r"[ \t\n\v\f\r]*[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?[ \t\n\v\f\r]*\Z")
INF_RE = re.compile(r"[+-]?(inf|infinity)\Z", re.IGNORECASE)


def kind_of(cell):
    if cell in NA_STRINGS:
        return "na"
    if cell.lower() in ("true", "false"):
        return "bool"
    if INT_RE.match(cell) and -2**63 <= int(cell) < 2**63:
        return "int"
    if INT_RE.match(cell):
        return "text"  # beyond int64 (pandas tries uint64; the C++ task keeps such a column as text)
    if INF_RE.match(cell) or (FLOAT_RE.match(cell) and math.isfinite(float(cell))):
        return "float"
    return "text"


def pandas_values(rows, ncols):
    """rows: lists of ncols strings -> lists of the Python values pandas.read_csv would hold."""
    out = [[None] * ncols for _ in rows]
    for j in range(ncols):
        kinds = [kind_of(r[j]) for r in rows]
        present = set(kinds)
        text = "text" in present or ("bool" in present and ({"int", "float"} & present))
        for i, r in enumerate(rows):
            k, cell = kinds[i], r[j]
            if k == "na":
                v = float("nan")
            elif text:
                v = cell
            elif k == "bool":
                v = cell.lower() == "true"
            elif present <= {"int"}:
                v = int(cell)
            elif present <= {"int", "na"}:
                v = float(int(cell))  # int64 with NaN: cast to float64 ("-0" -> 0.0)
            else:
                v = float(cell)
            out[i][j] = v
    return out


def read_rows(path, header, use_pandas):
    """The data rows of a CSV file as lists of values (header excluded), and the header's column names."""
    if use_pandas:
        import pandas as pd  # only for --pandas
        df = pd.read_csv(path) if header else pd.read_csv(path, header=None)
        names = list(df.columns) if header else None
        return [list(df.iloc[i, :]) for i in range(df.shape[0])], names
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = [r for r in csv.reader(f) if r]
    names = rows.pop(0) if header else None
    ncols = len(names) if header else len(rows[0])
    return pandas_values(rows, ncols), names


def files_of(directory, split):
    suffix = "_" + split + ".csv"
    return sorted(f[: -len(suffix)] for f in os.listdir(directory) if f.endswith(suffix))


# ---- C-Eval: evaluators/llama.py ----

def ceval_format_example(line, include_answer=True):
    example = line["question"]
    for choice in CHOICES:
        example += f'\n{choice}. {line[f"{choice}"]}'
    if include_answer:
        example += "\n答案：" + line["answer"] + "\n\n"
    else:
        example += "\n答案："
    return example


def ceval_few_shot_prompt(subject, dev_lines, k):
    prompt = f"以下是中国关于{subject}考试的单项选择题，请选出其中的正确答案。\n\n"
    for i in range(k):
        prompt += ceval_format_example(dev_lines[i], include_answer=True)
    return prompt


def ceval(args):
    root = os.path.join(args.bench, "ceval")
    with open(os.path.join(root, "subject_mapping.json"), encoding="utf-8") as f:
        mapping = json.load(f)
    subjects = args.subjects or files_of(os.path.join(root, args.split), args.split)
    out = []
    for subject in subjects:
        name = subject if args.subject_key else mapping[subject][1]
        dev_lines = []
        if args.k > 0:
            rows, names = read_rows(os.path.join(root, "dev", f"{subject}_dev.csv"), True, args.pandas)
            dev_lines = [dict(zip(names, r)) for r in rows]
        prompt = ceval_few_shot_prompt(name, dev_lines, args.k)
        rows, names = read_rows(os.path.join(root, args.split, f"{subject}_{args.split}.csv"), True, args.pandas)
        for index, r in enumerate(rows):
            line = dict(zip(names, r))
            gold = line["answer"] if args.split != "test" else ""
            out.append({"task": "ceval", "subject": subject, "category": mapping[subject][2], "index": index,
                        "prompt": prompt + ceval_format_example(line, include_answer=False), "gold": gold})
    return out


# ---- MMLU: evaluate.py and categories.py ----

SUBCATEGORIES = {
    "abstract_algebra": ["math"], "anatomy": ["health"], "astronomy": ["physics"],
    "business_ethics": ["business"], "clinical_knowledge": ["health"], "college_biology": ["biology"],
    "college_chemistry": ["chemistry"], "college_computer_science": ["computer science"],
    "college_mathematics": ["math"], "college_medicine": ["health"], "college_physics": ["physics"],
    "computer_security": ["computer science"], "conceptual_physics": ["physics"], "econometrics": ["economics"],
    "electrical_engineering": ["engineering"], "elementary_mathematics": ["math"], "formal_logic": ["philosophy"],
    "global_facts": ["other"], "high_school_biology": ["biology"], "high_school_chemistry": ["chemistry"],
    "high_school_computer_science": ["computer science"], "high_school_european_history": ["history"],
    "high_school_geography": ["geography"], "high_school_government_and_politics": ["politics"],
    "high_school_macroeconomics": ["economics"], "high_school_mathematics": ["math"],
    "high_school_microeconomics": ["economics"], "high_school_physics": ["physics"],
    "high_school_psychology": ["psychology"], "high_school_statistics": ["math"],
    "high_school_us_history": ["history"], "high_school_world_history": ["history"], "human_aging": ["health"],
    "human_sexuality": ["culture"], "international_law": ["law"], "jurisprudence": ["law"],
    "logical_fallacies": ["philosophy"], "machine_learning": ["computer science"], "management": ["business"],
    "marketing": ["business"], "medical_genetics": ["health"], "miscellaneous": ["other"],
    "moral_disputes": ["philosophy"], "moral_scenarios": ["philosophy"], "nutrition": ["health"],
    "philosophy": ["philosophy"], "prehistory": ["history"], "professional_accounting": ["other"],
    "professional_law": ["law"], "professional_medicine": ["health"], "professional_psychology": ["psychology"],
    "public_relations": ["politics"], "security_studies": ["politics"], "sociology": ["culture"],
    "us_foreign_policy": ["politics"], "virology": ["health"], "world_religions": ["philosophy"],
}
CATEGORIES = {
    "STEM": ["physics", "chemistry", "biology", "computer science", "math", "engineering"],
    "humanities": ["history", "philosophy", "law"],
    "social sciences": ["politics", "culture", "economics", "geography", "psychology"],
    "other (business, health, misc.)": ["other", "business", "health"],
}
# polyllama names the fourth category "other" (lm-evaluation-harness's mmlu_other).
CATEGORY_NAME = {"other (business, health, misc.)": "other"}


def mmlu_category(subject):
    sub = SUBCATEGORIES[subject][0]
    name = next(c for c, subs in CATEGORIES.items() if sub in subs)
    return CATEGORY_NAME.get(name, name)


def format_subject(subject):
    s = ""
    for entry in subject.split("_"):
        s += " " + entry
    return s


def mmlu_format_example(rows, idx, include_answer=True):
    prompt = rows[idx][0]
    k = len(rows[idx]) - 2
    for j in range(k):
        prompt += "\n{}. {}".format(CHOICES[j], rows[idx][j + 1])
    prompt += "\nAnswer:"
    if include_answer:
        prompt += " {}\n\n".format(rows[idx][k + 1])
    return prompt


def gen_prompt(train_rows, subject, k):
    prompt = "The following are multiple choice questions (with answers) about {}.\n\n".format(format_subject(subject))
    for i in range(k):
        prompt += mmlu_format_example(train_rows, i)
    return prompt


def mmlu(args):
    root = os.path.join(args.bench, "mmlu")
    subjects = args.subjects or files_of(os.path.join(root, args.split), args.split)
    out = []
    for subject in subjects:
        dev = read_rows(os.path.join(root, "dev", f"{subject}_dev.csv"), False, args.pandas)[0] if args.k else []
        prompt = gen_prompt(dev[: args.k], subject, args.k)
        rows = read_rows(os.path.join(root, args.split, f"{subject}_{args.split}.csv"), False, args.pandas)[0]
        for index in range(len(rows)):
            out.append({"task": "mmlu", "subject": subject, "category": mmlu_category(subject), "index": index,
                        "prompt": prompt + mmlu_format_example(rows, index, include_answer=False),
                        "gold": rows[index][-1]})
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("bench")
    p.add_argument("--task", default="all", choices=["ceval", "mmlu", "all"])
    p.add_argument("--split", default="val")
    p.add_argument("--k", type=int, default=5)
    p.add_argument("--subjects", default="")
    p.add_argument("--subject-key", action="store_true", help="C-Eval: the subject's key in the header")
    p.add_argument("--pandas", action="store_true", help="read with pandas.read_csv instead of csv + emulation")
    args = p.parse_args()
    args.subjects = [s for s in args.subjects.split(",") if s]
    for task, build in (("ceval", ceval), ("mmlu", mmlu)):
        if args.task not in (task, "all"):
            continue
        questions = build(args)
        for q in questions:
            print(json.dumps(q))
        counts = {"questions": len(questions), "subjects": len({q["subject"] for q in questions}),
                  "categories": len({q["category"] for q in questions})}
        print(json.dumps({"task": task, "counts": counts}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
