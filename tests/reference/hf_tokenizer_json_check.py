#!/usr/bin/env python3
"""Checks an exported tokenizer.json against SentencePiece, line by line.

Loads FOLDER/tokenizer.json with the Hugging Face `tokenizers` library (Tokenizer.from_file, as transformers,
vLLM and TGI do) and compares, on every line of the text files:
  - its ids (no special tokens) with SentencePiece's, from Debian's `spm_encode --output_format=id` over
    FOLDER/tokenizer.model (the reference; a different program from polyllama's);
  - its decoding of those ids with the line itself (a round trip);
and, on the first non-empty line, that add_special_tokens puts BOS in front as LLaMA does.
Prints one summary line per run: lines, tokens, id mismatches, decode mismatches; exits 1 on any mismatch,
77 (skip) when `tokenizers` is not importable.

Usage: hf_tokenizer_json_check.py FOLDER TEXT... [--label NAME] [--model BPE|Unigram] [--spm-encode PATH]

"""
import argparse
import json
import subprocess
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("folder", help="a folder written by `polyllama convert --to hf`")
    ap.add_argument("texts", nargs="+", help="UTF-8 text files, compared line by line")
    ap.add_argument("--label", default="tokenizer.json")
    ap.add_argument("--model", choices=["BPE", "Unigram"], help="the model type tokenizer.json must hold")
    ap.add_argument("--spm-encode", default="spm_encode")
    a = ap.parse_args()
    try:
        from tokenizers import Tokenizer
    except ImportError:
        print("skip: the Python package `tokenizers` is not importable (pip install tokenizers)")
        return 77

    path = f"{a.folder}/tokenizer.json"
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    tok = Tokenizer.from_file(path)
    problems = []
    if a.model and doc["model"]["type"] != a.model:
        problems.append(f"model type {doc['model']['type']}, expected {a.model}")
    if not doc["model"].get("byte_fallback"):
        problems.append("byte_fallback is not on")
    with open(f"{a.folder}/tokenizer_config.json", encoding="utf-8") as f:
        cfg = json.load(f)
    bos = tok.token_to_id(cfg["bos_token"])
    if bos is None:
        problems.append(f"bos_token {cfg['bos_token']!r} is not in tokenizer.json")
    for p in problems:
        print(f"FAIL {a.label}: {p}")

    lines = []
    for t in a.texts:
        with open(t, encoding="utf-8", newline="\n") as f:
            lines += f.read().split("\n")[:-1]  # every line, empty ones included; no trailing newline part
    text = "".join(line + "\n" for line in lines)
    sp = subprocess.run([a.spm_encode, "--model", f"{a.folder}/tokenizer.model", "--output_format=id"],
                        input=text.encode("utf-8"), capture_output=True, check=True).stdout.decode("utf-8")
    sp_ids = [[int(x) for x in row.split()] for row in sp.split("\n")[:-1]]
    if len(sp_ids) != len(lines):
        print(f"FAIL {a.label}: spm_encode gave {len(sp_ids)} lines for {len(lines)}")
        return 1

    encodings = tok.encode_batch(lines, add_special_tokens=False)
    id_bad = decode_bad = tokens = 0
    for line, ref, enc in zip(lines, sp_ids, encodings):
        tokens += len(ref)
        if enc.ids != ref:
            id_bad += 1
            if id_bad <= 5:
                print(f"ids differ on {line!r}:\n  spm_encode {ref}\n  tokenizers {enc.ids} {enc.tokens}")
        back = tok.decode(enc.ids, skip_special_tokens=True)
        if back != line:
            decode_bad += 1
            if decode_bad <= 5:
                print(f"decode differs: {line!r} -> {back!r}")
    first = next((i for i, line in enumerate(lines) if line), None)
    if first is not None and bos is not None:
        with_bos = tok.encode(lines[first]).ids
        if with_bos != [bos] + sp_ids[first]:
            problems.append(f"encode with special tokens gave {with_bos[:8]}..., expected BOS {bos} first")
            print(f"FAIL {a.label}: {problems[-1]}")
    print(f"{a.label}: {len(lines)} lines, {tokens} tokens, {len(doc['model']['vocab'])} pieces "
          f"({doc['model']['type']}, {len(doc['model'].get('merges', []))} merges): "
          f"{id_bad} id mismatches, {decode_bad} decode mismatches")
    return 1 if id_bad or decode_bad or problems else 0


if __name__ == "__main__":
    sys.exit(main())
