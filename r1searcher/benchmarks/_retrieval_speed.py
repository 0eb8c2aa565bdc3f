"""Speed ratios measured in one run (part of ``bench retrieval --speed``).

* bm25s (our ``BM25Index``) vs ``rank_bm25.BM25Okapi`` on the same corpus, the same analyser
  tokens and the same k1/b: index build passages/s, queries/s (rank_bm25 on a small sample,
  it is ~two orders of magnitude slower), and how often both put the same passage first.
* Dense: MiniLM passage-encoding rate on a fresh sample (no cache), query-encoding rate, FAISS
  flat search rate on the cached shared-corpus index.
* The HTTP server (``r1searcher serve`` in a subprocess, BM25) under N concurrent clients, one
  query per request (a rollout worker's pattern), vs the same index called in-process: one
  query per call sequentially, one query per call from N threads, and one batched call.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np


def _pct(xs: list[float], q: float) -> float:
    return round(float(np.percentile(np.asarray(xs) * 1000, q)), 2)


def bm25_vs_rank_bm25(passages, questions: list[str], sample: int = 40, log=print) -> dict:
    from rank_bm25 import BM25Okapi

    from r1searcher.retrieval.bm25 import Analyzer, BM25Index

    t0 = time.perf_counter()
    idx = BM25Index.build(passages)
    t1 = time.perf_counter()
    an = Analyzer(idx.params["stemmer"], idx.params["stopwords"])
    t2 = time.perf_counter()
    toks = [an.terms(f"{p.title} {p.text}") for p in passages]
    t3 = time.perf_counter()
    ref = BM25Okapi(toks, k1=idx.params["k1"], b=idx.params["b"])
    t4 = time.perf_counter()
    del toks
    idx.search(questions[:20], 5)
    t5 = time.perf_counter()
    ours = idx.search(questions, 5)
    t6 = time.perf_counter()
    sample_q = questions[:: max(1, len(questions) // sample)][:sample]
    t7 = time.perf_counter()
    theirs = [int(np.argmax(ref.get_scores(an.terms(q)))) for q in sample_q]
    t8 = time.perf_counter()
    ours_top = [r[0].id if r else None for r in idx.search(sample_q, 1)]
    agree = sum(o == passages[t].id for o, t in zip(ours_top, theirs)) / len(sample_q)
    single = []
    for q in questions[:300]:
        s = time.perf_counter()
        idx.search([q], 5)
        single.append(time.perf_counter() - s)
    out = {
        "passages": len(passages),
        "bm25s_build_s": round(t1 - t0, 2), "bm25s_build_passages_per_s": round(len(passages) / (t1 - t0)),
        "rank_bm25_build_s": round(t4 - t2, 2), "rank_bm25_build_passages_per_s": round(len(passages) / (t4 - t2)),
        "rank_bm25_tokenise_s": round(t3 - t2, 2),
        "bm25s_qps_batched": round(len(questions) / (t6 - t5)), "bm25s_qps_single": round(len(single) / sum(single)),
        "bm25s_single_p50_ms": _pct(single, 50), "bm25s_single_p99_ms": _pct(single, 99),
        "rank_bm25_qps": round(len(sample_q) / (t8 - t7), 2), "rank_bm25_sample": len(sample_q),
        "top1_agreement": round(agree, 3),
    }
    out["qps_ratio_batched"] = round(out["bm25s_qps_batched"] / out["rank_bm25_qps"])
    out["qps_ratio_single"] = round(out["bm25s_qps_single"] / out["rank_bm25_qps"])
    log(f"speed: bm25s {out['bm25s_qps_batched']} q/s batched vs rank_bm25 {out['rank_bm25_qps']} q/s "
        f"(×{out['qps_ratio_batched']}); build {out['bm25s_build_passages_per_s']} vs {out['rank_bm25_build_passages_per_s']} passages/s")
    return out


def dense_speed(passages, questions: list[str], dense_index=None, sample: int = 256, log=print) -> dict:
    from r1searcher.retrieval.dense import encode, load_encoder, passage_input

    t = time.perf_counter()
    load_encoder(None)
    load_s = time.perf_counter() - t
    rng = np.random.default_rng(0)
    rows = rng.choice(len(passages), size=min(sample, len(passages)), replace=False)
    texts = [passage_input(passages[int(i)]) for i in rows]
    encode(texts[:16])  # warm-up
    t0 = time.perf_counter()
    encode(texts, batch_size=64)
    t1 = time.perf_counter()
    qs = questions[:512]
    t2 = time.perf_counter()
    qv = encode(qs, batch_size=128)
    t3 = time.perf_counter()
    out = {
        "model_load_s": round(load_s, 2), "encode_sample": len(texts),
        "encode_passages_per_s": round(len(texts) / (t1 - t0), 1),
        "encode_queries_per_s": round(len(qs) / (t3 - t2), 1),
        "threads": _torch_threads(),
    }
    if dense_index is not None:
        t4 = time.perf_counter()
        dense_index.search_vectors(qv, 5)
        t5 = time.perf_counter()
        single = []
        for v in qv[:200]:
            s = time.perf_counter()
            dense_index.search_vectors(v[None, :], 5)
            single.append(time.perf_counter() - s)
        out.update({
            "faiss_passages": len(dense_index), "faiss_qps_batch": round(len(qv) / (t5 - t4)),
            "faiss_qps_single": round(len(single) / sum(single)),
        })
    log(f"speed: MiniLM encodes {out['encode_passages_per_s']} passages/s, {out['encode_queries_per_s']} queries/s")
    return out


def _torch_threads() -> int | None:
    try:
        import torch

        return torch.get_num_threads()
    except ImportError:
        return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(index_dir: str, port: int, extra_args: tuple[str, ...] = ()) -> subprocess.Popen:
    import httpx

    import r1searcher

    # The server imports the same r1searcher as this process (a checkout, an editable or a wheel install).
    root = str(Path(next(iter(r1searcher.__path__))).parent)
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    p = subprocess.Popen([sys.executable, "-m", "r1searcher.cli", "serve", "--index", index_dir, "--port", str(port), *extra_args],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    deadline = time.time() + 120
    while time.time() < deadline:
        if p.poll() is not None:
            raise RuntimeError(f"server exited: {p.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return p
        except httpx.TransportError:
            time.sleep(0.2)
    p.kill()
    raise RuntimeError("server did not start in 120 s")


def _threaded(fn, items: list[str], clients: int) -> tuple[float, list[float]]:
    """Run ``fn(item)`` over ``items`` from ``clients`` threads; (wall seconds, per-call latencies)."""
    lat: list[float] = []
    lock = threading.Lock()
    it = iter(items)

    def worker():
        mine = []
        while True:
            with lock:
                q = next(it, None)
            if q is None:
                break
            s = time.perf_counter()
            fn(q)
            mine.append(time.perf_counter() - s)
        with lock:
            lat.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0, lat


def _proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (from /proc; the server runs in a child)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _loop_cpu_s(pid: int) -> float:
    """CPU seconds of a process's main thread: in the server, the event loop (HTTP, JSON,
    batching); the index searches in a worker thread."""
    with open(f"/proc/{pid}/task/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _self_cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def _keepalive_clients(port: int, qs: list[str], k: int, clients: int) -> tuple[float, list[float], list[list[str]]]:
    """``clients`` concurrent HTTP/1.1 keep-alive connections (asyncio streams, stdlib only), each
    posting one query per request to ``/retrieve`` and decoding the JSON reply into passages (the
    same work :class:`HttpRetriever` does with the reply); (wall seconds, latencies, ids per query).

    A lean load generator: on a machine where clients and server share the cores, what the server
    costs should not be hidden behind what the client library costs (httpx's CPU per request is about
    a BM25 search's: see BENCHMARKS.md, "Server overhead, one query per request")."""
    import asyncio
    import json

    from r1searcher.retrieval.base import Passage
    from r1searcher.retrieval.client import split_contents

    lat: list[float] = []
    ids: list[list[str]] = [[] for _ in qs]
    todo = iter(range(len(qs)))

    async def client() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for i in todo:
                body = json.dumps({"queries": [qs[i]], "topk": k, "return_scores": True}).encode()
                s = time.perf_counter()
                writer.write(b"POST /retrieve HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
                head = (await reader.readuntil(b"\r\n\r\n")).lower()
                n = int(head.split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
                data = await reader.readexactly(n)
                if not head.startswith(b"http/1.1 200"):
                    raise RuntimeError(f"server answered {head[:12]!r}: {data[:200]!r}")
                res = []
                for items in json.loads(data)["result"]:
                    ps = []
                    for it in items:
                        title, text = split_contents(it["document"]["contents"])
                        ps.append(Passage(id=it["document"]["id"], title=title, text=text, score=it["score"]))
                    res.append(ps)
                lat.append(time.perf_counter() - s)
                ids[i] = [p.id for p in res[0]]
        finally:
            writer.close()

    async def main() -> float:
        t0 = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        return time.perf_counter() - t0

    return asyncio.run(main()), lat, ids


def _inproc_baselines(index, qs: list[str], k: int, clients: int, folder: str, index_dir: str | None, out: dict):
    """The in-process rates that need no server, into ``out``; return the index the server will
    serve (an index built in memory is saved into ``folder`` and loaded back)."""
    from r1searcher.retrieval.index import load_index

    if index_dir is None:
        index.save(folder)
        built, index = index, load_index(folder)  # the baseline searches what the server serves
        built.search(qs[:20], k)
        t0 = time.perf_counter()
        for q in qs:
            built.search([q], k)
        out["inproc_single_qps_built"] = round(len(qs) / (time.perf_counter() - t0))
    index.search(qs[:20], k)
    wall, lat = _threaded(lambda q: index.search([q], k), qs, clients)
    out["inproc_threads_qps"] = round(len(qs) / wall)
    out["inproc_threads_p50_ms"], out["inproc_threads_p99_ms"] = _pct(lat, 50), _pct(lat, 99)
    c0, t0 = _self_cpu_s(), time.perf_counter()
    for s in range(0, len(qs), 32):
        index.search(qs[s : s + 32], k)
    out["inproc_batch32_qps"] = round(len(qs) / (time.perf_counter() - t0))
    out["inproc_batch32_cpu_ms_per_q"] = round((_self_cpu_s() - c0) / len(qs) * 1000, 3)
    return index


def _one_round(index, qs: list[str], k: int, clients: int, port: int, pid: int, client, counters) -> dict:
    """One round: in-process single queries, then the lean keep-alive clients, then httpx threads
    (``counters()``: the server's (queries, batches) so far); with the overhead ratios."""
    r: dict = {"loadavg": round(os.getloadavg()[0], 2)}
    seq, top = [], []
    c0, t0 = _self_cpu_s(), time.perf_counter()
    for q in qs:
        s = time.perf_counter()
        top.append([p.id for p in index.search([q], k)[0]])
        seq.append(time.perf_counter() - s)
    r["inproc_single_qps"] = round(len(qs) / (time.perf_counter() - t0))
    r["inproc_single_cpu_ms_per_q"] = round((_self_cpu_s() - c0) / len(qs) * 1000, 3)
    r["inproc_single_p50_ms"], r["inproc_single_p99_ms"] = _pct(seq, 50), _pct(seq, 99)

    h0 = counters()
    s0, l0, c0 = _proc_cpu_s(pid), _loop_cpu_s(pid), _self_cpu_s()
    wall, lat, ids = _keepalive_clients(port, qs, k, clients)
    s1, l1, c1 = _proc_cpu_s(pid), _loop_cpu_s(pid), _self_cpu_s()
    h1 = counters()
    r["server_qps"] = round(len(qs) / wall)
    r["server_p50_ms"], r["server_p99_ms"] = _pct(lat, 50), _pct(lat, 99)
    r["server_cpu_ms_per_q"] = round((s1 - s0) / len(qs) * 1000, 3)
    # split: the event loop (per request: HTTP, JSON, batching) and the rest (the searches)
    r["server_loop_cpu_ms_per_request"] = round((l1 - l0) / len(qs) * 1000, 3)
    r["server_search_cpu_ms_per_q"] = round((s1 - s0 - (l1 - l0)) / len(qs) * 1000, 3)
    r["client_cpu_ms_per_q"] = round((c1 - c0) / len(qs) * 1000, 3)
    r["server_mean_batch"] = round((h1[0] - h0[0]) / max(1, h1[1] - h0[1]), 1)
    r["server_top1_agrees"] = round(sum(a[:1] == b[:1] for a, b in zip(ids, top)) / len(qs), 4)

    s0, c0 = _proc_cpu_s(pid), _self_cpu_s()
    wall, lat = _threaded(lambda q: client.search([q], k), qs, clients)
    s1, c1 = _proc_cpu_s(pid), _self_cpu_s()
    h2 = counters()
    r["httpx_qps"] = round(len(qs) / wall)
    r["httpx_p50_ms"], r["httpx_p99_ms"] = _pct(lat, 50), _pct(lat, 99)
    r["httpx_server_cpu_ms_per_q"] = round((s1 - s0) / len(qs) * 1000, 3)
    r["httpx_client_cpu_ms_per_q"] = round((c1 - c0) / len(qs) * 1000, 3)
    r["httpx_mean_batch"] = round((h2[0] - h1[0]) / max(1, h2[1] - h1[1]), 1)

    inproc_q, inproc_cpu = r["inproc_single_qps"], r["inproc_single_cpu_ms_per_q"]
    r["overhead_qps_vs_inproc_single"] = round(1 - r["server_qps"] / inproc_q, 3)
    r["overhead_httpx_qps_vs_inproc_single"] = round(1 - r["httpx_qps"] / inproc_q, 3)
    r["overhead_server_cpu_vs_inproc_single"] = round(r["server_cpu_ms_per_q"] / inproc_cpu - 1, 3)
    # server + client CPU per query vs in-process: the wall-clock ratio on one quiet core
    r["overhead_cpu_with_client_vs_inproc_single"] = round(
        (r["server_cpu_ms_per_q"] + r["client_cpu_ms_per_q"]) / inproc_cpu - 1, 3)
    r["overhead_httpx_cpu_with_client_vs_inproc_single"] = round(
        (r["httpx_server_cpu_ms_per_q"] + r["httpx_client_cpu_ms_per_q"]) / inproc_cpu - 1, 3)
    return r


def _summarize(out: dict, rounds: int, clients: int, log) -> None:
    """The median round (by the headline ratio) gives every per-round figure at top level."""
    med = sorted(out["rounds"], key=lambda r: r["overhead_qps_vs_inproc_single"])[(len(out["rounds"]) - 1) // 2]
    out.update({key: v for key, v in med.items() if key != "loadavg"})
    out["overhead_qps_vs_inproc_threads"] = round(1 - out["server_qps"] / out["inproc_threads_qps"], 3)
    out["overhead_qps_batch32"] = round(1 - out["server_batch32_requests_qps"] / out["inproc_batch32_qps"], 3)
    log(f"speed: {out['kind']} server (median of {rounds} rounds) {out['server_qps']} q/s with {clients} keep-alive clients "
        f"(p50 {out['server_p50_ms']} ms, p99 {out['server_p99_ms']} ms, mean batch {out['server_mean_batch']}, server CPU "
        f"{out['server_cpu_ms_per_q']} ms/q, client CPU {out['client_cpu_ms_per_q']} ms/q) vs in-process single "
        f"{out['inproc_single_qps']} q/s ({out['inproc_single_cpu_ms_per_q']} ms/q): overhead {out['overhead_qps_vs_inproc_single']:.1%}; "
        f"with HttpRetriever (httpx) threads {out['httpx_qps']} q/s (client CPU {out['httpx_client_cpu_ms_per_q']} ms/q): "
        f"overhead {out['overhead_httpx_qps_vs_inproc_single']:.1%}")


def server_speed(
    index, questions: list[str], clients: int = 32, k: int = 5, index_dir: str | None = None,
    serve_args: tuple[str, ...] = (), rounds: int = 3, log=print,
) -> dict:
    """Queries/s, latency and CPU per query through HTTP vs in-process, same index and questions.

    The in-process baseline searches the index the server serves, loaded from the same folder
    (an index built in memory is saved first and loaded back; the built index's rate is kept as
    ``inproc_single_qps_built``). Two kinds of client send one query per request over keep-alive
    connections: a lean asyncio load generator (``server_*``: the server's own overhead) and the
    project's :class:`HttpRetriever` (httpx) from ``clients`` threads (``httpx_*``).

    On a shared machine the speed of everything drifts with the other jobs, so the in-process
    pass and the two server passes alternate, ``rounds`` times; each ratio is taken within a
    round and the median round is reported (every round is kept under ``rounds``). Wall-clock
    rates include the load generator competing with the server for the same cores, so CPU
    seconds per query are recorded too: server CPU vs in-process CPU is the overhead a
    deployment with separate client machines would see; server + client CPU vs in-process CPU
    is the wall-clock ratio on one quiet core.
    """
    import httpx

    from r1searcher.retrieval.client import HttpRetriever

    qs = list(questions)
    out: dict = {"kind": getattr(index, "kind", "?"), "serve_args": list(serve_args), "clients": clients, "queries": len(qs),
                 "k": k, "index_passages": len(index), "rounds": []}
    with tempfile.TemporaryDirectory(prefix="r1s-serve-") as d:
        index = _inproc_baselines(index, qs, k, clients, d, index_dir, out)
        port = _free_port()
        proc = _start_server(index_dir or d, port, serve_args)
        url = f"http://127.0.0.1:{port}"

        def counters() -> tuple[int, int]:
            h = httpx.get(f"{url}/health").json()
            return h["queries"], h["batches"]

        try:
            with HttpRetriever(url, api="retrieve", cache_size=0, timeout=120) as client:
                _keepalive_clients(port, qs[:64], k, clients)  # warm-up: lazy model load, first requests
                _threaded(lambda q: client.search([q], k), qs[:64], clients)  # and the httpx connections
                for _ in range(rounds):
                    r = _one_round(index, qs, k, clients, port, proc.pid, client, counters)
                    out["rounds"].append(r)
                    log(f"speed: round {len(out['rounds'])}: in-process {r['inproc_single_qps']} q/s; server {r['server_qps']} q/s "
                        f"(overhead {r['overhead_qps_vs_inproc_single']:.1%}), via httpx {r['httpx_qps']} q/s "
                        f"(overhead {r['overhead_httpx_qps_vs_inproc_single']:.1%}); load {r['loadavg']}")
                # rollout-style: one request carries a whole round's queries
                s0, t0 = _proc_cpu_s(proc.pid), time.perf_counter()
                for s in range(0, len(qs), 32):
                    client.search(qs[s : s + 32], k)
                out["server_batch32_requests_qps"] = round(len(qs) / (time.perf_counter() - t0))
                out["server_batch32_cpu_ms_per_q"] = round((_proc_cpu_s(proc.pid) - s0) / len(qs) * 1000, 3)
            h = httpx.get(f"{url}/health").json()
            out["server_memory"], out["server_index"] = h.get("memory"), h.get("index")
        finally:
            proc.kill()
            proc.wait(10)
    out["http_stack"] = _http_stack()
    _summarize(out, rounds, clients, log)
    return out


def _http_stack() -> dict:
    """Which HTTP parser / event loop uvicorn picks up (httptools and uvloop are much faster than h11)."""
    import importlib.util

    return {m: importlib.util.find_spec(m) is not None for m in ("httptools", "uvloop")}
