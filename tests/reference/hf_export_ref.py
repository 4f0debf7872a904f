#!/usr/bin/python3
"""Reference side of `polyllama convert`: the Hugging Face fixture folder and an independent check of exports.

Debian's interpreter and python3-torch are enough; neither `transformers` nor `safetensors` is needed: the
safetensors format is written and read here by hand, following the reference implementation (the Rust crate
behind `safetensors.torch.save_file`): 8-byte little-endian header length, compact JSON with `__metadata__`
first, tensors ordered by descending dtype (F32, BF16, F16) then by name, keys dtype/shape/data_offsets, the
header padded with spaces to a multiple of 8, then the raw little-endian data in the same order.

Subcommands:

  tokenizer-text --out FILE
      The English text tests/fixtures/hf_tiny/tokenizer.model was trained on, with polyllama's own binary:
          build/polyllama tokenizer train --input FILE --vocab-size 300 --out tests/fixtures/hf_tiny/tokenizer.model
  fixture --out DIR [--compare COMMITTED_DIR]
      Writes config.json, model.safetensors (bf16), reference.json and reference_logits.bin into DIR (which must
      hold tokenizer.model already for the folder to be complete). Parameters are drawn in fp32 from torch's
      seeded generator and rounded to bf16 (round to nearest even); the logits for reference.json's input ids
      come from tests/reference/llama_torch_ref.py's forward (Hugging Face's LLaMA in plain torch, rotate-half
      RoPE, GQA) run in float64 on exactly the bf16 values. --compare checks a regenerated fixture against the
      committed one: model.safetensors byte for byte, logits within 1e-10 relative.
  verify DIR --reference FIXTURE_DIR [--logits-tol TOL]
      Checks a folder written by `polyllama convert --to hf` the way its consumers read it: config.json's fields
      (transformers' LlamaConfig, vLLM, llama.cpp's convert_hf_to_gguf.py), generation_config.json,
      tokenizer_config.json, tokenizer.model (the fixture's, byte for byte), every safetensors file's layout, the
      weight names and dtypes, model.safetensors.index.json when sharded; then, with torch, recomputes the logits
      from the exported weights and compares them with the fixture's reference logits.
  edit DIR [--drop NAME] [--reshape NAME=D0,D1] [--add-inv-freq] [--set NAME:INDEX=VALUE] [--config KEY=JSON]
           [--config-del KEY]
      Rewrites DIR/model.safetensors (and config.json) in place, for the error cases of tests/cli/test_convert.sh.
      Needs only the standard library.

The fixture is a 2-layer LLaMA with grouped-query attention (4 query heads, 2 kv heads), hidden 32, intermediate
88, an untied head, vocab_size 320 (above the tokenizer's 300 pieces, as real checkpoints pad), rope_theta 5e5
and rms_norm_eps 1e-5 (neither is polyllama's or transformers' default, so both must be read).
"""
import argparse
import json
import math
import os
import struct
import sys

FORMAT = "polyllama-hf-ref/1"
SEED = 20240917
BATCH, SEQ = 2, 8
WEIGHT_STD = 0.2
COMPARE_REL_TOL = 1e-10

CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 32,
    "intermediate_size": 88,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 320,
    "max_position_embeddings": 64,
    "rms_norm_eps": 1e-5,
    "rope_theta": 500000.0,
    "tie_word_embeddings": False,
    "hidden_act": "silu",
    "bos_token_id": 1,
    "eos_token_id": 2,
    "torch_dtype": "bfloat16",
    "initializer_range": 0.02,
    "pretraining_tp": 1,
    "rope_scaling": None,
    "use_cache": True,
}

ST_SIZE = {"F32": 4, "BF16": 2, "F16": 2}
ST_RANK = {"F16": 0, "BF16": 1, "F32": 2}  # the reference's dtype order (its enum), sorted descending
TORCH_DTYPE = {"float32": "F32", "bfloat16": "BF16", "float16": "F16"}


# ---- safetensors by hand -------------------------------------------------------------------------------------

def st_serialize(tensors, metadata):
    """tensors: {name: (dtype, shape, raw bytes)} -> the file's bytes, as the reference implementation writes."""
    order = sorted(tensors, key=lambda n: (-ST_RANK[tensors[n][0]], n))
    header, offset = {}, 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name in order:
        dtype, shape, raw = tensors[name]
        n = math.prod(shape) * ST_SIZE[dtype]
        assert len(raw) == n, (name, len(raw), n)
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    h = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(tensors[n][2] for n in order)


def st_parse(blob, where):
    """Bytes of a safetensors file -> (metadata, {name: (dtype, shape, raw)}), checking the layout."""
    (n,) = struct.unpack_from("<Q", blob, 0)
    assert 8 + n <= len(blob), f"{where}: header length {n} beyond the file"
    assert n % 8 == 0, f"{where}: header length {n} is not a multiple of 8 (the data would be unaligned)"
    header = json.loads(blob[8:8 + n].decode("utf-8"))
    data = blob[8 + n:]
    metadata = header.pop("__metadata__", None)
    spans, out = [], {}
    for name, e in header.items():
        b, end = e["data_offsets"]
        assert e["dtype"] in ST_SIZE, f"{where}: {name}: dtype {e['dtype']}"
        assert end - b == math.prod(e["shape"]) * ST_SIZE[e["dtype"]], f"{where}: {name}: size"
        assert b % ST_SIZE[e["dtype"]] == 0, f"{where}: {name}: unaligned"
        spans.append((b, end, name))
        out[name] = (e["dtype"], list(e["shape"]), data[b:end])
    cursor = 0
    for b, end, name in sorted(spans):
        assert b == cursor, f"{where}: {name}: gap or overlap at byte {b}"
        cursor = end
    assert cursor == len(data), f"{where}: trailing bytes"
    return metadata, out


def st_load(path):
    with open(path, "rb") as f:
        return st_parse(f.read(), path)


def st_save(path, tensors, metadata):
    with open(path, "wb") as f:
        f.write(st_serialize(tensors, metadata))


def raw_to_float64(dtype, raw):
    """Raw little-endian values -> a list of Python floats (exact: every value is representable)."""
    if dtype == "F32":
        return list(struct.unpack(f"<{len(raw) // 4}f", raw))
    words = struct.unpack(f"<{len(raw) // 2}H", raw)
    if dtype == "BF16":
        return list(struct.unpack(f"<{len(words)}f", struct.pack(f"<{len(words)}I", *[w << 16 for w in words])))
    return list(struct.unpack(f"<{len(words)}e", raw))


# ---- the fixture ---------------------------------------------------------------------------------------------

def tokenizer_text():
    subjects = ["the river", "a small boat", "the old baker", "every child", "the north wind", "my neighbour",
                "the library", "a grey cat", "the morning train", "our teacher"]
    verbs = ["carries", "finds", "remembers", "opens", "follows", "paints", "answers", "watches"]
    objects = ["the quiet harbour", "seven green apples", "a letter from home", "the long road to the hills",
               "bread and warm milk", "the first snow of winter", "a map of the old town", "twelve blue stones"]
    lines = []
    for i in range(600):
        s, v, o = subjects[i % 10], verbs[(i * 3) % 8], objects[(i * 7) % 8]
        lines.append(f"{s.capitalize()} {v} {o} on day {i}, and then {subjects[(i + 4) % 10]} {verbs[i % 8]} it.")
    return "\n".join(lines) + "\n"


def make_params(torch, ref, cfg):
    gen = torch.Generator().manual_seed(SEED)
    params = {}
    for name, shape in ref.param_shapes(cfg):
        r = torch.randn(shape, generator=gen, dtype=torch.float32)
        w = (1.0 + 0.1 * r) if name.endswith("norm.weight") else WEIGHT_STD * r
        params[name] = w.to(torch.bfloat16)  # round to nearest even
    inputs = torch.randint(0, cfg["vocab_size"], (BATCH, SEQ), generator=gen, dtype=torch.int64)
    return params, inputs


def reference_logits(torch, ref, cfg, params64, inputs):
    return ref.forward(cfg, params64, inputs).reshape(BATCH * SEQ, cfg["vocab_size"]).detach()


def import_torch():
    import torch

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import llama_torch_ref as ref

    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    return torch, ref


def write_fixture(out):
    torch, ref = import_torch()
    cfg = CONFIG
    params, inputs = make_params(torch, ref, cfg)
    os.makedirs(out, exist_ok=True)
    tensors = {n: ("BF16", list(t.shape), t.contiguous().view(torch.int16).numpy().astype("<i2").tobytes())
               for n, t in params.items()}
    st_save(os.path.join(out, "model.safetensors"), tensors, {"format": "pt"})
    with open(os.path.join(out, "config.json"), "w") as f:
        f.write(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    logits = reference_logits(torch, ref, cfg, {n: t.to(torch.float64) for n, t in params.items()}, inputs)
    with open(os.path.join(out, "reference_logits.bin"), "wb") as f:
        f.write(logits.contiguous().numpy().astype("<f8").tobytes())
    meta = {"format": FORMAT, "torch": torch.__version__, "seed": SEED, "batch": BATCH, "seq": SEQ,
            "input_ids": inputs.tolist(),
            "logits": {"file": "reference_logits.bin", "dtype": "f64", "shape": [BATCH * SEQ, cfg["vocab_size"]]},
            "note": "logits of LlamaForCausalLM (tests/reference/llama_torch_ref.py, float64) on the bf16 weights "
                    "of model.safetensors widened exactly, for input_ids (batch, seq); rows are batch-major"}
    with open(os.path.join(out, "reference.json"), "w") as f:
        f.write(json.dumps(meta, indent=2) + "\n")
    print(f"wrote {out}: torch {torch.__version__}, {sum(t.numel() for t in params.values())} parameters (bf16), "
          f"logits {list(logits.shape)}")


def read_logits(fixture_dir):
    import numpy as np

    with open(os.path.join(fixture_dir, "reference.json")) as f:
        meta = json.load(f)
    lg = meta["logits"]
    arr = np.fromfile(os.path.join(fixture_dir, lg["file"]), dtype="<f8").reshape(lg["shape"])
    return meta, arr


def compare_fixture(new, committed):
    import numpy as np

    problems = []
    for name in ("model.safetensors", "config.json"):
        with open(os.path.join(new, name), "rb") as a, open(os.path.join(committed, name), "rb") as b:
            if a.read() != b.read():
                problems.append(f"{name} differs from the committed one")
    mn, ln = read_logits(new)
    mc, lc = read_logits(committed)
    if mn["input_ids"] != mc["input_ids"]:
        problems.append("input_ids differ")
    err = float(np.max(np.abs(ln - lc)) / np.max(np.abs(lc)))
    print(f"compare: logits relative difference {err:.3e} (tolerance {COMPARE_REL_TOL:g})")
    if not err <= COMPARE_REL_TOL:
        problems.append(f"logits differ by {err:.3e}")
    return problems


# ---- checking an export --------------------------------------------------------------------------------------

def hf_param_names(cfg):
    """Names in LlamaForCausalLM.state_dict() order."""
    out = ["model.embed_tokens.weight"]
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        out += [p + s + ".weight" for s in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                            "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj",
                                            "input_layernorm", "post_attention_layernorm")]
    out.append("model.norm.weight")
    if not cfg.get("tie_word_embeddings", False):
        out.append("lm_head.weight")
    return out


def load_folder(d):
    """{name: (dtype, shape, raw)} of a folder's weights, through the index when sharded; checks the files."""
    problems = []
    single, index = os.path.join(d, "model.safetensors"), os.path.join(d, "model.safetensors.index.json")
    files = {}
    if os.path.exists(single):
        files["model.safetensors"] = st_load(single)
        weight_map = {n: "model.safetensors" for n in files["model.safetensors"][1]}
        if os.path.exists(index):
            problems.append("both model.safetensors and an index")
    else:
        with open(index) as f:
            idx = json.load(f)
        weight_map = idx["weight_map"]
        names = sorted(set(weight_map.values()))
        for i, fn in enumerate(names):
            if fn != f"model-{i + 1:05d}-of-{len(names):05d}.safetensors":
                problems.append(f"shard name {fn} is not model-{i + 1:05d}-of-{len(names):05d}.safetensors")
            files[fn] = st_load(os.path.join(d, fn))
        total = sum(len(files[fn][1][n][2]) for n, fn in weight_map.items())
        if idx.get("metadata", {}).get("total_size") != total:
            problems.append(f"index metadata.total_size {idx.get('metadata')} != {total}")
    tensors = {}
    for fn, (meta, ts) in files.items():
        if meta != {"format": "pt"}:
            problems.append(f"{fn}: __metadata__ {meta} is not {{'format': 'pt'}} (transformers refuses it)")
        for n, t in ts.items():
            if weight_map.get(n) != fn:
                problems.append(f"{fn} holds {n}, which the index places in {weight_map.get(n)}")
            tensors[n] = t
    return tensors, problems


def verify(d, fixture_dir, logits_tol):
    problems = []
    with open(os.path.join(d, "config.json")) as f:
        cfg = json.load(f)
    with open(os.path.join(fixture_dir, "config.json")) as f:
        ref_cfg = json.load(f)
    # transformers: AutoConfig dispatches on model_type, AutoModelForCausalLM on architectures; vLLM picks its
    # model class from architectures[0] and the default dtype from torch_dtype; llama.cpp's converter reads
    # architectures[0], the shape fields, rms_norm_eps, rope_theta and the special token ids.
    want = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
            "rope_scaling": None, "attention_bias": False, "mlp_bias": False}
    for k, v in want.items():
        if cfg.get(k, "<absent>") != v:
            problems.append(f"config.json {k} = {cfg.get(k, '<absent>')!r}, want {v!r}")
    for k in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
              "vocab_size", "max_position_embeddings", "rms_norm_eps", "rope_theta", "tie_word_embeddings"):
        if k not in cfg:
            problems.append(f"config.json lacks {k}")
        elif k in ref_cfg and k != "tie_word_embeddings" and cfg[k] != ref_cfg[k]:
            problems.append(f"config.json {k} = {cfg[k]!r}, the source had {ref_cfg[k]!r}")
    if cfg.get("head_dim", cfg["hidden_size"] // cfg["num_attention_heads"]) * cfg["num_attention_heads"] != \
            cfg["hidden_size"]:
        problems.append(f"head_dim {cfg.get('head_dim')} inconsistent")
    for k in ("bos_token_id", "eos_token_id"):
        if not isinstance(cfg.get(k), int):
            problems.append(f"config.json {k} = {cfg.get(k)!r}, want an int")
    stored = TORCH_DTYPE.get(cfg.get("torch_dtype"))
    if stored is None:
        problems.append(f"config.json torch_dtype {cfg.get('torch_dtype')!r}")
    with open(os.path.join(d, "generation_config.json")) as f:
        gen = json.load(f)
    for k in ("bos_token_id", "eos_token_id"):
        if gen.get(k) != cfg.get(k):
            problems.append(f"generation_config.json {k} = {gen.get(k)!r}, config.json says {cfg.get(k)!r}")
    with open(os.path.join(d, "tokenizer_config.json")) as f:
        tc = json.load(f)
    for k, v in {"tokenizer_class": "LlamaTokenizer", "add_bos_token": True, "add_eos_token": False,
                 "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}.items():
        if tc.get(k) != v:
            problems.append(f"tokenizer_config.json {k} = {tc.get(k)!r}, want {v!r}")
    with open(os.path.join(d, "tokenizer.model"), "rb") as a, open(os.path.join(fixture_dir, "tokenizer.model"), "rb") as b:
        if a.read() != b.read():
            problems.append("tokenizer.model differs from the source's")

    tensors, p = load_folder(d)
    problems += p
    names = hf_param_names(cfg)
    if sorted(tensors) != sorted(names):
        problems.append(f"weights: missing {sorted(set(names) - set(tensors))}, "
                        f"unexpected {sorted(set(tensors) - set(names))}")
    for n, (dtype, shape, raw) in tensors.items():
        if dtype != stored:
            problems.append(f"{n}: stored as {dtype}, config.json torch_dtype says {cfg.get('torch_dtype')}")
    if problems:
        return problems

    try:
        torch, ref = import_torch()
    except ImportError:
        print("verify: no torch; the logits were not recomputed")
        return problems
    import numpy as np

    meta, ref_logits = read_logits(fixture_dir)
    P = {n: torch.tensor(raw_to_float64(dt, raw), dtype=torch.float64).reshape(shape)
         for n, (dt, shape, raw) in tensors.items()}
    inputs = torch.tensor(meta["input_ids"], dtype=torch.int64)
    got = ref.forward(cfg, P, inputs).reshape(ref_logits.shape).detach().numpy()
    err = float(np.max(np.abs(got - ref_logits)) / np.max(np.abs(ref_logits)))
    print(f"verify: {d}: {len(tensors)} tensors ({stored}), logits from the exported weights vs the fixture's: "
          f"relative error {err:.3e} (tolerance {logits_tol:g})")
    if not err <= logits_tol:
        problems.append(f"logits from the exported weights differ by {err:.3e}")
    return problems


# ---- editing (test helper) -----------------------------------------------------------------------------------

def edit(args):
    path = os.path.join(args.dir, "model.safetensors")
    meta, tensors = st_load(path)
    for name in args.drop:
        del tensors[name]
    for spec in args.reshape:
        name, dims = spec.split("=")
        dt, _, raw = tensors[name]
        tensors[name] = (dt, [int(x) for x in dims.split(",")], raw)
    for spec in args.set:
        target, value = spec.split("=")
        name, index = target.split(":")
        dt, shape, raw = tensors[name]
        assert dt == "F32", "--set edits F32 tensors"
        raw = bytearray(raw)
        struct.pack_into("<f", raw, 4 * int(index), float(value))
        tensors[name] = (dt, shape, bytes(raw))
    with open(os.path.join(args.dir, "config.json")) as f:
        cfg = json.load(f)
    if args.add_inv_freq:  # what transformers < 4.31 saved per layer
        D = cfg["hidden_size"] // cfg["num_attention_heads"]
        inv = [1.0 / (cfg.get("rope_theta", 10000.0) ** (i / D)) for i in range(0, D, 2)]
        for i in range(cfg["num_hidden_layers"]):
            tensors[f"model.layers.{i}.self_attn.rotary_emb.inv_freq"] = ("F32", [D // 2], struct.pack(f"<{D // 2}f", *inv))
    for spec in args.config:
        k, v = spec.split("=", 1)
        cfg[k] = json.loads(v)
    for k in args.config_del:
        cfg.pop(k, None)
    with open(os.path.join(args.dir, "config.json"), "w") as f:
        f.write(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    st_save(path, tensors, meta)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("tokenizer-text")
    a.add_argument("--out", required=True)
    a = sub.add_parser("fixture")
    a.add_argument("--out", required=True)
    a.add_argument("--compare")
    a = sub.add_parser("verify")
    a.add_argument("dir")
    a.add_argument("--reference", required=True)
    a.add_argument("--logits-tol", type=float, default=1e-12)
    a = sub.add_parser("edit")
    a.add_argument("dir")
    a.add_argument("--drop", action="append", default=[])
    a.add_argument("--reshape", action="append", default=[])
    a.add_argument("--set", action="append", default=[])
    a.add_argument("--add-inv-freq", action="store_true")
    a.add_argument("--config", action="append", default=[])
    a.add_argument("--config-del", action="append", default=[])
    args = ap.parse_args()

    if args.cmd == "tokenizer-text":
        with open(args.out, "w") as f:
            f.write(tokenizer_text())
        return 0
    if args.cmd == "fixture":
        write_fixture(args.out)
        if args.compare:
            problems = compare_fixture(args.out, args.compare)
            for p in problems:
                print("MISMATCH " + p, file=sys.stderr)
            return 1 if problems else 0
        return 0
    if args.cmd == "verify":
        problems = verify(args.dir, args.reference, args.logits_tol)
        for p in problems:
            print("FAIL " + p, file=sys.stderr)
        return 1 if problems else 0
    edit(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
