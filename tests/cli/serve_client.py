#!/usr/bin/env python3
"""A small OpenAI-API client for the serve tests and benchmark (standard library only).

  serve_client.py requests OUT.jsonl                      the test's 16 requests (prompts, settings), one per line
  serve_client.py run PORT REQUESTS.jsonl OUT.jsonl [KEY]  sends them all at once (one thread each); half streamed,
                                                          the other half sent again streamed for the comparison
  serve_client.py compare OUT.jsonl GENERATED_DIR          each answer equals `generate`'s for the same prompt alone
  serve_client.py errors PORT                              the refusals: 400s, 413, unknown fields ignored
  serve_client.py bench PORT CLIENTS TOKENS PROMPTS        tokens/s with CLIENTS concurrent clients (one line of JSON)
"""
import json
import sys
import threading
import time
import http.client

WORDS = ["the mill", "a heron", "coins", "the weir", "sacks", "river", "ledger", "miller", "stone", "water"]


def post(port, path, body, key=None, raw=None, stream=False):
    """(status, parsed JSON or list of SSE events, raw text) of one request."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = "Bearer " + key
    conn.request("POST", path, body=raw if raw is not None else json.dumps(body), headers=headers)
    resp = conn.getresponse()
    text = resp.read().decode("utf-8")
    conn.close()
    if stream and resp.status == 200:
        assert resp.getheader("Content-Type", "").startswith("text/event-stream"), resp.getheader("Content-Type")
        events = [line[len("data: "):] for line in text.split("\n") if line.startswith("data: ")]
        assert events and events[-1] == "[DONE]", text[-200:]
        return resp.status, [json.loads(e) for e in events[:-1]], text
    try:
        return resp.status, json.loads(text), text
    except ValueError:
        return resp.status, None, text


def get(port, path, key=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("GET", path, headers={"Authorization": "Bearer " + key} if key else {})
    resp = conn.getresponse()
    text = resp.read().decode("utf-8")
    return resp.status, json.loads(text)


def make_requests(out):
    """16 requests of different prompt lengths and settings: greedy and sampled, stop strings, chat."""
    reqs = []
    for i in range(16):
        prompt = " ".join(WORDS[(i * 3 + k) % len(WORDS)] for k in range(1 + (i * 5) % 23))
        r = {"i": i, "prompt": prompt, "max_tokens": 8 + (i * 7) % 40, "temperature": 0.0}
        if i % 4 == 1:
            r.update(temperature=0.8, top_p=0.9, seed=100 + i)
        if i % 4 == 2:
            r.update(temperature=1.0, top_k=20, seed=7 + i)
        if i % 5 == 3:
            r["stop"] = ["e"]
        if i % 6 == 5:
            r["chat"] = True
        reqs.append(r)
    with open(out, "w") as f:
        for r in reqs:
            f.write(json.dumps(r) + "\n")


def body_of(r, stream):
    b = {"model": "anything", "max_tokens": r["max_tokens"], "temperature": r["temperature"], "stream": stream,
         "unknown_field": {"ignored": True}}
    for k in ("top_p", "top_k", "seed", "stop"):
        if k in r:
            b[k] = r[k]
    if r.get("chat"):
        b["messages"] = [{"role": "user", "content": r["prompt"]}]
        if stream:
            b["stream_options"] = {"include_usage": True}
    else:
        b["prompt"] = r["prompt"]
    return b


def one(port, r, stream, key, results, slot):
    path = "/v1/chat/completions" if r.get("chat") else "/v1/completions"
    status, data, raw = post(port, path, body_of(r, stream), key=key, stream=stream)
    assert status == 200, (status, raw)
    if not stream:
        c = data["choices"][0]
        text = c["message"]["content"] if r.get("chat") else c["text"]
        assert c["message"]["role"] == "assistant" if r.get("chat") else True
        results[slot] = {"i": r["i"], "text": text, "finish": c["finish_reason"], "usage": data["usage"]}
        return
    text, finish, usage = "", None, None
    for k, ev in enumerate(data):
        if ev["choices"]:
            c = ev["choices"][0]
            if r.get("chat"):
                if k == 0:
                    assert c["delta"].get("role") == "assistant", ev
                text += c["delta"].get("content", "")
            else:
                text += c["text"]
            if c["finish_reason"]:
                finish = c["finish_reason"]
        if "usage" in ev:
            usage = ev["usage"]
    results[slot] = {"i": r["i"], "text": text, "finish": finish, "usage": usage, "events": len(data)}


def run(port, reqs_path, out, key=None):
    reqs = [json.loads(l) for l in open(reqs_path)]
    # Every request at once, half of them streamed; then each streamed one again unstreamed and vice versa, also
    # all at once, so each request has a streamed and an unstreamed answer to compare.
    rounds = []
    for flip in (0, 1):
        results = [None] * len(reqs)
        threads = [threading.Thread(target=one, args=(port, r, (r["i"] + flip) % 2 == 1, key, results, s))
                   for s, r in enumerate(reqs)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert all(results), "a request failed (see the traceback above)"
        rounds.append(results)
    with open(out, "w") as f:
        for a, b in zip(*rounds):
            streamed, plain = (a, b) if "events" in a else (b, a)
            assert streamed["text"] == plain["text"], ("streamed chunks differ from the answer", a, b)
            assert streamed["finish"] == plain["finish"], (a, b)
            f.write(json.dumps(plain) + "\n")


def compare(out, gen_dir):
    """Each answer equals `generate`'s (gen_dir/<i>.json: its --json record for the prompt alone)."""
    n = 0
    for line in open(out):
        a = json.loads(line)
        g = json.loads(open(f"{gen_dir}/{a['i']}.json").readline())
        assert a["text"] == g["completion"], (a["i"], a["text"], g["completion"])
        want = "length" if g["finish_reason"] == "length" else "stop"
        assert a["finish"] == want, (a["i"], a["finish"], g["finish_reason"])
        assert a["usage"]["completion_tokens"] == g["completion_tokens"], (a, g)
        assert a["usage"]["prompt_tokens"] == g["prompt_tokens"], (a, g)
        n += 1
    assert n == 16, n
    print(f"{n} answers equal generate's")


def errors(port):
    def status_of(path, body=None, raw=None):
        return post(port, path, body, raw=raw)[0]
    checks = [
        ("malformed JSON", status_of("/v1/completions", raw="{not json"), 400),
        ("body not an object", status_of("/v1/completions", raw="[1, 2]"), 400),
        ("no prompt", status_of("/v1/completions", {"max_tokens": 3}), 400),
        ("n = 2", status_of("/v1/completions", {"prompt": "a", "n": 2}), 400),
        ("logprobs", status_of("/v1/completions", {"prompt": "a", "logprobs": 5}), 400),
        ("negative temperature", status_of("/v1/completions", {"prompt": "a", "temperature": -1}), 400),
        ("max_tokens 0", status_of("/v1/completions", {"prompt": "a", "max_tokens": 0}), 400),
        ("prompt longer than the context", status_of("/v1/completions", {"prompt": "the mill " * 400}), 400),
        ("token id outside the vocabulary", status_of("/v1/completions", {"prompt": [1, 10 ** 7]}), 400),
        ("empty messages", status_of("/v1/chat/completions", {"messages": []}), 400),
        ("conversation ending in an assistant turn",
         status_of("/v1/chat/completions", {"messages": [{"role": "user", "content": "a"},
                                                         {"role": "assistant", "content": "b"}]}), 400),
        ("body over --max-body", status_of("/v1/completions", raw=json.dumps({"prompt": "x" * (2 << 20)})), 413),
        ("unknown fields ignored", status_of("/v1/completions", {"prompt": "a", "max_tokens": 2, "foo": [1]}), 200),
        ("token ids as the prompt", status_of("/v1/completions", {"prompt": [1, 5, 6], "max_tokens": 2}), 200),
    ]
    bad = [(what, got, want) for what, got, want in checks if got != want]
    assert not bad, bad
    status, body, _ = post(port, "/v1/completions", None, raw="{not json")
    assert "not valid JSON" in body["error"]["message"], body
    status, body, _ = post(port, "/v1/completions", {"prompt": "the mill " * 400})
    assert "context" in body["error"]["message"], body
    print(f"{len(checks)} refusals and acceptances as specified")


def bench(port, clients, tokens, prompts):
    """Generated tokens/s over `prompts` requests with `clients` in flight at a time (greedy, ignoring nothing)."""
    lock = threading.Lock()
    todo = list(range(prompts))
    counts = []

    def worker():
        while True:
            with lock:
                if not todo:
                    return
                i = todo.pop()
            prompt = " ".join(WORDS[(i + k) % len(WORDS)] for k in range(20))
            status, data, raw = post(port, "/v1/completions",
                                     {"prompt": prompt, "max_tokens": tokens, "temperature": 0.7, "seed": i})
            assert status == 200, raw
            with lock:
                counts.append(data["usage"]["completion_tokens"])
    t0 = time.time()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    secs = time.time() - t0
    print(json.dumps({"clients": clients, "requests": prompts, "generated_tokens": sum(counts), "seconds": round(secs, 3),
                      "tokens_per_s": round(sum(counts) / secs, 1)}))


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "requests":
        make_requests(args[0])
    elif cmd == "run":
        run(int(args[0]), args[1], args[2], args[3] if len(args) > 3 else None)
    elif cmd == "compare":
        compare(args[0], args[1])
    elif cmd == "errors":
        errors(int(args[0]))
    elif cmd == "bench":
        bench(int(args[0]), int(args[1]), int(args[2]), int(args[3]))
    else:
        sys.exit(__doc__)
