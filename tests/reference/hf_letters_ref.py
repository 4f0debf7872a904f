#!/usr/bin/python3
"""Reference side of `polyllama eval`'s letter scoring: the log-softmax over the whole vocabulary of the token
after each prompt, computed with the PyTorch reference of Hugging Face's LLaMA.

    /usr/bin/python3 tests/reference/hf_letters_ref.py --out tests/fixtures/hf_tiny/reference_letters.json
    /usr/bin/python3 tests/reference/hf_letters_ref.py --out /tmp/new.json \
        --compare tests/fixtures/hf_tiny/reference_letters.json

Each prompt goes whole through tests/reference/llama_torch_ref.py's forward in float64 on the fixture's bf16
weights (widened exactly), with no KV cache and no batching, so it shares nothing with polyllama's engine, which
computes a group's common prefix once, copies its KV cache to a batch of rows and appends each prompt's suffix
right-padded. The log-probabilities are read at READ: the fixture tokenizer's pieces "A", "B", "C", "D" and a
few others (its "▁", BOS, EOS, the last id). The first four prompts share a 32-token prefix (a "subject"), the
others do not; every prompt fits the fixture's max_position_embeddings (64).

The prompts are token ids: BOS (1), then the fixture tokenizer's SentencePiece encoding of each text (spm_encode
--model tests/fixtures/hf_tiny/tokenizer.model --output_format=id); tests/eval/test_engine.cpp checks that
polyllama's encoding of the texts gives these ids.
"""
import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURE = os.path.join(HERE, "..", "fixtures", "hf_tiny")
READ = [294, 69, 70, 71, 259, 1, 2, 299]
SHOTS = ("259 84 61 259 76 269 259 262 266 260 259 264 267 282 260 264 259 270 265 261 280 66 259 294 61 259 "
         "69 277 259 84 61")
SHOT_TEXT = "Q: Is the river long? A: B. Q:"


def ids(s):
    return [1] + [int(x) for x in s.split()]


PROMPTS = [  # (group, text, ids)
    ("shots", SHOT_TEXT + " Are the hills green? A:",
     ids(SHOTS + " 259 294 264 260 259 262 266 260 259 266 267 270 270 269 259 280 264 260 260 261 "
         "66 259 294 61")),
    ("shots", SHOT_TEXT + " Can a child read? A:",
     ids(SHOTS + " 259 70 263 261 259 263 259 275 266 267 270 268 259 264 260 263 268 66 259 294 61")),
    ("shots", SHOT_TEXT + " Will it rain today? A:",
     ids(SHOTS + " 259 90 267 270 270 259 267 262 259 264 263 267 261 259 262 265 268 263 271 66 "
         "259 294 61")),
    ("shots", SHOT_TEXT + " Is",
     ids(SHOTS + " 259 76 269")),
    ("other", "The grey cat remembers the road",
     ids("259 283 266 260 259 280 264 260 271 259 275 263 262 259 264 260 272 260 272 274 "
         "260 264 269 259 262 266 260 259 264 265 263 268")),
    ("other", "a",
     ids("259 263")),
]


def make_fixture():
    sys.path.insert(0, HERE)
    from hf_generate_ref import reference_model

    torch, ref, cfg, params = reference_model()
    cases = []
    for group, text, prompt in PROMPTS:
        logits = ref.forward(cfg, params, torch.tensor([prompt], dtype=torch.int64))[0, -1]
        logp = torch.log_softmax(logits, dim=-1)
        cases.append({"group": group, "text": text, "prompt_ids": prompt,
                      "logprobs": [float(logp[i]) for i in READ]})
    return {"format": "polyllama-hf-letters-ref/1", "torch": torch.__version__, "read": READ,
            "note": "log-softmax of the next token after each prompt, tests/reference/hf_letters_ref.py (float64, "
                    "whole prompts, no cache) on tests/fixtures/hf_tiny",
            "cases": cases}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--compare", help="a committed fixture: the log-probabilities must agree within 1e-12")
    args = ap.parse_args()
    fx = make_fixture()
    with open(args.out, "w") as f:
        f.write(json.dumps(fx, indent=1) + "\n")
    if args.compare:
        with open(args.compare) as f:
            old = json.load(f)
        worst = max(abs(a - b) for c, d in zip(fx["cases"], old["cases"])
                    for a, b in zip(c["logprobs"], d["logprobs"]))
        same_ids = [c["prompt_ids"] for c in fx["cases"]] == [c["prompt_ids"] for c in old["cases"]]
        if not same_ids or worst > 1e-12:
            print(f"MISMATCH with {args.compare}: ids equal {same_ids}, worst difference {worst:.3e}", file=sys.stderr)
            return 1
        print(f"compare: log-probabilities within {worst:.1e} of {args.compare}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
