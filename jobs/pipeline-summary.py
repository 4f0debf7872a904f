#!/usr/bin/env python3
"""The main job's summary (jobs/pipeline.sh, last stage): one table from the three evals' results.json files,
printed and written to RUN/results.md with the stage times, the settings each eval recorded and links to the
evals' own reports. Usage: jobs/pipeline-summary.py RUN [SECONDS]

Perplexity is compared in bits per character: the base model and the transferred one use different tokenizers
(the extended one spends fewer tokens on Chinese), so their per-token perplexities do not compare; token
perplexity is shown beside it for each model's own tokenizer. Exits 1 naming the file when a result is missing or
not a finite number, so the job never reports a summary it does not have.
"""
import json
import math
import os
import sys

MODELS = [("base", "base: English pretraining (before)"),
          ("cpt", "after resize-vocab + Chinese pretraining"),
          ("sft", "after instruction tuning")]


def load(run, name):
    path = os.path.join(run, "eval", name, "results.json")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)["results"], path
    except (OSError, ValueError, KeyError) as e:
        sys.exit("pipeline-summary: %s: %s (rerun jobs/pipeline.sh to redo that eval)" % (path, e))


def number(results, path, task, key):
    v = results.get(task, {}).get(key)
    if not isinstance(v, (int, float)) or not math.isfinite(v):
        sys.exit("pipeline-summary: %s: results.%s[\"%s\"] is %r, not a finite number" % (path, task, key, v))
    return float(v)


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: pipeline-summary.py RUN [SECONDS]")
    run = sys.argv[1]
    rows, summary = [], {}
    for name, label in MODELS:
        res, path = load(run, name)
        row = {"model": name, "label": label}
        for lang in ("zh", "en"):
            row["bpc_" + lang] = number(res, path, "ppl_" + lang, "bits_per_char,none")
            row["tppl_" + lang] = number(res, path, "ppl_" + lang, "token_perplexity,none")
        row["mc_acc"] = number(res, path, "ceval", "acc,none")
        row["mc_n"] = int(number(res, path, "ceval_tang_poetry", "samples")) \
            if "samples" in res.get("ceval_tang_poetry", {}) else None
        if name == "sft":
            row["cs_rate"] = number(res, path, "responses", "code_switch_rate,none")
            row["answers"] = int(number(res, path, "responses", "samples"))
            row["judged"] = bool(res["responses"].get("judged"))
            if row["judged"] and isinstance(res["responses"].get("AVG,none"), (int, float)):
                row["judge_avg"] = float(res["responses"]["AVG,none"])
        rows.append(row)
        summary[name] = row

    times = []
    tpath = os.path.join(run, "timings.tsv")
    if os.path.exists(tpath):
        with open(tpath, encoding="utf-8") as f:
            times = [line.rstrip("\n").split("\t") for line in f if "\t" in line]
    total = sys.argv[2] if len(sys.argv) > 2 else None

    lines = ["| model | zh bits/char | en bits/char | zh token ppl | en token ppl | questions acc (chance 25 %) |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append("| %s | %.3f | %.3f | %.1f | %.1f | %.1f %% |" % (
            r["label"], r["bpc_zh"], r["bpc_en"], r["tppl_zh"], r["tppl_en"], 100 * r["mc_acc"]))
    s = summary["sft"]
    cs = ("code-switching: %.1f %% of %d answers to share/responses/zh_instructions.jsonl hold a run of a script "
          "other than Han (eval --cs-allow as set by CS_ALLOW)" % (100 * s["cs_rate"], s["answers"]))
    judge = ("judge's mean score (0-3): %.2f" % s["judge_avg"]) if "judge_avg" in s else \
        "answers not judged (no JUDGE_URL): only code-switching is measured"
    b, c = summary["base"], summary["cpt"]
    change = ("Chinese bits/char %.3f -> %.3f after the transfer (%+.1f %%), English %.3f -> %.3f (%+.1f %%)" % (
        b["bpc_zh"], c["bpc_zh"], 100 * (c["bpc_zh"] / b["bpc_zh"] - 1),
        b["bpc_en"], c["bpc_en"], 100 * (c["bpc_en"] / b["bpc_en"] - 1)))

    md = ["# polyllama main job: results", "",
          "English base model -> extended tokenizer, resize-vocab, Chinese pretraining -> instruction tuning "
          "(jobs/pipeline.sh). Perplexity on held-out text (%s); questions: share/main/ceval "
          "(C-Eval's format, tang_poetry val); token perplexities use each model's own tokenizer." % (
              os.path.join(run, "corpus", "{en,zh}_heldout.txt")), ""] + lines + [
          "", "- " + change, "- " + cs, "- " + judge, ""]
    md += ["Per-eval reports: " + ", ".join("[%s](eval/%s/results.md)" % (n, n) for n, _ in MODELS) +
           "; answers: eval/sft/responses.jsonl; question samples: eval/*/samples_ceval.jsonl.", ""]
    if times:
        md += ["Stage wall times of this run (s; a skipped stage ~0): " +
               ", ".join("%s %s" % (k, v) for k, v in times) + (" ; total %s s" % total if total else ""), ""]
    with open(os.path.join(run, "results.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(md))
    with open(os.path.join(run, "summary.json"), "w", encoding="utf-8") as f:
        json.dump({"models": rows, "timings": {k: int(v) for k, v in times}, "total_s": total}, f, indent=1)
        f.write("\n")

    print("\n".join(lines))
    print(change)
    print(cs)
    print(judge)
    if total:
        print("total %s s (%d:%02d)" % (total, int(total) // 60, int(total) % 60))
    print("report: %s (and summary.json; each eval's own results.md under %s)" % (
        os.path.abspath(os.path.join(run, "results.md")), os.path.abspath(os.path.join(run, "eval"))))


if __name__ == "__main__":
    main()
