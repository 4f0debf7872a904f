#!/usr/bin/env bash
# `polyllama eval --tasks responses` end to end, with a tiny random checkpoint and servers this test starts and stops
# by PID on 127.0.0.1 (every figure checked is recomputed by eval_responses_check.py from responses.jsonl):
#   (a) the answers equal `generate --chat --template plain` on the same records and settings, greedy on the 51
#       instructions of share/responses/zh_instructions.jsonl and sampled on a small file, and mpirun -np 2 writes
#       the same responses.jsonl (timing aside); without a judge the scores are null and results.md says so;
#   (b) judged by a scripted server (tests/eval/judge_server.py --mode varied: scores from a hash of each answer,
#       about one answer in seven never validly scored): results.json's means and standard errors per category and
#       overall, the counts and the results.md table equal a count over responses.jsonl;
#   (c) judged by `polyllama serve` of the same checkpoint (its replies are no scores): every answer unscored after
#       the repair request, exit 0, means null;
#   (d) --judge-only on (a)'s answers with (b)'s cache sends no request and gives (b)'s scores; into a directory
#       with other results it keeps them and replaces the responses task's;
#   (e) the code-switching counts, rates and examples per language and category equal a count over responses.jsonl;
#   (f) bad input exits 1 naming FILE:LINE or the fix;
#   and the API key, exported for (b), appears in no file or log.
# Usage: test_eval_responses.sh POLYLLAMA_BINARY
source "$(dirname "$0")/lib.sh" "$@"
here=$(cd "$(dirname "$0")" && pwd)
export OMP_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
check() { python3 "$here/eval_responses_check.py" "$@"; }
zh51="$here/../../share/responses/zh_instructions.jsonl"
pids=()
trap 'for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done; rm -rf "$work"' EXIT
unset OPENAI_API_KEY

# A context long enough for the judge's rubric when `serve` judges (c).
ledger_text "$work/text.txt" 60
"$bin" tokenizer train --input "$work/text.txt" --vocab-size 300 --out "$work/tok.model" > /dev/null 2>&1 || bad "tokenizer"
"$bin" init --run-dir "$work/run" --tokenizer "$work/tok.model" --preset tiny --max-position-embeddings 4096 \
  --seed 5 > /dev/null 2>&1 || bad "init"
check instructions "$work/small.jsonl"
ev=("$bin" eval --ckpt "$work/run" --tasks responses --template plain)

# ---- (a) the answers: generate --chat's, on any number of ranks ----
greedy=(--responses "$zh51" --max-new-tokens 8 --batch-size 5)
"${ev[@]}" "${greedy[@]}" --cs-allow none --tasks responses,ppl --ppl-files xx:"$work/text.txt" --ppl-seq 64 \
  --out "$work/a1" > "$work/a1.log" 2>&1 && ok "eval --tasks responses,ppl (51 instructions, greedy, no judge)" ||
  bad "eval: $(tail -3 "$work/a1.log")"
"$bin" generate --ckpt "$work/run" --chat --template plain --input "$zh51" --max-new-tokens 8 \
  --output "$work/g51.jsonl" 2> /dev/null || bad "generate --chat"
check generate "$work/a1/responses.jsonl" "$work/g51.jsonl" && ok "51 greedy answers equal generate --chat's" ||
  bad "greedy answers differ from generate's"
grep -q "eval: responses: rank 0 51/51 answers | .* answers/s | ETA" "$work/a1.log" && ok "progress line with rate and ETA" ||
  bad "no progress line: $(grep responses "$work/a1.log")"
check unjudged "$work/a1" && ok "no judge: answers and code-switching written, scores absent" || bad "unjudged output"
check code-switch "$work/a1" none && ok "(e) --cs-allow none: code-switching figures equal a count" ||
  bad "code-switching figures (allow none)"
sampled=(--responses "$work/small.jsonl" --max-new-tokens 12 --batch-size 2 --temperature 0.8 --top-p 0.9 --seed 5)
"${ev[@]}" "${sampled[@]}" --out "$work/s1" > /dev/null 2>&1 || bad "eval sampled"
"$bin" generate --ckpt "$work/run" --chat --template plain --input "$work/small.jsonl" --max-new-tokens 12 \
  --temperature 0.8 --top-p 0.9 --seed 5 --output "$work/gs.jsonl" 2> /dev/null || bad "generate --chat sampled"
check generate "$work/s1/responses.jsonl" "$work/gs.jsonl" && ok "7 sampled answers equal generate --chat's" ||
  bad "sampled answers differ from generate's"
if command -v mpirun > /dev/null; then
  mpirun --oversubscribe -np 2 "${ev[@]}" "${greedy[@]}" --cs-allow none --out "$work/a2" > /dev/null 2>&1 ||
    bad "eval -np 2"
  mpirun --oversubscribe -np 2 "${ev[@]}" "${sampled[@]}" --out "$work/s2" > /dev/null 2>&1 || bad "eval -np 2 sampled"
  check same "$work/a1/responses.jsonl" "$work/a2/responses.jsonl" && check same "$work/s1/responses.jsonl" \
    "$work/s2/responses.jsonl" && ok "-np 2: responses.jsonl identical to one process (greedy and sampled)" ||
    bad "-np 2 answers differ"
fi

# ---- (b) a scripted judge, with an API key that must appear nowhere ----
start_judge() {  # NAME [server...]: starts a server on a free port, sets port and spid
  local name=$1; shift
  rm -f "$work/$name.port"
  "$@" > "$work/$name.log" 2>&1 &
  pids+=($!); spid=$!
  for _ in $(seq 1 100); do [[ -s "$work/$name.port" ]] && break; sleep 0.1; done
  port=$(cat "$work/$name.port" 2>/dev/null)
  [[ -n "$port" ]]
}
posts() { python3 -c 'import json,sys,urllib.request
print(json.load(urllib.request.urlopen("http://127.0.0.1:%s/stats" % sys.argv[1]))["posts"])' "$1"; }
start_judge judge python3 "$here/../eval/judge_server.py" --mode varied --port-file "$work/judge.port" ||
  bad "judge server did not start"
jport=$port
secret="sk-polyllama-test-$RANDOM$RANDOM$RANDOM"
OPENAI_API_KEY=$secret "${ev[@]}" "${greedy[@]}" --judge-url "http://127.0.0.1:$jport/v1" --judge-model judge-test \
  --judge-concurrency 8 --out "$work/b" --json > "$work/b.json" 2> "$work/b.log" && ok "(b) eval with a scripted judge" ||
  bad "eval with a judge: $(tail -3 "$work/b.log")"
auth=$(python3 -c 'import json,sys,urllib.request
a = json.load(urllib.request.urlopen("http://127.0.0.1:%s/stats" % sys.argv[1]))["auth"]
print("ok" if a == ["Bearer " + sys.argv[2]] else "auth headers: %d" % len(a))' "$jport" "$secret")
[[ $auth == ok ]] && ok "the key went in the Authorization header" || bad "$auth"
check means "$work/b" && ok "(b) means, standard errors, counts and the results.md table equal a count" ||
  bad "judged figures"
check same <(python3 -c 'import json,sys
for l in open(sys.argv[1]): d = json.loads(l); print(json.dumps({k: d[k] for k in ("id", "answer", "seconds")}))' \
  "$work/b/responses.jsonl") <(python3 -c 'import json,sys
for l in open(sys.argv[1]): d = json.loads(l); print(json.dumps({k: d[k] for k in ("id", "answer", "seconds")}))' \
  "$work/a1/responses.jsonl") > /dev/null && ok "the judged run's answers are (a)'s" || bad "answers differ from (a)'s"
check code-switch "$work/b" && ok "(e) default allowed scripts: code-switching figures equal a count" ||
  bad "code-switching figures (default)"
grep -q "judge: 51 answers in .*: [0-9]* scored, [0-9]* unscored; 0 from the cache" "$work/b.log" &&
  grep -q "eval: responses: 51 answers; judge judge-test: [0-9]* scored" "$work/b.json" &&
  grep -q '"responses":{"AVG":' "$work/b.json" && ok "the judge's and eval's summary lines; --json summary" ||
  bad "judge log or summary: $(tail -3 "$work/b.log")"

# ---- (d) --judge-only: the cache answers everything ----
before=$(posts "$jport")
"$bin" eval --judge-only "$work/a1/responses.jsonl" --judge-url "http://127.0.0.1:$jport/v1" --judge-model judge-test \
  --judge-cache "$work/b/judge_cache.jsonl" --out "$work/d" > "$work/d.log" 2>&1 || bad "judge-only: $(tail -3 "$work/d.log")"
[[ $(posts "$jport") == "$before" ]] && check cached "$work/d" "$work/b" &&
  ok "(d) --judge-only with (b)'s cache: zero requests, (b)'s scores" || bad "judge-only sent requests or differs"
cp -r "$work/a1" "$work/m"
"$bin" eval --judge-only "$work/m/responses.jsonl" --judge-url "http://127.0.0.1:$jport/v1" --judge-model judge-test \
  --out "$work/m" > "$work/m.log" 2>&1 && check merged "$work/m" && check means "$work/m" > /dev/null &&
  ok "--judge-only into the run's directory: other results kept, the responses' replaced" ||
  bad "judge-only merge: $(tail -3 "$work/m.log")"
kill "$spid"; wait "$spid" 2> /dev/null

# ---- (c) polyllama serve as the judge: no valid scores, nothing breaks ----
start_judge serve "$bin" serve --ckpt "$work/run" --template plain --port 0 --port-file "$work/serve.port" ||
  bad "serve did not start: $(cat "$work/serve.log")"
"${ev[@]}" --responses "$work/small.jsonl" --max-new-tokens 4 --judge-url "http://127.0.0.1:$port/v1" \
  --judge-model run --judge-max-tokens 4 --judge-concurrency 4 --out "$work/c" > "$work/c.log" 2>&1 &&
  ok "(c) judged by polyllama serve: exit 0" || bad "eval against serve: $(tail -3 "$work/c.log")"
check unscored "$work/c" && ok "(c) every answer unscored after the repair request, means null" || bad "serve judge"
kill -TERM "$spid"; wait "$spid" 2> /dev/null

! grep -rqa "$secret" "$work" && ok "the API key appears in no file or log" || bad "the key leaked"

# ---- (f) bad input ----
printf '{"id": "x1", "category": "qa", "instruction": "Hi"}\n{"id": "x2", "category": \n' > "$work/bad1.jsonl"
printf '{"id": "x1", "category": "qa", "instruction": "Hi"}\n\n{"id": "x2", "category": "qa", "input": "a"}\n' \
  > "$work/bad2.jsonl"
printf '{"id": "x1", "category": "qa", "instruction": "Hi"}\n{"id": "x1", "category": "qa", "instruction": "Yo"}\n' \
  > "$work/bad3.jsonl"
printf '{"id": "x1", "category": "qa", "instruction": "Hi", "language": "klingon"}\n' > "$work/bad4.jsonl"
expect_fail 1 "bad1.jsonl:2: not valid JSON" -- "${ev[@]}" --responses "$work/bad1.jsonl" --out "$work/f"
expect_fail 1 "bad2.jsonl:3: missing field \"instruction\"" -- "${ev[@]}" --responses "$work/bad2.jsonl" --out "$work/f"
expect_fail 1 "bad3.jsonl:2: id \"x1\" repeats the id of .*bad3.jsonl:1" -- "${ev[@]}" --responses "$work/bad3.jsonl" \
  --out "$work/f"
expect_fail 1 "bad4.jsonl:1: \"language\": 'klingon'" -- "${ev[@]}" --responses "$work/bad4.jsonl" --out "$work/f"
expect_fail 1 "holds no chat template.*--template NAME" -- "$bin" eval --ckpt "$work/run" --tasks responses \
  --responses "$work/small.jsonl" --out "$work/f"
expect_fail 1 "needs --responses" -- "${ev[@]}" --out "$work/f"
expect_fail 1 "--judge-concurrency applies with --judge-url" -- "${ev[@]}" --responses "$work/small.jsonl" \
  --judge-concurrency 2 --out "$work/f"
expect_fail 1 "--judge-model: missing" -- "${ev[@]}" --responses "$work/small.jsonl" --judge-url http://x/v1 --out "$work/f"
expect_fail 1 "--judge-only needs the judge" -- "$bin" eval --judge-only "$work/a1/responses.jsonl" --out "$work/f"
expect_fail 1 "--temperature applies to --tasks responses" -- "$bin" eval --ckpt "$work/run" --tasks ppl \
  --ppl-files xx:"$work/text.txt" --temperature 0.5 --out "$work/f"
expect_fail 1 "code-switch allowed script 'Klingon'" -- "${ev[@]}" --responses "$work/small.jsonl" --cs-allow Klingon \
  --out "$work/f"
finish
