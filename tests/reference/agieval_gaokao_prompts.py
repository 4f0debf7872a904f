#!/usr/bin/env python3
"""The prompts and gold answers of AGIEval and GAOKAO-Bench as their official code builds them.

An independent rendition, in plain Python 3 (standard library only), of
  - AGIEval (ruixiangcui/AGIEval): src/dataset_loader.py convert_zero_shot, and for few-shot ("few-shot",
    answer only) combine_prompt(load_explanation=False), concat_prompt and convert_few_shot, with
    run_prediction.py's end_of_example "<END>\\n"; the gold of load_dataset_as_result_schema (label if truthy
    else answer);
  - GAOKAO-Bench (OpenLMLab/GAOKAO-Bench): Bench/bench_function.py choice_test (question.strip() + "\\n") sent
    after Obj_Prompt.json's prefix_prompt (models/moss.py and the completion path of models/openai.py:
    prompt + question); OBJ_score_evaluation.py's subjects (score_dict) and points (len(answer) * score).
Two things stand in for libraries the official code uses: the csv module reads few_shot_prompts.csv where the
official code calls pandas.read_csv with skiprows by record (the same records), and the few-shot prompt keeps as
many examples as concat_prompt keeps under max_tokens=2048 of tiktoken's cl100k_base (TOKEN_BUDGET_SHOTS, the
counts for the released csv) since tiktoken is not in the standard library.

Prints one JSON line per question {"task", "subject", "category", "index", "prompt", "gold"[, "points"]} and a
last line {"counts": {"questions": N, "subjects": {...}, "categories": {...}}}.

usage: agieval_gaokao_prompts.py BENCH_DIR agieval|gaokao [NUM_FEWSHOT]
"""
import ast
import csv
import json
import os
import sys

# ---- AGIEval: src/dataset_loader.py ----
english_qa_datasets = ["lsat-ar", "lsat-lr", "lsat-rc", "logiqa-en", "sat-math", "sat-en", "aqua-rat",
                       "sat-en-without-passage", "gaokao-english"]
chinese_qa_datasets = ["logiqa-zh", "jec-qa-kd", "jec-qa-ca", "gaokao-chinese", "gaokao-geography", "gaokao-history",
                       "gaokao-biology", "gaokao-chemistry", "gaokao-physics", "gaokao-mathqa"]
english_cloze_datasets = ["math"]
chinese_cloze_datasets = ["gaokao-mathcloze"]
TOKEN_BUDGET_SHOTS = {"lsat-rc": 2, "gaokao-chinese": 1}


def convert_zero_shot(line, dataset_name):
    passage = line["passage"] if line["passage"] is not None else ""
    if dataset_name in english_qa_datasets:
        option_string = "ABCDEFG"
        count = len(line["options"])
        if count == 1:
            count = 5
        return passage + "Q: " + line["question"] + " " + "Answer Choices: " + " ".join(line["options"]) + "\n" + \
            "A: Among A through {}, the answer is".format(option_string[count - 1])
    if dataset_name in chinese_qa_datasets:
        option_string = "ABCDEFG"
        count = len(line["options"])
        if count == 1:
            count = 4
        return passage + "问题：" + line["question"] + " " + "选项：" + " ".join(line["options"]) + "\n" + \
            "答案：从A到{}, 我们应选择".format(option_string[count - 1])
    if dataset_name in english_cloze_datasets:
        return passage + "Q: " + line["question"] + "\n" "A: The answer is"
    if dataset_name in chinese_cloze_datasets:
        return passage + "问题：" + line["question"] + "\n" "答案："
    raise ValueError(dataset_name)


def question_input(dataset_name, number, passage, question, options):
    if dataset_name in english_qa_datasets:
        return "Problem {}.   ".format(number) + passage + " " + question + "\n" \
            + "Choose from the following options:    " + " ".join(options) + "\n"
    if dataset_name in chinese_qa_datasets:
        return "问题 {}.   ".format(number) + passage + " " + question + "\n" \
            + "从以下选项中选择:    " + " ".join(options) + "\n"
    if dataset_name in english_cloze_datasets:
        return "Problem {}.   ".format(number) + question + "\n"
    return "问题 {}.   ".format(number) + question + "\n"


def read_records(prompt_path, rows):
    """pandas.read_csv(header=0, skiprows=lambda x: x not in rows, keep_default_na=False) as a dict of columns."""
    with open(prompt_path, encoding="utf-8", newline="") as f:
        records = [r for r in csv.reader(f) if r]
    header = records[0]
    kept = [records[i] for i in rows if i != 0 and i < len(records)]
    return {name: [r[k] if k < len(r) else "" for r in kept] for k, name in enumerate(header)}


def combine_prompt(prompt_path, dataset_name):
    skip_passage = False
    if dataset_name == "sat-en-without-passage":
        skip_passage = True
        dataset_name = "sat-en"
    contexts_col = read_records(prompt_path, [0, 1, 3, 5, 7, 9])[dataset_name]
    explanations_col = read_records(prompt_path, [0, 2, 4, 6, 8, 10])[dataset_name]
    contexts = [ast.literal_eval(line) for line in contexts_col if line]
    explanations = [exp for exp in explanations_col if exp]
    demos = []
    for idx, (con, _exp) in enumerate(zip(contexts, explanations)):
        passage = con["passage"] if con["passage"] is not None and not skip_passage else ""
        options = con["options"] if con["options"] is not None else ""
        label = con["label"] if con["label"] is not None else ""
        answer = con["answer"] if "answer" in con and con["answer"] is not None else ""
        q_in = question_input(dataset_name, idx + 1, passage, con["question"], options)
        if dataset_name in english_qa_datasets:
            q_out = "The answer is therefore {}".format(label)
        elif dataset_name in chinese_qa_datasets:
            q_out = "答案是 {}".format(label)
        elif dataset_name in english_cloze_datasets:
            q_out = "The answer is therefore {}".format(answer)
        else:
            q_out = "答案是 {}".format(answer)
        demos.append(q_in + q_out + "\n")
    return demos


def concat_prompt(demos, dataset_name, shots, end_of_example="<END>\n"):
    demostration_en = "Here are the answers for the problems in the exam.\n"
    demostration_zh = "以下是考试中各个问题的答案。\n"
    for i in range(shots):
        if dataset_name in english_qa_datasets or dataset_name in english_cloze_datasets:
            demostration_en = demostration_en + demos[i] + end_of_example
        else:
            demostration_zh = demostration_zh + demos[i] + end_of_example
    return demostration_en if len(demostration_en) > len(demostration_zh) else demostration_zh


def agieval(bench, k):
    folder = os.path.join(bench, "agieval")
    names = sorted(f[:-len(".jsonl")] for f in os.listdir(folder) if f.endswith(".jsonl"))
    out = []
    for name in names:
        english = name in english_qa_datasets or name in english_cloze_datasets
        prefix, shots = None, 0
        if k > 0:
            demos = combine_prompt(os.path.join(folder, "few_shot_prompts.csv"), name)
            shots = min(k, len(demos), TOKEN_BUDGET_SHOTS.get(name, k))
            prefix = concat_prompt(demos, name, shots)
        with open(os.path.join(folder, name + ".jsonl"), encoding="utf8") as fh:
            for index, text in enumerate(fh):
                line = json.loads(text)
                if prefix is None:
                    prompt = convert_zero_shot(line, name)
                else:
                    passage = line["passage"] if line["passage"] is not None else ""
                    options = line["options"] if line["options"] is not None else ""
                    prompt = prefix + question_input(name, shots + 1, passage, line["question"], options)
                gold = line["label"] if line["label"] else line.get("answer")
                gold = [] if gold is None else [gold] if isinstance(gold, str) else gold
                out.append({"task": "agieval", "subject": name, "category": "English" if english else "Chinese",
                            "index": index, "prompt": prompt, "gold": gold})
    return out


# ---- GAOKAO-Bench: Bench/bench_function.py, Bench/OBJ_score_evaluation.py ----
SCORE_DICT_SUBJECTS = {
    "English": ["2010-2013_English_MCQs", "2010-2022_English_Fill_in_Blanks", "2012-2022_English_Cloze_Test",
                "2010-2022_English_Reading_Comp"],
    "Math": ["2010-2022_Math_I_MCQs", "2010-2022_Math_II_MCQs"],
    "Chinese": ["2010-2022_Chinese_Modern_Lit", "2010-2022_Chinese_Lang_and_Usage_MCQs"],
    "Physics": ["2010-2022_Physics_MCQs"],
    "Chemistry": ["2010-2022_Chemistry_MCQs"],
    "Biology": ["2010-2022_Biology_MCQs"],
    "History": ["2010-2022_History_MCQs"],
    "Geography": ["2010-2022_Geography_MCQs"],
    "Politics": ["2010-2022_Political_Science_MCQs"],
}


def gaokao(bench):
    folder = os.path.join(bench, "gaokao")
    with open(os.path.join(folder, "Obj_Prompt.json"), "r", encoding="utf-8") as f:
        prompts = {e["keyword"]: e["prefix_prompt"] for e in json.load(f)["examples"]}
    names = sorted(f[:-len(".json")] for f in os.listdir(folder) if f.endswith(".json") and f != "Obj_Prompt.json")
    out = []
    for keyword in names:
        subject = next(s for s, kws in SCORE_DICT_SUBJECTS.items() if keyword in kws)
        with open(os.path.join(folder, keyword + ".json"), encoding="utf-8") as f:
            data = json.load(f)["example"]
        for i in range(len(data)):
            question = data[i]["question"].strip() + "\n"
            answer = data[i]["answer"] if "answer" in data[i] else data[i]["standard_answer"]
            out.append({"task": "gaokao", "subject": keyword, "category": subject, "index": i,
                        "prompt": prompts[keyword] + question, "gold": answer,
                        "points": len(answer) * data[i]["score"]})
    return out


def main():
    sys.stdout.reconfigure(encoding="utf-8")  # whatever the locale, the C++ test reads UTF-8
    bench, which = sys.argv[1], sys.argv[2]
    k = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    rows = agieval(bench, k) if which == "agieval" else gaokao(bench)
    counts = {"questions": len(rows), "subjects": {}, "categories": {}}
    for r in rows:
        counts["subjects"][r["subject"]] = counts["subjects"].get(r["subject"], 0) + 1
        counts["categories"][r["category"]] = counts["categories"].get(r["category"], 0) + 1
    for r in rows:
        print(json.dumps(r, ensure_ascii=False))
    print(json.dumps({"counts": counts}, ensure_ascii=False))


if __name__ == "__main__":
    main()
