#!/usr/bin/python3
"""The study's report (jobs/study, last stage): every cell's eval results.json and training metrics gathered into
the study's tables, as Markdown and CSV, with plots as PNG (Debian's python3-matplotlib), and one page a reader
opens first. Usage: tools/study-report.py WORK   (WORK/study.json lists the cells; writes WORK/report/)

  report.md                  the page: what was run, then every table and plot below
  perplexity.{md,csv}        per pretraining budget and vocabulary: token perplexity and bits per character of
                             the target language and of English (bits/char compares across tokenizers)
  knowledge.{md,csv}         accuracy of each knowledge task per cell (pretrained and instruction-tuned)
  responses.{md,csv}         response quality per SFT cell: ACC, F, INFO, LC, H, AVG (judged answers only), the
                             answers scored/unscored and the code-switching rate
  code_switching.{md,csv}    code-switching per SFT cell and category
  fertility.{md,csv}         tokens per character and per word, byte-fallback share, before and after extension
  loss.png, perplexity.png, accuracy.png
A table cell is "-" when the cell did not measure it; a results file that is missing or holds a non-finite
number where a number belongs is an error naming the file (exit 1), so a report never shows a number it does
not have.
"""
import csv
import io
import json
import math
import os
import sys


def die(msg):
    sys.exit("study-report: " + msg)


def load_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except OSError as e:
        die("%s: %s (has its stage run? jobs/study CONFIG --dry-run)" % (path, e.strerror))
    except ValueError as e:
        die("%s: not valid JSON: %s" % (path, e))


def num(d, key, path):
    v = d.get(key)
    if v is None:
        return None
    if not isinstance(v, (int, float)) or not math.isfinite(v):
        die("%s: %s is %r, not a finite number" % (path, key, v))
    return float(v)


def fmt(v, spec="%.3f"):
    return "-" if v is None else spec % v


def vocab_name(v):
    return "extended" if v else "original"


class Table:
    def __init__(self, name, title, header, note=""):
        self.name, self.title, self.header, self.note, self.rows = name, title, header, note, []

    def add(self, row):
        self.rows.append(row)

    def markdown(self):
        out = ["### " + self.title, ""]
        if self.note:
            out += [self.note, ""]
        out.append("| " + " | ".join(self.header) + " |")
        out.append("|" + "---|" * len(self.header))
        for r in self.rows:
            out.append("| " + " | ".join(str(c) for c in r) + " |")
        return "\n".join(out) + "\n"

    def write(self, out_dir):
        with open(os.path.join(out_dir, self.name + ".md"), "w", encoding="utf-8") as f:
            f.write(self.markdown())
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(self.header)
        for r in self.rows:
            w.writerow(["" if c == "-" else c for c in r])
        with open(os.path.join(out_dir, self.name + ".csv"), "w", encoding="utf-8") as f:
            f.write(buf.getvalue())


KNOWLEDGE = ("ceval", "mmlu", "agieval", "gaokao")
CRITERIA = ("ACC", "F", "INFO", "LC", "H", "AVG")


def budget_label(c):
    return "%d" % c["budget"] + ("" if c["steps"] in (None, 0) or c["budget"] == c["steps"] else " (%d steps)" % c["steps"])


def main():
    if len(sys.argv) == 2 and sys.argv[1] in ("-h", "--help"):
        print(__doc__.strip())
        return
    if len(sys.argv) != 2:
        die("usage: study-report.py WORK (a jobs/study work directory; --help says what it writes)")
    work = sys.argv[1]
    study = load_json(os.path.join(work, "study.json"))
    target = study["target"]
    cells = study["cells"]
    out = os.path.join(work, "report")
    os.makedirs(out, exist_ok=True)
    for c in cells:
        path = os.path.join(c["eval"], "results.json")
        c["results_path"] = path
        c["results"] = load_json(path)["results"]

    pt = [c for c in cells if c["sft"] == 0]
    sft = [c for c in cells if c["sft"] > 0]
    vocabs = sorted({c["vocab"] for c in cells})
    seeds = sorted({c["seed"] for c in pt if c["seed"] is not None}) or [None]

    # Perplexity per budget: one row per (budget, seed), the vocabularies side by side.
    ppl = {}
    for c in pt:
        r, p = c["results"], c["results_path"]
        for lang in (target, "en"):
            d = r.get("ppl_" + lang)
            if d is None:
                continue
            ppl[(c["vocab"], c["budget"], c["seed"], lang)] = (num(d, "token_perplexity,none", p),
                                                                num(d, "bits_per_char,none", p))
    header = ["budget", "seed"]
    for v in vocabs:
        for lang in (target, "en"):
            header += ["%s ppl (%s)" % (lang, vocab_name(v)), "%s bits/char (%s)" % (lang, vocab_name(v))]
    t_ppl = Table("perplexity", "Perplexity per pretraining budget",
                  header, "Token perplexity on held-out text, each model with its own tokenizer (so only bits per "
                          "character compare across the original and the extended vocabulary); budget as the study's "
                          "config gives it (%s), 0 = no pretraining." % study.get("unit", "steps"))
    budgets = sorted({c["budget"] for c in pt})
    for b in budgets:
        for s in ([None] if b == 0 else seeds):
            row = [b, "-" if s is None else s]
            for v in vocabs:
                for lang in (target, "en"):
                    tp, bpc = ppl.get((v, b, s, lang), (None, None))
                    row += [fmt(tp, "%.2f"), fmt(bpc, "%.4f")]
            t_ppl.add(row)

    tasks = [t for t in KNOWLEDGE if any(t in c["results"] for c in cells)]
    t_know = Table("knowledge", "Knowledge accuracy per cell",
                   ["cell", "vocabulary", "budget", "SFT examples", "seed"] + ["%s acc" % t for t in tasks]
                   + ["%s n" % t for t in tasks],
                   "Accuracy (share of questions right) of each knowledge task in the cell's results.json.")
    for c in cells:
        accs, ns = [], []
        for t in tasks:
            d = c["results"].get(t, {})
            accs.append(fmt(num(d, "acc,none", c["results_path"]), "%.4f"))
            ns.append(d.get("samples", "-"))
        t_know.add([c["id"], vocab_name(c["vocab"]), budget_label(c), c["sft"] or "-", c["seed"] or "-"] + accs + ns)

    t_resp = Table("responses", "Response quality per SFT cell",
                   ["cell", "vocabulary", "budget", "SFT examples", "seed"] + list(CRITERIA)
                   + ["answers", "scored", "unscored", "code-switching %"],
                   "Judge scores 0-3 (ACC accuracy, F fluency, INFO informativeness, LC logical coherence, H "
                   "harmlessness; AVG their mean) over scored answers; '-' where no judge was configured.")
    t_cs = Table("code_switching", "Code-switching per SFT cell and category",
                 ["cell", "category", "answers", "switched", "rate %"],
                 "An answer code-switches when it holds a run of letters of a script other than the target "
                 "language's and the allowed ones (eval --cs-allow, --cs-min-run).")
    for c in sft:
        d = c["results"].get("responses")
        if d is None:
            continue
        p = c["results_path"]
        scores = [fmt(num(d, k + ",none", p), "%.2f") for k in CRITERIA]
        rate = num(d, "code_switch_rate,none", p)
        t_resp.add([c["id"], vocab_name(c["vocab"]), budget_label(c), c["sft"], c["seed"]] + scores
                   + [d.get("samples", "-"), d.get("scored", "-"), d.get("unscored", "-"),
                      fmt(None if rate is None else 100 * rate, "%.1f")])
        for e in sorted(d.get("code_switching", {}).get("categories", []), key=lambda e: e["category"]):
            t_cs.add([c["id"], e["category"], e["answers"], e["switched"], fmt(100 * e["rate"], "%.1f")])

    t_fert = Table("fertility", "Tokenizer fertility before and after extension",
                   ["input", "tokenizer", "characters", "tokens", "tokens/char", "tokens/word", "byte-fallback %"],
                   "From `polyllama tokenizer stats` on the held-out texts ([target] stats_args says how documents "
                   "are delimited); \"all inputs\" is their sum.")
    fpath = os.path.join(work, "fertility.json")
    if os.path.exists(fpath):
        f = load_json(fpath)
        names = [os.path.basename(t["path"]) for t in f["tokenizers"]]
        for inp in f["inputs"]:
            tot = inp["total"]
            for name, tk in zip(names, tot["tokenizers"]):
                t_fert.add([os.path.basename(inp["path"]), name, tot["chars"], tk["tokens"],
                            fmt(tk["tokens_per_char"], "%.3f"), fmt(tk.get("tokens_per_word"), "%.3f"),
                            fmt(100 * tk["byte_fallback_share"], "%.1f")])

    tables = [t_ppl, t_know, t_resp, t_cs, t_fert]
    for t in tables:
        t.write(out)
    plots = make_plots(work, out, cells, pt, target, vocabs, tasks)
    trend = trend_lines(pt, ppl, target, vocabs, seeds)

    lines = ["# Study report: %s" % os.path.basename(os.path.normpath(work)), "",
             "Config: `%s`. Target language: %s. %d cells (%d pretrained checkpoints, %d instruction-tuned); "
             "each cell's own results are in `%s/eval/CELL/` (results.json, results.md, samples)." % (
                 study.get("config", "?"), target, len(cells), len(pt), len(sft), work), ""]
    lines += ["## Settings", ""]
    for v in vocabs:
        steps = sorted({(c["budget"], c["steps"]) for c in pt if c["vocab"] == v})
        lines.append("- %s vocabulary: budgets (%s) -> pretraining steps: %s" % (
            vocab_name(v), study.get("unit", "steps"), ", ".join("%d -> %s" % (b, s) for b, s in steps)))
    lines += ["- each vocabulary has one pretraining run per seed, as long as the largest budget; a smaller budget is "
              "one of its checkpoints, so it sits mid-schedule (its learning rate not yet decayed) where a separate "
              "run of that length would have finished its schedule", ""]
    lines += ["## What the grid shows", ""] + trend + [""]
    for png, caption in plots:
        lines += ["![%s](%s)" % (caption, png), "", "*%s*" % caption, ""]
    lines += ["## Tables", "", "Each table is also a CSV file beside this page; code-switching per cell and category "
              "(%d rows) is in [code_switching.md](code_switching.md) and code_switching.csv." % len(t_cs.rows), ""]
    for t in tables:
        if t is not t_cs:
            lines.append(t.markdown())
    with open(os.path.join(out, "report.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines))
    print("study-report: %s/report.md (%d cells; tables %s; plots %s)" % (
        out, len(cells), ", ".join(t.name for t in tables), ", ".join(p for p, _ in plots)))


def trend_lines(pt, ppl, target, vocabs, seeds):
    """Whether the target's perplexity falls and English's rises with the budget, in bits per character."""
    out = []
    for v in vocabs:
        for s in seeds:
            pts = sorted((c["budget"], c) for c in pt if c["vocab"] == v and (c["budget"] == 0 or c["seed"] == s))
            for lang, want in ((target, "falls"), ("en", "rises")):
                vals = [(b, ppl.get((v, b, None if b == 0 else s, lang), (None, None))[1]) for b, _ in pts]
                vals = [(b, x) for b, x in vals if x is not None]
                if len(vals) < 2:
                    continue
                ys = [x for _, x in vals]
                mono = all(b < a for a, b in zip(ys, ys[1:])) if want == "falls" else all(b > a for a, b in zip(ys, ys[1:]))
                out.append("- %s vocabulary%s: %s bits/char %s as pretraining grows: %s (%s)" % (
                    vocab_name(v), "" if len(seeds) < 2 else ", seed %s" % s, lang,
                    ("falls" if ys[-1] < ys[0] else "rises"),
                    " -> ".join("%.4f" % y for y in ys), "monotonic, as the study found" if mono else
                    "the study's direction: %s" % ("yes" if (ys[-1] < ys[0]) == (want == "falls") else "no")))
    return out or ["- fewer than two pretraining budgets: no trend to show"]


def read_metrics(path):
    steps, losses = [], []
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    m = json.loads(line)
                except ValueError:
                    continue
                if isinstance(m.get("loss"), (int, float)) and math.isfinite(m["loss"]):
                    steps.append(m["step"])
                    losses.append(m["loss"])
    except OSError:
        pass
    return steps, losses


def make_plots(work, out, cells, pt, target, vocabs, tasks):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    plots = []

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    runs = sorted({c["run"] for c in pt if c.get("run")})
    for r in runs:
        s, l = read_metrics(os.path.join(r, "metrics.jsonl"))
        if s:
            axes[0].plot(s, l, label=os.path.basename(r), linewidth=1)
    for b in sorted({c["budget"] for c in pt if c["budget"]}):
        steps = {c["steps"] for c in pt if c["budget"] == b}
        for st in steps:
            axes[0].axvline(st, color="grey", linewidth=0.5, linestyle=":")
    axes[0].set_title("continued pretraining (dotted: budget checkpoints)")
    axes[0].set_xlabel("step")
    axes[0].set_ylabel("training loss (nats/token)")
    for c in cells:
        if c["sft"]:
            s, l = read_metrics(os.path.join(c["run"], "metrics.jsonl"))
            if s:
                axes[1].plot(s, l, linewidth=0.8, label=c["id"])
    axes[1].set_title("instruction tuning")
    axes[1].set_xlabel("step")
    for ax in axes:
        if ax.lines:
            ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "loss.png"), dpi=100)
    plt.close(fig)
    plots.append(("loss.png", "Training loss of each pretraining run and SFT run"))

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, lang in zip(axes, (target, "en")):
        for v in vocabs:
            seeds = sorted({c["seed"] for c in pt if c["vocab"] == v and c["seed"] is not None}) or [None]
            for s in seeds:
                pts = sorted((c["budget"], c) for c in pt if c["vocab"] == v and (c["budget"] == 0 or c["seed"] == s))
                xs, ys = [], []
                for b, c in pts:
                    d = c["results"].get("ppl_" + lang)
                    if d and isinstance(d.get("bits_per_char,none"), (int, float)):
                        xs.append(b)
                        ys.append(d["bits_per_char,none"])
                if xs:
                    ax.plot(xs, ys, marker="o", label="%s vocabulary%s" % (vocab_name(v), "" if s is None else
                                                                          ", seed %s" % s))
        bs = sorted({c["budget"] for c in pt})
        ax.set_xscale("symlog", linthresh=max(1, min([b for b in bs if b] or [1])))
        ax.set_xticks(bs)
        ax.set_xticklabels([str(b) for b in bs])
        ax.set_title("%s held-out text" % lang)
        ax.set_xlabel("pretraining budget (0 = none)")
        ax.set_ylabel("bits per character")
        if ax.lines:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "perplexity.png"), dpi=100)
    plt.close(fig)
    plots.append(("perplexity.png", "Bits per character of held-out %s and English text against the pretraining "
                                    "budget (lower is better; %s should fall, English rise)" % (target, target)))

    if tasks:
        t = tasks[0]
        fig, ax = plt.subplots(figsize=(max(6, 0.45 * len(cells)), 4))
        labels = [c["id"] for c in cells if t in c["results"]]
        vals = [c["results"][t]["acc,none"] for c in cells if t in c["results"]]
        colors = ["tab:orange" if c["vocab"] else "tab:blue" for c in cells if t in c["results"]]
        ax.bar(range(len(vals)), vals, color=colors)
        ax.set_xticks(range(len(vals)))
        ax.set_xticklabels(labels, rotation=60, ha="right", fontsize=7)
        ax.set_ylabel("%s accuracy" % t)
        ax.set_ylim(0, 1)
        ax.axhline(0.25, color="grey", linestyle="--", linewidth=0.8)
        ax.set_title("%s accuracy per cell (blue: original vocabulary, orange: extended; dashed: 4-choice chance)" % t,
                     fontsize=9)
        fig.tight_layout()
        fig.savefig(os.path.join(out, "accuracy.png"), dpi=100)
        plt.close(fig)
        plots.append(("accuracy.png", "%s accuracy of every cell" % t))
    return plots


if __name__ == "__main__":
    main()
