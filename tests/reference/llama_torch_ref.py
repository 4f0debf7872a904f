#!/usr/bin/python3
"""PyTorch reference for polyllama's LLaMA: forward logits, loss and every parameter gradient of a small model.

Run with Debian's interpreter and python3-torch (no Hugging Face `transformers` needed):

    /usr/bin/python3 tests/reference/llama_torch_ref.py --out tests/fixtures/llama_ref_small.bin
    /usr/bin/python3 tests/reference/llama_torch_ref.py --out /tmp/new.bin --compare tests/fixtures/llama_ref_small.bin

The model below mirrors Hugging Face's `modeling_llama` (LlamaForCausalLM) in plain torch so that weights
from the Hub later load into polyllama with no permutation:
  * parameter names and layouts are Hugging Face's: `*_proj.weight` are [out, in] and y = x @ W^T;
  * LlamaRMSNorm: w * (x * rsqrt(mean(x^2) + eps)), computed in at least fp32;
  * rotary embeddings in the rotate-half convention, applied to the q/k projection outputs viewed as
    (B, T, H, D): pairs (i, i + D/2) rotate by pos * inv_freq[i], inv_freq = 1 / theta^(arange(0, D, 2) / D);
  * grouped-query attention through repeat_kv (query head h reads kv head h // (H / KV)), causal softmax of
    q k^T / sqrt(D), softmax in at least fp32;
  * SwiGLU MLP down(silu(gate(x)) * up(x)); final norm; untied lm_head;
  * cross-entropy with ignore_index = -100, mean over the non-ignored targets.
One deliberate difference from HF's code: HF computes inv_freq and the angles in fp32; here inv_freq, the
angles and cos/sin are computed in float64 (and the C++ model rounds them from float64 once). The two differ
by about 1e-7 relative in the angle, far below the test's tolerance, and float64 is the better reference.
Also, `targets` are already shifted (targets[b, t] is the label for position t), whereas HF's `labels` equal
the inputs and the model shifts them itself; polyllama's loader does that shift.

The reference runs in float64 on parameters that were drawn in float32: the C++ model loads exactly those
fp32 values, so in fp32 it differs from the reference only by its own rounding, and in fp64 by almost nothing.

Fixture format (read by tests/model/test_torch_reference.cpp):
  line 1: a JSON header, UTF-8, terminated by '\\n':
      {"format": "polyllama-torch-ref/1",
       "config": {Hugging Face config.json fields},
       "batch": B, "seq": T, "n_valid": number of targets != -100, "seed": ...,
       "tensors": [{"name": str, "dtype": "f32" | "f64" | "i32", "shape": [...],
                    "offset": bytes from the start of the payload}, ...]}
  then the payload: every tensor's raw little-endian values, row-major, each starting at a multiple of 8 bytes.
Tensors:
  inputs, targets   i32 (B, T)           token ids; targets hold -100 where no loss is counted
  <HF param name>   f32 [HF shape]       every parameter, in Hugging Face order
  logits            f64 (B*T, V)         reference forward logits
  loss              f64 (1)              mean cross-entropy over the n_valid counted targets
  grad:<HF name>    f64 [HF shape]       d loss / d parameter, for the mean loss above
"""
import argparse
import json
import math
import sys

import torch

FORMAT = "polyllama-torch-ref/1"
SEED = 20240611
IGNORE_INDEX = -100

# intermediate_size is 56 rather than LLaMA's natural 88 (= 8/3 * 32 rounded up to a multiple of 8) only to
# keep the fixture under 300 KB: every parameter costs 12 bytes (fp32 value + fp64 gradient). 56 is still not a
# multiple of 16, so no dimension of the MLP is a power of two.
CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 32,
    "intermediate_size": 56,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 67,
    "max_position_embeddings": 64,
    "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0,
    "tie_word_embeddings": False,
    "hidden_act": "silu",
}
BATCH, SEQ, N_IGNORED = 2, 9, 3
WEIGHT_STD = 0.2  # matrices ~ N(0, 0.2^2); norm weights ~ 1 + 0.1 N(0, 1)

# Tolerances of --compare. Parameters and inputs come from torch's seeded generator and must match bit for bit;
# the float64 outputs may differ in the last bits between BLAS builds, hence 1e-10 relative to each tensor's scale.
COMPARE_REL_TOL = 1e-10


def param_shapes(cfg):
    """(name, shape) of every parameter in Hugging Face order (LlamaForCausalLM.state_dict())."""
    C, F, V = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    D = C // cfg["num_attention_heads"]
    Hd, KVd = cfg["num_attention_heads"] * D, cfg["num_key_value_heads"] * D
    out = [("model.embed_tokens.weight", (V, C))]
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        out += [
            (p + "self_attn.q_proj.weight", (Hd, C)),
            (p + "self_attn.k_proj.weight", (KVd, C)),
            (p + "self_attn.v_proj.weight", (KVd, C)),
            (p + "self_attn.o_proj.weight", (C, Hd)),
            (p + "mlp.gate_proj.weight", (F, C)),
            (p + "mlp.up_proj.weight", (F, C)),
            (p + "mlp.down_proj.weight", (C, F)),
            (p + "input_layernorm.weight", (C,)),
            (p + "post_attention_layernorm.weight", (C,)),
        ]
    out += [("model.norm.weight", (C,))]
    if not cfg["tie_word_embeddings"]:
        out += [("lm_head.weight", (V, C))]
    return out


def compute_dtype(t):
    """HF upcasts norms and softmax to fp32; for a float64 reference that means staying in float64."""
    return torch.promote_types(t.dtype, torch.float32)


def rms_norm(x, w, eps):
    """LlamaRMSNorm.forward."""
    in_dtype = x.dtype
    h = x.to(compute_dtype(x))
    variance = h.pow(2).mean(-1, keepdim=True)
    h = h * torch.rsqrt(variance + eps)
    return w * h.to(in_dtype)


def rotary_cos_sin(cfg, seq, dtype):
    """LlamaRotaryEmbedding for positions 0..seq-1, (seq, D) each, computed in float64 (see the module doc)."""
    D = cfg["hidden_size"] // cfg["num_attention_heads"]
    inv_freq = 1.0 / (cfg["rope_theta"] ** (torch.arange(0, D, 2, dtype=torch.float64) / D))
    pos = torch.arange(seq, dtype=torch.float64)
    freqs = torch.outer(pos, inv_freq)  # (T, D/2)
    emb = torch.cat((freqs, freqs), dim=-1)  # (T, D)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def rotate_half(x):
    x1 = x[..., : x.shape[-1] // 2]
    x2 = x[..., x.shape[-1] // 2 :]
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary_pos_emb(q, k, cos, sin):
    """q (B, H, T, D), k (B, KV, T, D); cos/sin (T, D)."""
    return q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin


def repeat_kv(x, n_rep):
    """(B, KV, T, D) -> (B, KV * n_rep, T, D): kv head g serves query heads g*n_rep .. g*n_rep + n_rep - 1."""
    B, KV, T, D = x.shape
    if n_rep == 1:
        return x
    return x[:, :, None, :, :].expand(B, KV, n_rep, T, D).reshape(B, KV * n_rep, T, D)


def attention(cfg, P, p, x, cos, sin):
    """LlamaAttention.forward (eager path) on x (B, T, C)."""
    B, T, C = x.shape
    H, KV = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    D = C // H
    q = (x @ P[p + "q_proj.weight"].T).view(B, T, H, D).transpose(1, 2)
    k = (x @ P[p + "k_proj.weight"].T).view(B, T, KV, D).transpose(1, 2)
    v = (x @ P[p + "v_proj.weight"].T).view(B, T, KV, D).transpose(1, 2)
    q, k = apply_rotary_pos_emb(q, k, cos, sin)
    k, v = repeat_kv(k, H // KV), repeat_kv(v, H // KV)
    scores = (q @ k.transpose(2, 3)) / math.sqrt(D)  # (B, H, T, T)
    causal = torch.ones(T, T, dtype=torch.bool).triu(1)
    scores = scores.masked_fill(causal, float("-inf"))
    probs = torch.softmax(scores, dim=-1, dtype=compute_dtype(scores)).to(q.dtype)
    out = (probs @ v).transpose(1, 2).reshape(B, T, H * D)
    return out @ P[p + "o_proj.weight"].T


def mlp(P, p, x):
    """LlamaMLP.forward: down(silu(gate(x)) * up(x))."""
    gate = x @ P[p + "gate_proj.weight"].T
    up = x @ P[p + "up_proj.weight"].T
    return (torch.nn.functional.silu(gate) * up) @ P[p + "down_proj.weight"].T


def forward(cfg, P, inputs):
    """LlamaForCausalLM.forward without the label shift: logits (B, T, V)."""
    eps = cfg["rms_norm_eps"]
    x = P["model.embed_tokens.weight"][inputs]  # (B, T, C)
    cos, sin = rotary_cos_sin(cfg, inputs.shape[1], x.dtype)
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        x = x + attention(cfg, P, p + "self_attn.", rms_norm(x, P[p + "input_layernorm.weight"], eps), cos, sin)
        x = x + mlp(P, p + "mlp.", rms_norm(x, P[p + "post_attention_layernorm.weight"], eps))
    x = rms_norm(x, P["model.norm.weight"], eps)
    head = P["model.embed_tokens.weight"] if cfg["tie_word_embeddings"] else P["lm_head.weight"]
    return x @ head.T


def make_case(cfg):
    """Parameters (fp32), inputs and targets from one seeded generator."""
    gen = torch.Generator().manual_seed(SEED)
    params = {}
    for name, shape in param_shapes(cfg):
        r = torch.randn(shape, generator=gen, dtype=torch.float32)
        params[name] = (1.0 + 0.1 * r) if name.endswith("norm.weight") else WEIGHT_STD * r
    V = cfg["vocab_size"]
    inputs = torch.randint(0, V, (BATCH, SEQ), generator=gen, dtype=torch.int64)
    targets = torch.randint(0, V, (BATCH, SEQ), generator=gen, dtype=torch.int64)
    ignored = torch.randperm(BATCH * SEQ, generator=gen)[:N_IGNORED]
    targets.view(-1)[ignored] = IGNORE_INDEX
    return params, inputs, targets


def reference(cfg):
    params32, inputs, targets = make_case(cfg)
    # float64 leaves holding exactly the fp32 values the C++ model will load.
    P = {n: t.to(torch.float64).requires_grad_(True) for n, t in params32.items()}
    logits = forward(cfg, P, inputs).reshape(-1, cfg["vocab_size"])
    loss = torch.nn.functional.cross_entropy(logits, targets.reshape(-1), ignore_index=IGNORE_INDEX,
                                             reduction="mean")
    loss.backward()
    n_valid = int((targets != IGNORE_INDEX).sum())
    tensors = [("inputs", inputs.to(torch.int32)), ("targets", targets.to(torch.int32))]
    tensors += [(n, params32[n]) for n, _ in param_shapes(cfg)]
    tensors += [("logits", logits.detach()), ("loss", loss.detach().reshape(1))]
    tensors += [("grad:" + n, P[n].grad) for n, _ in param_shapes(cfg)]
    meta = {"batch": BATCH, "seq": SEQ, "n_valid": n_valid, "seed": SEED}
    return meta, tensors


DTYPES = {torch.float32: ("f32", "<f4"), torch.float64: ("f64", "<f8"), torch.int32: ("i32", "<i4")}


def write_fixture(path, cfg, meta, tensors):
    entries, chunks, offset = [], [], 0
    for name, t in tensors:
        code, _ = DTYPES[t.dtype]
        raw = t.contiguous().numpy().astype(DTYPES[t.dtype][1], copy=False).tobytes()
        entries.append({"name": name, "dtype": code, "shape": list(t.shape), "offset": offset})
        pad = (-len(raw)) % 8
        chunks.append(raw + b"\0" * pad)
        offset += len(raw) + pad
    header = {"format": FORMAT, "config": cfg, **meta, "tensors": entries}
    with open(path, "wb") as f:
        f.write(json.dumps(header, separators=(",", ":")).encode("utf-8") + b"\n")
        for c in chunks:
            f.write(c)


def read_fixture(path):
    import numpy as np

    with open(path, "rb") as f:
        header = json.loads(f.readline().decode("utf-8"))
        payload = f.read()
    out = {}
    np_dtype = {"f32": "<f4", "f64": "<f8", "i32": "<i4"}
    for e in header["tensors"]:
        n = int(np.prod(e["shape"])) if e["shape"] else 1
        out[e["name"]] = np.frombuffer(payload, dtype=np_dtype[e["dtype"]], count=n, offset=e["offset"]).reshape(
            e["shape"])
    return header, out


def compare(new_path, ref_path):
    """Returns a list of problems between a freshly generated fixture and the committed one."""
    import numpy as np

    hn, tn = read_fixture(new_path)
    hr, tr = read_fixture(ref_path)
    problems = []
    for key in ("format", "config", "batch", "seq", "n_valid", "seed"):
        if hn.get(key) != hr.get(key):
            problems.append(f"header field {key!r}: {hn.get(key)!r} vs committed {hr.get(key)!r}")
    dn = {e["name"]: e for e in hn["tensors"]}
    dr = {e["name"]: e for e in hr["tensors"]}
    if list(dn) != list(dr):
        problems.append(f"tensor lists differ: only new {sorted(set(dn) - set(dr))}, "
                        f"only committed {sorted(set(dr) - set(dn))}")
    worst = 0.0
    for name in dn:
        if name not in dr:
            continue
        a, b = tn[name], tr[name]
        if dn[name]["dtype"] != dr[name]["dtype"] or a.shape != b.shape:
            problems.append(f"{name}: {dn[name]['dtype']}{list(a.shape)} vs committed "
                            f"{dr[name]['dtype']}{list(b.shape)}")
        elif dn[name]["dtype"] in ("f32", "i32"):
            if not np.array_equal(a, b):
                problems.append(f"{name}: drawn values differ from the committed ones (the script's draws or "
                                f"torch's seeded generator changed); the committed fixture no longer reproduces")
        else:
            err = float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-300))
            worst = max(worst, err)
            if not err <= COMPARE_REL_TOL:
                problems.append(f"{name}: relative difference {err:.3e} > {COMPARE_REL_TOL:g}")
    print(f"compare: worst float64 relative difference {worst:.3e} (tolerance {COMPARE_REL_TOL:g})")
    return problems


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="fixture file to write")
    ap.add_argument("--compare", metavar="REF", help="then compare the written fixture with this one")
    args = ap.parse_args()

    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    meta, tensors = reference(CONFIG)
    write_fixture(args.out, CONFIG, meta, tensors)
    loss = dict(tensors)["loss"].item()
    print(f"wrote {args.out}: torch {torch.__version__}, loss {loss:.12f} over {meta['n_valid']} targets")
    if args.compare:
        problems = compare(args.out, args.compare)
        for p in problems:
            print("MISMATCH " + p, file=sys.stderr)
        if problems:
            return 1
        print(f"compare: {args.out} matches {args.compare}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
