#!/usr/bin/env bash
# `polyllama generate` end to end:
#   a checkpoint converted from the Hugging Face fixture generates, from the reference texts, exactly the greedy
#   tokens of the PyTorch reference (tests/fixtures/hf_tiny/reference_generate.json); the JSONL is in input
#   order and identical (timing aside) for any batch size and for mpirun -np 1, 2 and 3, greedy and sampled,
#   and for tensor parallelism: -np 2 --tp 2 and -np 4 --tp 2 (tp 2 x dp 2) write the records of one process;
#   --prompt streams the same completion; stop strings and --max-new-tokens end with the right finish_reason;
#   --chat prompts through a template; each kind of bad input exits 1 naming the file/line or the limit.
# Usage: test_generate.sh POLYLLAMA_BINARY
source "$(dirname "$0")/lib.sh" "$@"
here=$(cd "$(dirname "$0")" && pwd)
fixture="$here/../fixtures/hf_tiny"
export OMP_NUM_THREADS=1
# A JSONL file without its timing field (the only one that may differ between runs).
untimed() { python3 -c 'import json,sys
for l in open(sys.argv[1]):
    d = json.loads(l); d.pop("tokens_per_s"); print(json.dumps(d, sort_keys=True))' "$1"; }

"$bin" convert --from hf "$fixture" --to ckpt "$work/run" > /dev/null && ok "convert the fixture" || bad "convert"
python3 -c 'import json,sys
for c in json.load(open(sys.argv[1]))["cases"]: print(json.dumps({"prompt": c["text"], "id": c["text"][:5]}))' \
  "$fixture/reference_generate.json" > "$work/ref.jsonl"

# ---- the PyTorch reference's greedy tokens, through the converted checkpoint ----
"$bin" generate --ckpt "$work/run" --input "$work/ref.jsonl" --output "$work/g4.jsonl" --max-new-tokens 24 \
  --batch-size 4 2> "$work/g4.log" && ok "generate --input (batch 4)" || bad "generate: $(cat "$work/g4.log")"
python3 - "$fixture/reference_generate.json" "$work/g4.jsonl" <<'EOF' && ok "greedy tokens equal the PyTorch reference's, in input order" || bad "tokens differ from the reference"
import json, sys
ref = json.load(open(sys.argv[1]))["cases"]
out = [json.loads(l) for l in open(sys.argv[2])]
assert [o["index"] for o in out] == list(range(len(ref))), [o["index"] for o in out]
for c, o in zip(ref, out):
    assert o["completion_ids"] == c["tokens"], (c["text"], o["completion_ids"], c["tokens"])
    assert o["prompt"] == c["text"] and o["id"] == c["text"][:5]
    assert o["prompt_tokens"] == len(c["prompt_ids"]) and o["completion_tokens"] == len(c["tokens"])
    assert o["finish_reason"] == "length" and o["tokens_per_s"] > 0
EOF
grep -q "generated tokens/s" "$work/g4.log" && ok "summary line with tokens/s" || bad "no summary: $(cat "$work/g4.log")"
"$bin" generate --ckpt "$work/run/ckpt/step_00000000" --input "$work/ref.jsonl" --output "$work/g1.jsonl" \
  --max-new-tokens 24 --batch-size 1 --prefill-chunk 5 2> /dev/null
[[ $(untimed "$work/g1.jsonl") == "$(untimed "$work/g4.jsonl")" ]] && ok "batch 1, prefill chunks of 5: the same JSONL" \
  || bad "batch 1 differs"

# --prompt streams the completion's text; --json prints the record instead
first=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["prompt"])' "$work/ref.jsonl")
"$bin" generate --ckpt "$work/run" --prompt "$first" --max-new-tokens 24 --json 2> /dev/null > "$work/p.jsonl"
python3 - "$work/p.jsonl" "$work/g4.jsonl" <<'EOF' && ok "--prompt --json: the same record as the file's first" || bad "--prompt --json differs"
import json, sys
a, b = json.loads(open(sys.argv[1]).readline()), json.loads(open(sys.argv[2]).readline())
for k in ("completion", "completion_ids", "finish_reason", "prompt_tokens"):
    assert a[k] == b[k], k
EOF
"$bin" generate --ckpt "$work/run" --prompt "$first" --max-new-tokens 24 2> /dev/null > "$work/stream.txt"
python3 - "$work/stream.txt" "$work/p.jsonl" <<'EOF' && ok "--prompt streams the completion's text" || bad "streamed text differs"
import json, sys
streamed = open(sys.argv[1], encoding="utf-8", errors="replace").read()
assert streamed == json.loads(open(sys.argv[2]).readline())["completion"] + "\n", repr(streamed)
EOF

# ---- data parallel: mpirun ranks split the prompts; the output is complete, in order, identical ----
for i in $(seq 1 7); do echo "{\"prompt\": \"The river $i carries\"}"; done > "$work/seven.jsonl"
cat "$work/ref.jsonl" >> "$work/seven.jsonl"
if command -v mpirun > /dev/null; then
  if [[ $(id -u) -eq 0 ]]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
  mpi=(mpirun --oversubscribe --bind-to none)
  for mode in greedy sampled; do
    extra=(); [[ $mode == sampled ]] && extra=(--temperature 0.8 --top-p 0.9 --top-k 40 --repetition-penalty 1.1 --seed 5)
    for np in 1 2 3; do
      "${mpi[@]}" -np $np "$bin" generate --ckpt "$work/run" --input "$work/seven.jsonl" --output "$work/$mode$np.jsonl" \
        --max-new-tokens 16 --batch-size 3 "${extra[@]}" 2> "$work/$mode$np.log" || bad "mpirun -np $np: $(cat "$work/$mode$np.log")"
    done
    [[ $(wc -l < "$work/${mode}1.jsonl") -eq 11 ]] && [[ $(untimed "$work/${mode}2.jsonl") == "$(untimed "$work/${mode}1.jsonl")" ]] \
      && [[ $(untimed "$work/${mode}3.jsonl") == "$(untimed "$work/${mode}1.jsonl")" ]] \
      && ok "$mode: mpirun -np 2 and -np 3 write the same 11 records as -np 1" || bad "$mode: dp outputs differ"
  done
  grep -q "on 3 ranks" "$work/greedy3.log" && ok "summary counts the ranks" || bad "$(cat "$work/greedy3.log")"

  # ---- tensor parallel: the fixture (4 heads, 2 kv heads, 88 features, vocab 320) splits over tp 2 ----
  for mode in greedy sampled; do
    extra=(); [[ $mode == sampled ]] && extra=(--temperature 0.8 --top-p 0.9 --top-k 40 --repetition-penalty 1.1 --seed 5)
    for np in 2 4; do
      "${mpi[@]}" -np $np "$bin" generate --ckpt "$work/run" --input "$work/seven.jsonl" --output "$work/${mode}tp$np.jsonl" \
        --max-new-tokens 16 --batch-size 3 --tp 2 "${extra[@]}" 2> "$work/${mode}tp$np.log" \
        || bad "mpirun -np $np --tp 2: $(cat "$work/${mode}tp$np.log")"
      [[ $(untimed "$work/${mode}tp$np.jsonl") == "$(untimed "$work/${mode}1.jsonl")" ]] \
        && ok "$mode: mpirun -np $np --tp 2 writes the same 11 records as one process" || bad "$mode: -np $np --tp 2 differs"
    done
  done
  counts() { grep -o "[0-9]* prompt + [0-9]* generated" "$1"; }
  grep -q "on 4 ranks (tp 2 x dp 2)" "$work/greedytp4.log" && [[ -n $(counts "$work/greedy1.log") ]] \
    && [[ $(counts "$work/greedytp4.log") == "$(counts "$work/greedy1.log")" ]] \
    && ok "tp summary: the layout, each token counted once" || bad "$(cat "$work/greedytp4.log")"
  "${mpi[@]}" -np 2 "$bin" generate --ckpt "$work/run" --prompt "$first" --max-new-tokens 24 --tp 2 2> /dev/null \
    > "$work/stream_tp.txt"
  cmp -s "$work/stream_tp.txt" "$work/stream.txt" && ok "--prompt --tp 2 streams the same text, once" \
    || bad "tp stream differs: $(cat "$work/stream_tp.txt")"
  expect_fail 1 "num_key_value_heads = 2 does not divide by --tp 4" -- \
    "${mpi[@]}" -np 4 "$bin" generate --ckpt "$work/run" --prompt hi --tp 4
  cmp -s <(untimed "$work/greedy1.jsonl") <(untimed "$work/sampled1.jsonl") && bad "sampling changed nothing" \
    || ok "sampling gives other completions than greedy"
else
  echo "no mpirun: the data-parallel checks are skipped"
fi

# ---- endings ----
"$bin" generate --ckpt "$work/run" --input "$work/ref.jsonl" --output "$work/short.jsonl" --max-new-tokens 3 2> /dev/null
python3 -c 'import json,sys
assert all(json.loads(l)["completion_tokens"] == 3 and json.loads(l)["finish_reason"] == "length" for l in open(sys.argv[1]))' \
  "$work/short.jsonl" && ok "--max-new-tokens 3: three tokens, finish_reason length" || bad "max-new-tokens"
stop=$(python3 -c 'import json,sys
c = json.loads(open(sys.argv[1]).readlines()[2])["completion"]; print(c[len(c) // 2:len(c) // 2 + 2])' "$work/g4.jsonl")
"$bin" generate --ckpt "$work/run" --input "$work/ref.jsonl" --output "$work/stop.jsonl" --max-new-tokens 24 \
  --stop "$stop" --stop "never-seen" 2> /dev/null
python3 - "$work/stop.jsonl" "$work/g4.jsonl" "$stop" <<'EOF' && ok "--stop: the completion ends before the stop string, finish_reason stop" || bad "stop string"
import json, sys
a = json.loads(open(sys.argv[1]).readlines()[2]); b = json.loads(open(sys.argv[2]).readlines()[2]); stop = sys.argv[3]
assert a["finish_reason"] == "stop", a
assert a["completion"] == b["completion"][:b["completion"].index(stop)], (a["completion"], b["completion"], stop)
EOF

# ---- chat ----
expect_fail 1 "holds no chat template.*--template" -- "$bin" generate --ckpt "$work/run" --chat --prompt "hi"
printf '%s\n' '{"instruction": "Name a river", "output": "The Nile"}' \
  '{"messages": [{"role": "system", "content": "Be brief"}, {"role": "user", "content": "Hello"}]}' \
  '{"prompt": "a grey cat"}' > "$work/chat.jsonl"
echo '{"system_format": "{system}\n", "user_format": "Q: {content}\n", "assistant_format": "A: {content}"}' > "$work/qa.json"
"$bin" generate --ckpt "$work/run" --chat --template "$work/qa.json" --input "$work/chat.jsonl" --output "$work/chat.out" \
  --max-new-tokens 4 2> "$work/chat.log"
python3 -c 'import json,sys
r = [json.loads(l) for l in open(sys.argv[1])]
assert [x["prompt"] for x in r] == ["Name a river", "Hello", "a grey cat"], r
assert r[0]["reference"] == "The Nile" and "reference" not in r[1], r
assert r[2]["prompt_tokens"] > 12, r  # "Q: a grey cat\nA: " is longer than BOS + "a grey cat" (12 ids)' \
  "$work/chat.out" \
  && ok "--chat --template FILE: Alpaca records, conversations and prompts; the record answer kept as reference" \
  || bad "chat: $(cat "$work/chat.log")"

# ---- bad input ----
expect_fail 1 "missing.jsonl: cannot open" -- "$bin" generate --ckpt "$work/run" --input "$work/missing.jsonl"
printf '{"prompt": "fine"}\n{"prompt": broken\n' > "$work/bad.jsonl"
expect_fail 1 "bad.jsonl:2: not valid JSON" -- "$bin" generate --ckpt "$work/run" --input "$work/bad.jsonl"
printf '{"prompt": "fine"}\n\n{"text": "no prompt"}\n' > "$work/noprompt.jsonl"
expect_fail 1 "noprompt.jsonl:3: no \"prompt\" field" -- "$bin" generate --ckpt "$work/run" --input "$work/noprompt.jsonl"
long=$(printf 'the river %.0s' $(seq 1 40))
echo "{\"prompt\": \"$long\"}" > "$work/long.jsonl"
expect_fail 1 "long.jsonl:1: the prompt has [0-9]+ tokens; the model's max_position_embeddings is 64" -- \
  "$bin" generate --ckpt "$work/run" --input "$work/long.jsonl"
expect_fail 1 "--tp 2 does not divide the 1 launched ranks" -- "$bin" generate --ckpt "$work/run" --prompt hi --tp 2
expect_fail 1 "exactly one of --prompt" -- "$bin" generate --ckpt "$work/run" --prompt hi --input "$work/ref.jsonl"
expect_fail 1 "--top-p 1.5" -- "$bin" generate --ckpt "$work/run" --prompt hi --temperature 1 --top-p 1.5
expect_fail 1 "neither a checkpoint step directory" -- "$bin" generate --ckpt "$work/nothing" --prompt hi
"$bin" generate --help | grep -q -- "--repetition-penalty" && ok "--help" || bad "--help"
finish
