#!/usr/bin/python3
"""Reference side of `polyllama generate`: greedy decoding with the PyTorch reference of Hugging Face's LLaMA.

    /usr/bin/python3 tests/reference/hf_generate_ref.py --out tests/fixtures/hf_tiny/reference_generate.json
    /usr/bin/python3 tests/reference/hf_generate_ref.py --out /tmp/new.json \
        --compare tests/fixtures/hf_tiny/reference_generate.json

The loop is what `LlamaForCausalLM.generate(do_sample=False)` does, written out with no KV cache so that it
shares nothing with polyllama's cached path: at every step the whole sequence (prompt and tokens so far) goes
through tests/reference/llama_torch_ref.py's forward in float64 on the fixture's bf16 weights (widened exactly),
the next token is the argmax of the last position's logits (the lowest id on ties, as torch.argmax), and the
loop ends at EOS (config.json's eos_token_id, kept in the output as generate keeps it), after MAX_NEW_TOKENS
tokens, or when the sequence fills max_position_embeddings.

The prompts are token ids: LLaMA's BOS (1), then the fixture tokenizer's SentencePiece encoding of each text
(with its dummy-prefix space), as polyllama encodes a plain prompt. tests/eval/test_generate.cpp checks that
polyllama's encoding of the texts gives these ids, then that polyllama generates exactly these tokens; the
fixture also records, per prompt, the smallest gap between the best and second-best logit over its steps, so
that a reader can see how far every argmax is from a tie (fp32 rounding moves logits by ~1e-6).
"""
import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURE = os.path.join(HERE, "..", "fixtures", "hf_tiny")
MAX_NEW_TOKENS = 24
# (text, BOS + SentencePiece ids of the text under tests/fixtures/hf_tiny/tokenizer.model)
PROMPTS = [
    ("The river carries",
     [1, 259, 283, 266, 260, 259, 264, 267, 282, 260, 264, 259, 275, 263, 264, 264, 267, 260, 269]),
    ("Every child remembers the long road to the hills",
     [1, 259, 297, 282, 260, 264, 271, 259, 275, 266, 267, 270, 268, 259, 264, 260, 272, 260, 272, 274, 260, 264,
      269, 259, 262, 266, 260, 259, 270, 265, 261, 280, 259, 264, 265, 263, 268, 259, 262, 265, 259, 262, 266, 260,
      259, 266, 267, 270, 270, 269]),
    ("a grey cat", [1, 259, 263, 259, 280, 264, 260, 271, 259, 275, 263, 262]),
    ("Our teacher opens seven green apples on day 12, and then",
     [1, 259, 299, 281, 264, 259, 262, 260, 263, 275, 266, 260, 264, 259, 265, 279, 260, 261, 269, 259, 269, 260,
      282, 260, 261, 259, 280, 264, 260, 260, 261, 259, 263, 279, 279, 270, 260, 269, 259, 265, 261, 259, 268, 263,
      271, 259, 284, 285, 276, 259, 263, 261, 268, 259, 262, 266, 260, 261]),
]


def load_params(torch):
    sys.path.insert(0, HERE)
    import hf_export_ref as hf

    _, tensors = hf.st_load(os.path.join(FIXTURE, "model.safetensors"))
    return {name: torch.tensor(hf.raw_to_float64(dt, raw), dtype=torch.float64).reshape(shape)
            for name, (dt, shape, raw) in tensors.items()}


def greedy(torch, ref, cfg, params, ids):
    seq, gaps = list(ids), []
    out = []
    while len(out) < MAX_NEW_TOKENS and len(seq) < cfg["max_position_embeddings"]:
        logits = ref.forward(cfg, params, torch.tensor([seq], dtype=torch.int64))[0, -1]
        top2 = torch.topk(logits, 2).values
        gaps.append(float(top2[0] - top2[1]))
        nxt = int(torch.argmax(logits))
        out.append(nxt)
        seq.append(nxt)
        if nxt == cfg["eos_token_id"]:
            break
    return out, min(gaps)


def reference_model():
    """torch, the reference module, the fixture's config and its parameters in float64: deterministic, one thread."""
    import torch

    sys.path.insert(0, HERE)
    import llama_torch_ref as ref

    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    with open(os.path.join(FIXTURE, "config.json")) as f:
        cfg = json.load(f)
    return torch, ref, cfg, load_params(torch)


def generate_fixture():
    torch, ref, cfg, params = reference_model()
    cases = []
    for text, ids in PROMPTS:
        tokens, gap = greedy(torch, ref, cfg, params, ids)
        cases.append({"text": text, "prompt_ids": ids, "tokens": tokens, "min_top2_gap": gap})
    return {"format": "polyllama-hf-generate-ref/1", "torch": torch.__version__, "max_new_tokens": MAX_NEW_TOKENS,
            "note": "greedy tokens of tests/reference/hf_generate_ref.py (float64, no KV cache) on "
                    "tests/fixtures/hf_tiny; generation stops at EOS, max_new_tokens or max_position_embeddings",
            "cases": cases}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--compare", help="a committed fixture: the token ids must be identical")
    args = ap.parse_args()
    fx = generate_fixture()
    with open(args.out, "w") as f:
        f.write(json.dumps(fx, indent=1) + "\n")
    for c in fx["cases"]:
        print(f"{c['text']!r}: {len(c['tokens'])} tokens, smallest top-2 logit gap {c['min_top2_gap']:.3e}")
    if args.compare:
        with open(args.compare) as f:
            old = json.load(f)
        a = [(c["prompt_ids"], c["tokens"]) for c in fx["cases"]]
        b = [(c["prompt_ids"], c["tokens"]) for c in old["cases"]]
        if a != b:
            print(f"MISMATCH: regenerated tokens differ from {args.compare}", file=sys.stderr)
            return 1
        print(f"compare: tokens identical to {args.compare}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
