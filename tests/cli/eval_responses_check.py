#!/usr/bin/env python3
"""Data and checks of tests/cli/test_eval_responses.sh (standard library only). Every figure is recomputed here from
OUT/responses.jsonl, independently of polyllama's own aggregation.

  instructions FILE        writes a small instruction file: 7 records, 3 categories, with and without input,
                           reference and language, an integer id
  generate RESP GEN        each answer of RESP (responses.jsonl) equals generate --chat's completion of the same
                           record in GEN (its JSONL output): text, finish_reason, prompt and generated token counts
  same A B                 two responses.jsonl are identical but for timing (seconds, judge.latency_s)
  means OUT                results.json's per-category and overall means and standard errors of ACC, F, INFO, LC, H
                           and AVG, and the scored/unscored counts, against a count over OUT/responses.jsonl; the
                           results.md table's rows likewise
  unjudged OUT             no judge: scores null, "judge" null, means null, and results.md says so
  unscored OUT             every answer judged and unscored after the repair request, means null (never 0)
  cached OUT REF           --judge-only with REF's cache: every answer from the cache, the same scores as REF
  code-switch OUT [none]   the code-switching counts and rates per language and (language, category) against a count
                           over responses.jsonl; with none (--cs-allow none), an all-ASCII answer is switched exactly
                           when it holds two Latin letters in a row, and every run is a substring of its answer
  merged OUT               --judge-only into a directory with other results: the ppl entry and the Perplexity section
                           stay, the responses entries and section are replaced (one of each), judge_only recorded
"""
import json
import math
import re
import sys

CRIT = ["ACC", "F", "INFO", "LC", "H"]


def records(out):
    return [json.loads(line) for line in open(out + "/responses.jsonl", encoding="utf-8")]


def results(out):
    return json.load(open(out + "/results.json", encoding="utf-8"))


def slug(s):
    return "".join("_" if c in " /" else c.lower() for c in s)


def mean_se(xs):
    if not xs:
        return None, None
    m = sum(xs) / len(xs)
    if len(xs) < 2:
        return m, None
    var = sum((x - m) ** 2 for x in xs) / (len(xs) - 1)
    return m, math.sqrt(var) / math.sqrt(len(xs))


def close(a, b):
    if a is None or b is None:
        return a is None and b is None
    return abs(a - b) <= 1e-12 * max(1.0, abs(b))


def instructions(path):
    recs = [
        {"id": "t-1", "category": "qa", "instruction": "Name the river by the mill.", "reference": "The weir.",
         "language": "en"},
        {"id": "t-2", "category": "qa", "instruction": "How many sacks did the mill grind?"},
        {"id": 3, "category": "summary", "instruction": "Summarize the ledger.",
         "input": "Line 1 of the ledger: the mill ground 7 sacks and the weir held."},
        {"id": "t-4", "category": "summary", "instruction": "总结这段话。", "input": "A heron stood in the shallows.",
         "language": "zh"},
        {"id": "t-5", "category": "translation", "instruction": "Translate into Chinese.",
         "input": "The heron counted his coins.", "reference": "苍鹭数着他的硬币。"},
        {"id": "t-6", "category": "translation", "instruction": "Переведите на китайский: the mill.",
         "language": "zh"},
        {"id": "t-7", "category": "qa", "instruction": "What held?", "input": "", "reference": None},
    ]
    with open(path, "w", encoding="utf-8") as f:
        for r in recs:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
        f.write("\n")  # a blank line is skipped


def generate(resp, gen):
    rs = records_file(resp)
    gs = [json.loads(line) for line in open(gen, encoding="utf-8")]
    assert len(rs) == len(gs), (len(rs), len(gs))
    for r, g in zip(rs, gs):
        assert r["answer"] == g["completion"], (r["id"], r["answer"], g["completion"])
        assert r["finish_reason"] == g["finish_reason"], r["id"]
        assert r["generated_tokens"] == g["completion_tokens"], r["id"]
        assert r["prompt_tokens"] == g["prompt_tokens"], r["id"]
        assert str(r["id"]) == str(g["id"]), (r["id"], g["id"])
    print(f"{len(rs)} answers equal generate --chat's")


def records_file(path):
    return [json.loads(line) for line in open(path, encoding="utf-8")]


def untimed(path):
    out = []
    for r in records_file(path):
        r.pop("seconds")
        if r.get("judge"):
            r["judge"].pop("latency_s")
        out.append(json.dumps(r, sort_keys=True, ensure_ascii=False))
    return out


def same(a, b):
    ra, rb = untimed(a), untimed(b)
    assert ra == rb, next((x, y) for x, y in zip(ra, rb) if x != y) if len(ra) == len(rb) else (len(ra), len(rb))
    print(f"{len(ra)} records identical")


def expected(recs):
    """{key: (alias, metrics)} for responses and responses_<category>, as recomputed here."""
    cats = []
    for r in recs:
        if r["category"] not in cats:
            cats.append(r["category"])
    groups = [("responses", recs)] + [("responses_" + slug(c), [r for r in recs if r["category"] == c]) for c in cats]
    out = {}
    for key, rs in groups:
        scored = [r for r in rs if r["scores"]["ACC"] is not None]
        m = {"samples": len(rs), "scored": len(scored), "unscored": len(rs) - len(scored)}
        for c in CRIT:
            m[c] = mean_se([r["scores"][c] for r in scored])
        m["AVG"] = mean_se([sum(r["scores"][c] for c in CRIT) / 5 for r in scored])
        sw = sum(1 for r in rs if r["code_switched"])
        m["cs"] = sw / len(rs)
        out[key] = m
    return cats, out


def cell(ms):
    m, se = ms
    if m is None:
        return "-"
    return "%.2f" % m if se is None else "%.2f ± %.2f" % (m, se)


def means(out):
    recs = records(out)
    res = results(out)["results"]
    cats, exp = expected(recs)
    n_scored = exp["responses"]["scored"]
    assert 0 < n_scored < len(recs), f"want both scored and unscored answers, got {n_scored} of {len(recs)}"
    for key, m in exp.items():
        got = res[key]
        for k in ("samples", "scored", "unscored"):
            assert got[k] == m[k], (key, k, got[k], m[k])
        for c in CRIT + ["AVG"]:
            assert close(got[c + ",none"], m[c][0]), (key, c, got[c + ",none"], m[c][0])
            assert close(got[c + "_stderr,none"], m[c][1]), (key, c, got[c + "_stderr,none"], m[c][1])
        assert close(got["code_switch_rate,none"], m["cs"]), key
    for r in recs:  # each answer's AVG, and an unscored answer has every score null and says why
        s = [r["scores"][c] for c in CRIT]
        if s[0] is None:
            assert all(x is None for x in s) and r["AVG"] is None and r["judge"]["error"], r
        else:
            assert all(x in (0, 1, 2, 3) for x in s) and close(r["AVG"], sum(s) / 5), r
            assert r["judge"]["reason"] == "varied" and r["judge"]["model"] == "judge-test", r["judge"]
    # results.md: the study's table, a row per category and the overall row
    md = open(out + "/results.md", encoding="utf-8").read()
    rows = []
    for key, name in [("responses_" + slug(c), c) for c in cats] + [("responses", "**overall**")]:
        m = exp[key]
        rows.append("| %s | %d | %d | %s | %s | %.1f |" % (name, m["samples"], m["scored"],
                                                         " | ".join(cell(m[c]) for c in CRIT), cell(m["AVG"]),
                                                         100 * m["cs"]))
    table = "| category | answers | scored | ACC | F | INFO | LC | H | AVG | code-switched % |\n" \
            "|---|---|---|---|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n"
    assert table in md, table + "\n--- not in ---\n" + md
    print(f"{len(recs)} answers, {n_scored} scored, {len(cats)} categories: means, standard errors and the table agree")


def unjudged(out):
    recs = records(out)
    assert all(r["judge"] is None and all(r["scores"][c] is None for c in CRIT) and r["AVG"] is None for r in recs)
    res = results(out)
    m = res["results"]["responses"]
    assert m["judged"] is False and m["scored"] == 0 and m["unscored"] == len(recs), m
    assert all(m[c + ",none"] is None for c in CRIT + ["AVG"]), m
    assert res["configs"]["responses"]["judge"] is None
    md = open(out + "/results.md", encoding="utf-8").read()
    assert "Not judged" in md and "| **overall** | %d | 0 | - | - | - | - | - | - |" % len(recs) in md, md
    print("no judge: scores absent, table says so")


def unscored(out):
    recs = records(out)
    for r in recs:
        j = r["judge"]
        assert j is not None and j["scored"] is False and j["error"] and j["requests"] == 2 and j["repaired"] is False, j
        assert all(r["scores"][c] is None for c in CRIT) and r["AVG"] is None, r
    res = results(out)
    for key, m in res["results"].items():
        if key == "responses" or key.startswith("responses_"):
            assert m["scored"] == 0 and m["unscored"] == m["samples"] and m["judged"] is True, (key, m)
            assert all(m[c + ",none"] is None and m[c + "_stderr,none"] is None for c in CRIT + ["AVG"]), (key, m)
    j = res["configs"]["responses"]["judge"]
    assert j["unscored"] == len(recs) and j["repairs"] == len(recs), j
    md = open(out + "/results.md", encoding="utf-8").read()
    assert "| **overall** | %d | 0 | - | - | - | - | - | - |" % len(recs) in md, md
    print(f"{len(recs)} answers unscored after the repair request; means null")


def cached(out, ref):
    a, b = records(out), records(ref)
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x["judge"]["cached"] is True and x["judge"]["requests"] == 0, x["judge"]
        assert x["scores"] == y["scores"] and x["answer"] == y["answer"] and x["judge"]["reply"] == y["judge"]["reply"]
    j = results(out)["configs"]["responses"]["judge"]
    assert j["requests"] == 0 and j["from_cache"] == len(a), j
    assert results(out)["results"]["responses"]["AVG,none"] == results(ref)["results"]["responses"]["AVG,none"]
    print(f"{len(a)} answers from the cache, scores as before")


def code_switch(out, allow_none):
    recs = records(out)
    cs = results(out)["results"]["responses"]["code_switching"]
    langs, groups = {}, {}
    for r in recs:
        for key, d in ((r["language"], langs), ((r["language"], r["category"]), groups)):
            a, s = d.get(key, (0, 0))
            d[key] = (a + 1, s + (1 if r["code_switched"] else 0))
        assert r["code_switched"] == bool(r["code_switch_runs"]), r
        for script, text in r["code_switch_runs"]:
            assert text in r["answer"] and len(text) >= 2, (r["id"], script, text)
            if allow_none and script == "Latin":
                assert re.fullmatch(r"[A-Za-z\u00c0-\u024f\u0300-\u036f]+", text), text
        if allow_none and r["answer"].isascii():
            assert r["code_switched"] == bool(re.search(r"[A-Za-z]{2}", r["answer"])), (r["id"], r["answer"])
    got_l = {g["language"]: (g["answers"], g["switched"]) for g in cs["languages"]}
    got_g = {(g["language"], g["category"]): (g["answers"], g["switched"]) for g in cs["categories"]}
    assert got_l == langs, (got_l, langs)
    assert got_g == groups, (got_g, groups)
    for g in cs["languages"] + cs["categories"]:
        assert close(g["rate"], g["switched"] / g["answers"]), g
        ids = [r["id"] for r in recs if r["code_switched"] and r["language"] == g["language"] and
               g["category"] in ("all", r["category"])]
        assert [e["id"] for e in g["examples"]] == [str(i) for i in ids[:3]], (g, ids)
    switched = sum(s for _, s in langs.values())
    if allow_none:
        assert 0 < switched, "want switched answers with --cs-allow none"
    print(f"code-switching: {switched} of {len(recs)} answers switched; every rate and example agrees")


def merged(out):
    res = results(out)
    assert "ppl_xx" in res["results"] and "judge_only" in res["config"], list(res["results"])
    assert res["configs"]["responses"]["judge"]["model"] == "judge-test"
    assert res["results"]["responses"]["scored"] > 0
    md = open(out + "/results.md", encoding="utf-8").read()
    assert md.count("## responses ") == 1 and md.count("## Perplexity") == 1 and "Not judged" not in md, md
    assert md.startswith("# Evaluation results\n"), md[:80]
    print("judge-only kept the other results and replaced the responses'")


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "code-switch":
        code_switch(args[0], len(args) > 1 and args[1] == "none")
    else:
        {"instructions": instructions, "generate": generate, "same": same, "means": means, "unjudged": unjudged,
         "unscored": unscored, "cached": cached, "merged": merged}[cmd](*args)
