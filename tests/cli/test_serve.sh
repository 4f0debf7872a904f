#!/usr/bin/env bash
# `polyllama serve` end to end, on 127.0.0.1 with servers this test starts and stops by PID:
#   16 concurrent requests (greedy and sampled, stop strings, chat, different lengths; more than --max-batch, so
#   requests queue, join the running batch and leave it) each get exactly the completion `generate` gives for that
#   prompt and those settings alone, and their streamed chunks concatenate to the unstreamed answer; the README's
#   curl examples work; bad requests get 400/413 with a message; with a key, requests without it get 401 and the
#   key appears in no output; SIGTERM while requests run loses none of them and exits 0; mpirun -np 2 --tp 2
#   serves the answers of one process.
# Usage: test_serve.sh POLYLLAMA_BINARY
source "$(dirname "$0")/lib.sh" "$@"
here=$(cd "$(dirname "$0")" && pwd)
export OMP_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
client() { python3 "$here/serve_client.py" "$@"; }
pids=()
trap 'for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done; rm -rf "$work"' EXIT

ledger_text "$work/text.txt" 60
"$bin" tokenizer train --input "$work/text.txt" --vocab-size 300 --out "$work/tok.model" > /dev/null 2>&1 || bad "tokenizer"
"$bin" init --run-dir "$work/run" --tokenizer "$work/tok.model" --preset tiny --max-position-embeddings 256 \
  --seed 5 > /dev/null 2>&1 || bad "init"

# start_server NAME [serve options...]: starts a server on a free port, waits until it answers, sets port.
start_server() {
  local name=$1; shift
  rm -f "$work/$name.port"
  "$@" --port 0 --port-file "$work/$name.port" > "$work/$name.log" 2>&1 &
  pids+=($!); spid=$!
  for _ in $(seq 1 100); do [[ -s "$work/$name.port" ]] && break; sleep 0.1; done
  port=$(cat "$work/$name.port" 2>/dev/null)
  [[ -n "$port" ]] && curl -sf "http://127.0.0.1:$port/health" > /dev/null
}

# ---- 16 concurrent requests against `generate` alone ----
client requests "$work/reqs.jsonl"
mkdir -p "$work/gen"
while read -r line; do
  args=$(python3 -c 'import json,sys,shlex
r = json.loads(sys.argv[1]); a = ["--prompt", r["prompt"], "--max-new-tokens", str(r["max_tokens"]),
  "--temperature", str(r["temperature"])]
for k, f in (("top_p", "--top-p"), ("top_k", "--top-k"), ("seed", "--seed")):
    if k in r: a += [f, str(r[k])]
for s in r.get("stop", []): a += ["--stop", s]
if r.get("chat"): a += ["--chat", "--template", "plain"]
print(r["i"], " ".join(shlex.quote(x) for x in a))' "$line")
  i=${args%% *}
  eval "\"$bin\" generate --ckpt \"$work/run\" ${args#* } --json" > "$work/gen/$i.json" 2> /dev/null || bad "generate $i"
done < "$work/reqs.jsonl"

start_server s1 "$bin" serve --ckpt "$work/run" --template plain --max-batch 4 --max-body 1 &&
  ok "serve starts on a free port and answers /health" || bad "serve did not start: $(cat "$work/s1.log")"
client run "$port" "$work/reqs.jsonl" "$work/answers.jsonl" && ok "16 concurrent requests, streamed and not" ||
  bad "concurrent requests"
client compare "$work/answers.jsonl" "$work/gen" &&
  ok "each answer (text, finish_reason, usage) equals generate's for the prompt alone; streams concatenate to it" ||
  bad "answers differ from generate's"
client errors "$port" && ok "bad requests: 400/413 with messages; unknown fields ignored" || bad "refusals"
models=$(curl -s "http://127.0.0.1:$port/v1/models")
[[ $models == *'"id":"run"'* && $models == *'"max_model_len":256'* ]] && ok "/v1/models names the model" ||
  bad "/v1/models: $models"

# ---- the README's curl examples ----
c1=$(curl -s "http://127.0.0.1:$port/v1/completions" -H 'Content-Type: application/json' \
  -d '{"prompt": "Once upon a time", "max_tokens": 32, "temperature": 0}')
c2=$(curl -s "http://127.0.0.1:$port/v1/chat/completions" -H 'Content-Type: application/json' \
  -d '{"messages": [{"role": "user", "content": "Name three rivers."}], "max_tokens": 64}')
c3=$(curl -sN "http://127.0.0.1:$port/v1/completions" -H 'Content-Type: application/json' \
  -d '{"prompt": "Once upon a time", "max_tokens": 16, "stream": true}')
[[ $c1 == *'"text_completion"'* && $c1 == *'"completion_tokens":32'* && $c2 == *'"chat.completion"'* &&
   $c3 == *'data: [DONE]'* ]] && ok "the README's curl examples" || bad "curl examples: $c1 | $c2 | ${c3: -200}"

# ---- SIGTERM while requests run: every one of them completes, then exit 0 ----
python3 - "$port" > "$work/drain.out" 2>&1 <<'EOF' &
import json, sys, threading, http.client
port = int(sys.argv[1])
out = [None] * 6
def go(i):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    c.request("POST", "/v1/completions", body=json.dumps({"prompt": "the mill " * (i + 1), "max_tokens": 120,
              "temperature": 0.5, "seed": i}), headers={"Content-Type": "application/json"})
    r = c.getresponse(); out[i] = (r.status, json.loads(r.read()))
ts = [threading.Thread(target=go, args=(i,)) for i in range(6)]
[t.start() for t in ts]; [t.join() for t in ts]
for s, d in out:  # a completion ends at its 120 tokens or at EOS, never cut short
    ok = s == 200 and (d["choices"][0]["finish_reason"], d["usage"]["completion_tokens"] == 120) in (("length", True), ("stop", False))
    print("complete" if ok else ("incomplete", s, d))
EOF
drain=$!
sleep 0.5
kill -TERM "$spid"
wait "$spid"; rc=$?
wait "$drain"
[[ $rc -eq 0 && $(grep -c '^complete$' "$work/drain.out") -eq 6 ]] &&
  ok "SIGTERM during 6 requests: all 6 complete (120 tokens or EOS), exit 0" ||
  bad "SIGTERM: rc $rc, $(cat "$work/drain.out")"
grep -q "stopping: finishing" "$work/s1.log" && ok "the drain is logged" || bad "no drain line: $(tail -3 "$work/s1.log")"

# ---- an API key: 401 without it, and the key in no output ----
secret="sk-polyllama-test-$RANDOM$RANDOM"
export PL_TEST_KEY=$secret
start_server s2 "$bin" serve --ckpt "$work/run" --template plain --api-key-env PL_TEST_KEY ||
  bad "serve with a key did not start: $(cat "$work/s2.log")"
no_key=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/v1/completions" -d '{"prompt": "a"}')
wrong=$(curl -s -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer nope' "http://127.0.0.1:$port/v1/models")
right=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $secret" "http://127.0.0.1:$port/v1/models")
health=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/health")
[[ $no_key == 401 && $wrong == 401 && $right == 200 && $health == 200 ]] &&
  ok "API key: 401 without or with a wrong key, 200 with it; /health open" ||
  bad "API key: $no_key $wrong $right $health"
kill -TERM "$spid"; wait "$spid"
! grep -rq "$secret" "$work" && ok "the key appears in no file or log" || bad "the key leaked"
unset PL_TEST_KEY

# ---- tensor parallel: rank 0 serves, the group decodes together ----
if command -v mpirun > /dev/null; then
  start_server tp2 mpirun --oversubscribe -np 2 "$bin" serve --ckpt "$work/run" --template plain --tp 2 ||
    bad "serve --tp 2 did not start: $(cat "$work/tp2.log")"
  client run "$port" "$work/reqs.jsonl" "$work/answers_tp2.jsonl" && client compare "$work/answers_tp2.jsonl" "$work/gen" &&
    ok "mpirun -np 2 serve --tp 2: the same 16 answers" || bad "tp 2 answers differ"
  # SIGTERM to the ranks, as Slurm signals a job's tasks (mpirun itself reports a signal it received as exit 1)
  kill -TERM $(pgrep -P "$spid"); wait "$spid"; rc=$?
  [[ $rc -eq 0 ]] && ok "tp 2 server drains and exits 0 on SIGTERM to its ranks" || bad "tp 2 exit $rc: $(tail -5 "$work/tp2.log")"
fi
expect_fail 1 "launch exactly --tp ranks" -- "$bin" serve --ckpt "$work/run" --tp 2
expect_fail 1 "no-such-run" -- "$bin" serve --ckpt "$work/no-such-run"
finish
