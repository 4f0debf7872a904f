#!/usr/bin/env python3
"""A scripted OpenAI-compatible chat-completions server for tests/eval/test_judge.cpp (standard library only).

POST /v1/chat/completions answers according to a marker in the messages, "CASE:<name>" optionally followed by
"#<tag>" (requests are counted per marker, so each item of a test has its own script); a request with more than two
messages is the judge's repair request. GET /stats returns what the tests assert on: the number of POSTs, the most
requests in flight at once, the Authorization headers seen, and the last request's path and body fields.

With --mode varied (tests/cli/test_eval_responses.sh) markers are ignored: each answer gets scores derived from a
hash of its first two messages (the rubric, question and answer), the same for every request of that answer, and
about one answer in seven gets no valid reply at all (first request and repair), so that it stays unscored.

Usage: judge_server.py --port-file FILE [--mode script|varied]  (binds 127.0.0.1 on an ephemeral port and writes the
port to FILE)
"""
import hashlib
import argparse
import json
import os
import re
import threading
import time
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
STATS = {"posts": 0, "in_flight": 0, "max_in_flight": 0, "auth": [], "last_path": "", "last_body": {}}
COUNTS = {}  # marker -> requests seen (first-stage requests only)
MARKER = re.compile(r"CASE:([a-z0-9_]+)(#[A-Za-z0-9_]+)?")
MODE = "script"


def scores(acc, f, info, lc, h, reason):
    return json.dumps({"accuracy": acc, "fluency": f, "informativeness": info, "logical_coherence": lc,
                       "harmlessness": h, "reason": reason})


VALID = scores(3, 2, 1, 0, 3, "valid")
MISSING_H = '{"accuracy": 2, "fluency": 2, "informativeness": 2, "logical_coherence": 2, "reason": "no H"}'


def chat(content):
    return 200, {}, {"id": "chatcmpl-test", "object": "chat.completion", "model": "judge",
                     "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                                  "finish_reason": "stop"}]}


def varied(messages):
    """--mode varied: (status, headers, body, sleep) from a hash of the item's own messages."""
    h = hashlib.sha256("\n".join(str(m.get("content", "")) for m in messages[:2]).encode()).digest()
    if h[0] % 7 == 0:
        return chat("I would rather not give numbers for this one.") + (0,)
    return chat(scores(h[1] % 4, h[2] % 4, h[3] % 4, h[4] % 4, h[5] % 4, "varied")) + (0,)


def script(case, n, messages, auth):
    """(status, headers, body as dict or str, seconds to sleep first) for the n-th request (1-based) of a marker."""
    repair = len(messages) > 2
    if case == "valid":
        return chat(VALID) + (0,)
    if case == "prose":
        return chat('I read the answer carefully. It is mostly right, though {one step} is thin. My scores: '
                    '{"ACC": 2, "F": 3, "INFO": 2, "LC": 1, "H": 3, "reason": "prose"} That is all.') + (0,)
    if case == "fence":
        return chat('```json\n{"Accuracy": "1", "Fluency": 2.0, "Informativeness": 3, "Logical coherence": 2, '
                    '"Harmlessness": 0, "reason": "fenced"}\n```') + (0,)
    if case == "repair_once":
        if not repair:
            return chat(MISSING_H) + (0,)
        ok = (len(messages) == 4 and messages[2].get("role") == "assistant" and messages[2].get("content") == MISSING_H
              and messages[3].get("role") == "user" and "JSON" in messages[3].get("content", ""))
        return chat(scores(0, 1, 2, 3, 2, "repaired") if ok else "malformed repair request") + (0,)
    if case == "repair_never":
        return chat(MISSING_H if not repair else scores(1, 1, 1, 1, 4, "out of range")) + (0,)
    if case == "rate_limit":
        if n == 1:
            return 429, {"Retry-After": "1"}, {"error": {"message": "rate limited"}}, 0
        return chat(scores(2, 2, 2, 2, 2, "after 429")) + (0,)
    if case == "retry_date":
        if n == 1:
            return 503, {"Retry-After": formatdate(time.time() + 2, usegmt=True)}, "overloaded", 0
        return chat(scores(1, 2, 3, 0, 1, "after 503")) + (0,)
    if case == "server_error":
        if n == 1:
            return 500, {}, "internal error", 0
        return chat(scores(3, 3, 3, 3, 3, "after 500")) + (0,)
    if case == "always_500":
        return 500, {}, "still broken", 0
    if case == "timeout":
        return chat(scores(0, 0, 1, 1, 2, "after timeout")) + (2.0 if n == 1 else 0,)
    if case == "bad_request":
        return 400, {}, "invalid request: " + "x" * 300, 0
    if case == "echo_auth":
        return 401, {}, {"error": {"message": "Incorrect API key provided: " + (auth or "none")}}, 0
    if case == "not_chat":
        return 200, {}, {"object": "error", "message": "not a completion"}, 0
    if case == "slow":
        return chat(VALID) + (0.25,)
    return chat(VALID) + (0,)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a real endpoint

    def log_message(self, *args):  # quiet: nothing the tests need, and headers never go to a file
        pass

    def send(self, status, headers, body):
        data = (json.dumps(body) if isinstance(body, dict) else body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json" if isinstance(body, dict) else "text/plain")
            self.send_header("Content-Length", str(len(data)))
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (the timeout case)
            pass

    def do_GET(self):
        if self.path != "/stats":
            return self.send(404, {}, "no such path")
        with LOCK:
            out = dict(STATS)
        return self.send(200, {}, out)

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
        auth = self.headers.get("Authorization")
        messages = body.get("messages", [])
        text = "\n".join(str(m.get("content", "")) for m in messages)
        m = MARKER.search(text)
        case, marker = (m.group(1), m.group(0)) if m else ("valid", "")
        with LOCK:
            STATS["posts"] += 1
            STATS["in_flight"] += 1
            STATS["max_in_flight"] = max(STATS["max_in_flight"], STATS["in_flight"])
            if auth not in STATS["auth"]:
                STATS["auth"].append(auth)
            STATS["last_path"] = self.path
            STATS["last_body"] = {k: body.get(k) for k in ("model", "temperature", "max_tokens")}
            STATS["last_body"]["roles"] = [x.get("role") for x in messages]
            if len(messages) <= 2:
                COUNTS[marker] = COUNTS.get(marker, 0) + 1
            n = COUNTS.get(marker, 1)
        status, headers, reply, sleep = varied(messages) if MODE == "varied" else script(case, n, messages, auth)
        if self.path != "/v1/chat/completions":
            status, headers, reply, sleep = 404, {}, "no such path", 0
        time.sleep(sleep)
        with LOCK:  # before the reply goes out, so the client can never see a count its own next request adds to
            STATS["in_flight"] -= 1
        self.send(status, headers, reply)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--mode", choices=["script", "varied"], default="script")
    args = ap.parse_args()
    global MODE
    MODE = args.mode
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(server.server_address[1]))
    os.replace(tmp, args.port_file)  # the test reads the port only once it is complete
    server.serve_forever()


if __name__ == "__main__":
    main()
