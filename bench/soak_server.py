"""Soak the retrieval server: mixed valid, malformed, oversize and disconnecting requests from many
clients on loopback, then check that valid requests are still answered correctly, that no reply
was a 5xx, and that the server's resident memory came back to where it was.

    python bench/soak_server.py [--corpus FILE] [--requests 10000] [--clients 32] [--json]

``r1searcher serve --index CORPUS`` runs as a child process on 127.0.0.1 (a free port); nothing
leaves the machine. Before the mix, 300 valid requests warm the server up and record reference
answers; RSS (VmRSS of the server process) is read after the warm-up and after the mix. The mix
(seeded): 45% valid (/queries and /retrieve), 30% malformed (bad JSON, wrong fields, a lone
surrogate, JSON nested 5,000 deep, a 5,000-digit integer, limits exceeded), 10% oversize
(Content-Length of 300 MB with no body, or a chunked body streamed until the server answers),
15% disconnecting (headers and part of the body, then the socket closed). Exit status 1 if any
reply was a 5xx, any valid answer differs from the reference, or RSS grew by more than 20%.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import select
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = REPO.parent / "shared" / "data" / "corpus" / "passages.jsonl"
KINDS = [("valid", 45), ("malformed", 30), ("oversize", 10), ("disconnect", 15)]
MALFORMED = [
    b"{", b"not json", b"[1,2]", b"\xff\xfe", b'{"queries": "x"}', b'{"queries": [1]}', b'{"topk": 3}',
    b'{"queries": ["Los Angeles \\ud800"]}', b'{"queries": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    b'{"queries": ["x"], "k": ' + b"9" * 5000 + b"}", b'{"queries": ["x"], "k": 1000, "topk": 1000}', b'{"queries": ["' + b"a" * 5000 + b'"]}',
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def status_of(reply: bytes) -> int:
    return int(reply.split(b" ", 2)[1]) if reply.startswith(b"HTTP/") else 0


def raw(port: int, data: bytes, chunks=None, close_early: bool = False) -> int:
    """One request over a raw socket; returns the status (0: none, e.g. a deliberate disconnect)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(data)
        if close_early:
            return 0
        reply = b""
        if chunks is not None:  # send until the server answers (or stops reading)
            s.settimeout(5)
            for c in chunks:
                readable, _, _ = select.select([s], [], [], 0)
                if readable:
                    break
                try:
                    s.sendall(c)
                except OSError:  # the server answered and closed, or stopped reading
                    break
            s.settimeout(30)
        try:
            while b"\r\n\r\n" not in reply:
                got = s.recv(65536)
                if not got:
                    break
                reply += got
        except (OSError, TimeoutError):
            pass
        return status_of(reply)


def post_head(path: str, length: int | None, chunked: bool = False) -> bytes:
    h = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nConnection: close\r\n"
    h += "Transfer-Encoding: chunked\r\n" if chunked else f"Content-Length: {length}\r\n"
    return (h + "\r\n").encode()


def answers(client: httpx.Client, url: str, api: str, q: str) -> tuple[int, list]:
    if api == "queries":
        r = client.post(f"{url}/queries", json={"queries": [q], "k": 3})
        return r.status_code, (r.json()["ids"][0] if r.status_code == 200 else [])
    r = client.post(f"{url}/retrieve", json={"queries": [q], "topk": 3})
    return r.status_code, ([d["id"] for d in r.json()["result"][0]] if r.status_code == 200 else [])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", default=str(DEFAULT_CORPUS))
    ap.add_argument("--requests", type=int, default=10_000)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    server = subprocess.Popen([sys.executable, "-m", "r1searcher.cli", "serve", "--index", args.corpus, "--port", str(port)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 600
        while True:
            try:
                n_passages = httpx.get(f"{url}/health", timeout=2).json()["passages"]
                break
            except httpx.TransportError:
                if server.poll() is not None or time.time() > deadline:
                    raise SystemExit(f"server did not start: {server.stderr.read()[-2000:]}")
                time.sleep(0.5)
        rng = random.Random(args.seed)
        titles = [json.loads(line)["title"] for _, line in zip(range(2000), open(args.corpus))]
        probe = [(api, f"{rng.choice(titles)} {rng.choice(titles)}") for api in ("queries", "retrieve") for _ in range(150)]
        with httpx.Client(timeout=60) as c:
            reference = {p: answers(c, url, *p)[1] for p in probe}  # warm-up and reference answers
        time.sleep(1.0)
        rss_before = rss_mib(server.pid)

        plan = [rng.choices([k for k, _ in KINDS], [w for _, w in KINDS])[0] for _ in range(args.requests)]
        codes: Counter = Counter()
        wrong = [0]
        lock = threading.Lock()
        local = threading.local()

        def one(i: int) -> None:
            kind = plan[i]
            r = random.Random(args.seed * 1_000_003 + i)
            if kind == "valid":
                if not hasattr(local, "client"):
                    local.client = httpx.Client(timeout=60)
                p = probe[r.randrange(len(probe))]
                code, ids = answers(local.client, url, *p)
                bad = code == 200 and ids != reference[p]
            elif kind == "malformed":
                body = MALFORMED[r.randrange(len(MALFORMED))]
                code = raw(port, post_head(r.choice(["/queries", "/retrieve"]), len(body)) + body)
                bad = False
            elif kind == "oversize":
                if r.random() < 0.8:  # declared too big: refused before any body
                    code = raw(port, post_head("/queries", 300_000_000))
                else:  # chunked, streamed until the server answers
                    piece = b"a" * 65536
                    chunk = b"%x\r\n%s\r\n" % (len(piece), piece)
                    code = raw(port, post_head("/retrieve", None, chunked=True), chunks=(chunk for _ in range(1024)))
                bad = False
            else:  # disconnect: headers and part of the body, then hang up
                code = raw(port, post_head("/queries", 1000) + b'{"queries": ["Pa', close_early=True)
                bad = False
            with lock:
                codes[(kind, code)] += 1
                wrong[0] += bad

        t0 = time.perf_counter()
        with ThreadPoolExecutor(args.clients) as pool:
            list(pool.map(one, range(args.requests)))
        seconds = time.perf_counter() - t0
        time.sleep(2.0)  # let the server finish with the disconnected requests
        with httpx.Client(timeout=60) as c:
            after = [answers(c, url, *p) for p in probe]
        after_ok = sum(code == 200 and ids == reference[p] for p, (code, ids) in zip(probe, after))
        time.sleep(1.0)
        rss_after = rss_mib(server.pid)
        health = httpx.get(f"{url}/health").json()
    finally:
        server.terminate()
        server.wait(30)

    n5xx = sum(n for (_, code), n in codes.items() if code >= 500)
    result = {
        "requests": args.requests, "clients": args.clients, "passages": n_passages, "seconds": round(seconds, 1),
        "requests_per_s": round(args.requests / seconds, 1),
        "by_kind": {k: dict(sorted((str(code), n) for (kk, code), n in codes.items() if kk == k)) for k, _ in KINDS},
        "replies_5xx": n5xx, "server_errors_5xx": health["errors_5xx"], "server_errors_4xx": health["errors_4xx"],
        "server_disconnects": health["disconnects"], "valid_answers_wrong_during": wrong[0],
        "valid_after": f"{after_ok}/{len(probe)}", "rss_before_mib": round(rss_before, 1), "rss_after_mib": round(rss_after, 1),
        "rss_change": round(rss_after / rss_before - 1, 3),
    }
    ok = n5xx == 0 and health["errors_5xx"] == 0 and wrong[0] == 0 and after_ok == len(probe) and rss_after <= 1.2 * rss_before
    result["ok"] = ok
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:28s} {v}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
