#!/usr/bin/env python3
"""Writes the committed seed corpora of the fuzz targets, tests/fuzz/corpus/<target>/ (docs/fuzzing.md).

Seeds are small (regress-* files, the inputs of fixed findings, are added by hand and kept): excerpts of the benchmark samples and corpora in ../shared/data (the benchmarks' official formats),
hand-written records, and tiny files made here (safetensors files, a SentencePiece model trained on a few lines).
Each target's first byte selects its options (see the target's header comment), so seeds carry that byte.
Usage: tests/fuzz/make_corpus.py [SHARED_DATA]  (default ../shared/data beside the checkout)
"""
import csv
import gzip
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SHARED = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "..", "shared", "data")
OUT = os.path.join(HERE, "corpus")
SEP = b"\n#####\n"


def put(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    assert len(data) <= 8192, (target, name, len(data))
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def shared(*parts):
    return os.path.join(SHARED, *parts)


def head_lines(path, n):
    with open(path, encoding="utf-8") as f:
        return "".join(f.readline() for _ in range(n))


def safetensors(tensors, metadata=None):
    """tensors: (name, dtype, shape, raw bytes); the header as safetensors' serialize writes it."""
    header, data = {}, b""
    if metadata:
        header["__metadata__"] = metadata
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


def main():
    # Regenerated seeds are replaced; regress-* files (inputs of fixed findings, committed by hand) are kept.
    for d, _, files in os.walk(OUT):
        for f in files:
            if not f.startswith("regress-"):
                os.remove(os.path.join(d, f))
    have_shared = os.path.isdir(SHARED)
    if not have_shared:
        print(f"make_corpus: {SHARED} not found; writing the hand-made seeds only", file=sys.stderr)

    # ---- safetensors
    f32 = struct.pack("<6f", 1, -2, 3.5, 0, float("inf"), 1e-40)
    put("fuzz_safetensors", "f32_2x3", safetensors([("model.embed_tokens.weight", "F32", [2, 3], f32)]))
    put("fuzz_safetensors", "mixed_meta", safetensors(
        [("a.bf16", "BF16", [2], b"\x80\x3f\x00\xc0"), ("b.f16", "F16", [1, 2], b"\x00\x3c\x00\x7c"),
         ("c.scalar", "F32", [], struct.pack("<f", 2.5)), ("d.empty", "F32", [0, 4], b"")],
        {"format": "pt"}))
    put("fuzz_safetensors", "bad_dtype", safetensors([("x", "I64", [1], b"\0" * 8)]))

    # ---- checkpoint attributes: "CONFIG\n#####\nTRAINER STATE\n#####\nCHAT TEMPLATE"
    with open(os.path.join(ROOT, "tests", "fixtures", "hf_tiny", "config.json"), "rb") as f:
        put("fuzz_ckpt_attrs", "hf_tiny_fresh_init", f.read())
    llama1 = json.dumps({"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
                         "num_attention_heads": 32, "vocab_size": 32000, "rms_norm_eps": 1e-6, "hidden_act": "silu"})
    trainer = json.dumps({"step": 1000, "consumed_samples": 64000, "consumed_tokens": 131072000,
                          "optimizer_steps": 998, "skipped_steps": 2, "global_batch": 64, "seed": 1234,
                          "lr": 3e-4})
    put("fuzz_ckpt_attrs", "llama1_trained", llama1 + SEP.decode() + trainer)
    put("fuzz_ckpt_attrs", "llama3_sft", json.dumps({
        "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
        "num_key_value_heads": 8, "vocab_size": 128256, "max_position_embeddings": 8192, "rms_norm_eps": 1e-5,
        "rope_theta": 500000.0, "tie_word_embeddings": False}) + SEP.decode() + json.dumps(
        {"step": 10, "consumed_samples": 80, "consumed_tokens": 10240, "optimizer_steps": 10, "micro_batch": 4,
         "accum_steps": 2}) + SEP.decode() + json.dumps({"name": "alpaca", "user_format": "### Instruction:\n{content}\n\n",
                                                         "assistant_format": "### Response:\n{content}"}))

    # ---- pretraining text / JSONL (byte 0: bit 0 JSONL, bit 1 blank-line documents, bit 2 skip invalid)
    jsonl = '{"text": "first document"}\n\n{"text": "第二个文档\\n两行", "id": 2}\n{"text": "  "}\n{"text": "x"}\n'
    put("fuzz_text_input", "jsonl", b"\x01" + jsonl.encode())
    put("fuzz_text_input", "jsonl_bom_crlf", b"\x05\xef\xbb\xbf" + b'{"text": "a"}\r\nnot json\r\n{"txt": 1}\r\n')
    put("fuzz_text_input", "jsonl_gzip", b"\x01" + gzip.compress(jsonl.encode(), mtime=0))
    text = head_lines(shared("corpora", "en", "tinyshakespeare_input.txt"), 24) if have_shared else "a\nb\n\nc\n"
    put("fuzz_text_input", "text_blank_lines", b"\x02" + text.encode())
    put("fuzz_text_input", "text_whole", b"\x00" + text.encode())
    if have_shared:
        put("fuzz_text_input", "text_zh", b"\x02" + head_lines(shared("corpora", "zh", "chinese-poetry_lunyu.txt"),
                                                                  12).encode())

    # ---- SFT records (byte 0: bits 0-1 template, bit 2 skip invalid, bit 3 template JSON first)
    alpaca = [{"instruction": "Translate to French", "input": "cat", "output": "chat"},
              {"instruction": "用一句话介绍北京", "output": "北京是中国的首都。", "system": "简洁"}]
    put("fuzz_sft_records", "alpaca_jsonl", b"\x00" + "\n".join(json.dumps(r, ensure_ascii=False)
                                                             for r in alpaca).encode())
    put("fuzz_sft_records", "alpaca_array", b"\x01" + json.dumps(alpaca, ensure_ascii=False).encode())
    put("fuzz_sft_records", "sharegpt", b"\x02" + json.dumps({"conversations": [
        {"from": "system", "value": "Be brief."}, {"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"},
        {"from": "human", "value": "Bye"}, {"from": "gpt", "value": "Bye"}]}).encode())
    put("fuzz_sft_records", "messages_bad", b"\x07" + json.dumps({"messages": [
        {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}).encode() +
        b'\n{"messages": [{"role": "user"}]}\n[1,2]\n')
    tpl = {"name": "custom", "system": "You are helpful.", "system_format": "<<SYS>>{system}<</SYS>>\n",
           "user_format": "[INST] {content} [/INST]", "assistant_format": " {content} ",
           "input_format": "{instruction}\n{input}", "bos": True, "bos_each_turn": True, "eos_after_assistant": True}
    put("fuzz_sft_records", "template_then_records", b"\x08" + json.dumps(tpl).encode() + SEP +
        json.dumps(alpaca[0]).encode())

    # ---- prompts (byte 0: bit 0 chat, bits 1-2 template, bit 3 system prompt)
    put("fuzz_prompts", "plain", b"\x00" + b'{"prompt": "Once upon a time", "id": 1}\n\n{"prompt": "\\u4f60\\u597d"}\n')
    put("fuzz_prompts", "chat_records", b"\x0b" + "\n".join(json.dumps(r, ensure_ascii=False) for r in [
        {"prompt": "Hi", "system": "s"}, alpaca[0],
        {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                      {"role": "user", "content": "c"}]}]).encode())

    # ---- C-Eval / MMLU (byte 0: bit 0 MMLU, bit 1 generate, bits 2-4 shots, bit 5 skip, bit 6 test, bit 7 key)
    if have_shared:
        cev = head_lines(shared("bench", "ceval", "val", "computer_network_val.csv"), 4)
        put("fuzz_ceval_mmlu", "ceval_zero_shot", b"\x00" + cev.encode() + SEP + "答案：B".encode())
        put("fuzz_ceval_mmlu", "ceval_5shot_generate", bytes([0x02 | (5 << 2)]) + cev.encode() + SEP +
            "所以答案是C。".encode())
        put("fuzz_ceval_mmlu", "ceval_dev_given", bytes([2 << 2]) + cev.encode() + SEP + b"A" + SEP +
            head_lines(shared("bench", "ceval", "dev", "computer_network_dev.csv"), 4).encode())
        mm = head_lines(shared("bench", "mmlu", "val", "abstract_algebra_val.csv"), 4)
        put("fuzz_ceval_mmlu", "mmlu_5shot", bytes([0x01 | (5 << 2)]) + mm.encode() + SEP + b" B")
        put("fuzz_ceval_mmlu", "mmlu_generate", b"\x03" + mm.encode() + SEP + b"The answer is (D).")

    # ---- AGIEval (byte 0: bits 0-2 task: 0 sat-math 1 logiqa-zh 2 lsat-ar 3 jec-qa-kd 4 gaokao-physics
    #      5 gaokao-mathcloze 6 math 7 aqua-rat; bit 3 generate, bit 4 skip, bits 5-7 shots with a CSV)
    if have_shared:
        for sel, stem, resp in [(0, "sat-math", "The answer is D"), (1, "logiqa-zh", "答案是 B"),
                                (4, "gaokao-physics", "答案是 AC"), (5, "gaokao-mathcloze", "答案是 $\\frac{1}{2}$")]:
            lines = head_lines(shared("bench", "agieval", stem + ".jsonl"), 2)
            put("fuzz_agieval", stem, bytes([sel | 8]) + lines.encode()[:6000] + SEP + resp.encode())
        with open(shared("bench", "agieval", "few_shot_prompts.csv"), encoding="utf-8", newline="") as f:
            rows = list(csv.reader(f))
        keep = [0] + [i for i, h in enumerate(rows[0]) if h == "sat-math"]
        small = [[r[i] for i in keep] for r in rows if r and (r[0] in ("", "sample 1", "explanation 1"))]
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows(small)
        put("fuzz_agieval", "sat-math_1shot", bytes([0 | (1 << 5)]) +
            head_lines(shared("bench", "agieval", "sat-math.jsonl"), 1).encode()[:3000] + SEP +
            b"The answer is therefore A\n<END>" + SEP + buf.getvalue().encode()[:4000])
    put("fuzz_agieval", "math_handmade", b"\x0e" + json.dumps(
        {"passage": None, "question": "What is $1+1$?", "options": None, "label": None, "answer": "2",
         "other": None}).encode() + SEP + b"The answer is $\\boxed{2}$")

    # ---- GAOKAO (byte 0: bits 0-1 keyword: 0 Math_II single, 1 Physics multi, 2 Geography multi-question,
    #      3 English cloze five-of-seven; bit 2 skip invalid)
    if have_shared:
        for sel, name, resp in [(1, "2010-2022_Physics_MCQs", "【答案】 BD <eoa>"),
                                (2, "2010-2022_Geography_MCQs", "【答案】 A <eoa>\n【答案】 C <eoa>"),
                                (3, "2012-2022_English_Cloze_Test", "【答案】 ABCDE <eoa>")]:
            with open(shared("bench", "gaokao", name + ".json"), encoding="utf-8") as f:
                d = json.load(f)
            d["example"] = d["example"][:1]
            put("fuzz_gaokao", name, bytes([sel]) + json.dumps(d, ensure_ascii=False).encode()[:6000] + SEP +
                resp.encode())
    put("fuzz_gaokao", "math_handmade", b"\x00" + json.dumps({"keywords": "2010-2022_Math_II_MCQs", "example": [
        {"year": "2010", "category": "（全国卷）", "question": "1. 1+1=\nA. 1\nB. 2\nC. 3\nD. 4\n",
         "answer": ["B"], "analysis": "", "index": 0, "score": 5}]}, ensure_ascii=False).encode() + SEP +
        "【答案】 B <eoa>".encode())

    # ---- SentencePiece models: the tiny fixture and two trained here on a few lines
    with open(os.path.join(ROOT, "tests", "fixtures", "hf_tiny", "tokenizer.model"), "rb") as f:
        put("fuzz_sp_model", "hf_tiny", f.read())
    if shutil.which("spm_train"):
        with tempfile.TemporaryDirectory() as tmp:
            src = os.path.join(tmp, "text.txt")
            with open(src, "w", encoding="utf-8") as f:
                f.write(text + "你好世界。天下大同。\n" * 3)
            for kind, vocab, extra in [("bpe", 340, ["--byte_fallback=true"]), ("unigram", 60, [])]:
                subprocess.run(["spm_train", f"--input={src}", f"--model_prefix={tmp}/{kind}", f"--vocab_size={vocab}",
                                f"--model_type={kind}", "--minloglevel=2", "--hard_vocab_limit=false", "--normalization_rule_name=identity"] + extra,
                               check=True, capture_output=True)
                with open(f"{tmp}/{kind}.model", "rb") as f:
                    put("fuzz_sp_model", kind, f.read())

    # ---- TOML configs (byte 0: the verb, 0 pretrain, 1 sft, 2 data, 6 eval, 12 tokenizer train)
    put("fuzz_toml_config", "pretrain", b"\x00" + b'seq_len = 16\nsteps = 3\nmicro_batch = 2\njson = true\n'
        b'blank_line_docs = true\ndata = ["a.txt", "b.txt"]\nlr = 3e-4\n# comment\n')
    put("fuzz_toml_config", "sft_flags", b"\x01" + b'template = "alpaca"\nskip-invalid = false\nthreads = 2\n')
    put("fuzz_toml_config", "data", b"\x02" + b"input = ['x.jsonl']\nformat = \"jsonl\"\ntext_field = 'body'\n")
    put("fuzz_toml_config", "eval_section", b"\x06" + b'tasks = "ceval,mmlu"\n[extra]\nkey = 1\n')
    put("fuzz_toml_config", "tokenizer_train", b"\x0c" + b'vocab_size = 500\nmodel_type = "bpe"\n[[x]]\n')
    print(f"make_corpus: wrote {sum(len(fs) for _, _, fs in os.walk(OUT))} seeds under {OUT}")


if __name__ == "__main__":
    main()
