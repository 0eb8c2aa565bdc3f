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

    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(repo) + os.pathsep + os.environ.get("PYTHONPATH", "")}
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


def _self_cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def server_speed(
    index, questions: list[str], clients: int = 32, k: int = 5, index_dir: str | None = None,
    serve_args: tuple[str, ...] = (), log=print,
) -> dict:
    """Queries/s, latency and CPU per query through HTTP vs in-process, same index and questions.

    Wall-clock rates on a shared 2-core machine include the load generator (32 client threads
    in this process) competing with the server for the same cores, so CPU seconds per query are
    recorded too: the server process's own CPU per query vs the in-process CPU per query is the
    overhead a deployment with separate client machines would see.
    """
    import httpx

    from r1searcher.retrieval.client import HttpRetriever

    qs = list(questions)
    index.search(qs[:20], k)
    out: dict = {"kind": getattr(index, "kind", "?"), "serve_args": list(serve_args), "clients": clients, "queries": len(qs), "k": k, "index_passages": len(index)}
    seq = []
    c0, t0 = _self_cpu_s(), time.perf_counter()
    for q in qs:
        s = time.perf_counter()
        index.search([q], k)
        seq.append(time.perf_counter() - s)
    out["inproc_single_qps"] = round(len(qs) / (time.perf_counter() - t0))
    out["inproc_single_cpu_ms_per_q"] = round((_self_cpu_s() - c0) / len(qs) * 1000, 3)
    out["inproc_single_p50_ms"], out["inproc_single_p99_ms"] = _pct(seq, 50), _pct(seq, 99)
    wall, lat = _threaded(lambda q: index.search([q], k), qs, clients)
    out["inproc_threads_qps"] = round(len(qs) / wall)
    out["inproc_threads_p50_ms"], out["inproc_threads_p99_ms"] = _pct(lat, 50), _pct(lat, 99)
    c0, t0 = _self_cpu_s(), time.perf_counter()
    for s in range(0, len(qs), 32):
        index.search(qs[s : s + 32], k)
    out["inproc_batch32_qps"] = round(len(qs) / (time.perf_counter() - t0))
    out["inproc_batch32_cpu_ms_per_q"] = round((_self_cpu_s() - c0) / len(qs) * 1000, 3)

    with tempfile.TemporaryDirectory(prefix="r1s-serve-") as d:
        if index_dir is None:
            index.save(d)
        port = _free_port()
        proc = _start_server(index_dir or d, port, serve_args)
        url = f"http://127.0.0.1:{port}"
        try:
            with HttpRetriever(url, api="retrieve", cache_size=0, timeout=120) as client:
                _threaded(lambda q: client.search([q], k), qs[:64], clients)  # warm-up: connections, lazy model load
                h0 = httpx.get(f"{url}/health").json()
                s0, c0 = _proc_cpu_s(proc.pid), _self_cpu_s()
                wall, lat = _threaded(lambda q: client.search([q], k), qs, clients)
                s1, c1 = _proc_cpu_s(proc.pid), _self_cpu_s()
                h1 = httpx.get(f"{url}/health").json()
                out["server_qps"] = round(len(qs) / wall)
                out["server_p50_ms"], out["server_p99_ms"] = _pct(lat, 50), _pct(lat, 99)
                out["server_cpu_ms_per_q"] = round((s1 - s0) / len(qs) * 1000, 3)
                out["client_cpu_ms_per_q"] = round((c1 - c0) / len(qs) * 1000, 3)
                out["server_mean_batch"] = round((h1["queries"] - h0["queries"]) / max(1, h1["batches"] - h0["batches"]), 1)
                # rollout-style: one request carries a whole round's queries
                s0, t0 = _proc_cpu_s(proc.pid), time.perf_counter()
                for s in range(0, len(qs), 32):
                    client.search(qs[s : s + 32], k)
                out["server_batch32_requests_qps"] = round(len(qs) / (time.perf_counter() - t0))
                out["server_batch32_cpu_ms_per_q"] = round((_proc_cpu_s(proc.pid) - s0) / len(qs) * 1000, 3)
        finally:
            proc.kill()
            proc.wait(10)
    out["http_stack"] = _http_stack()
    out["overhead_qps_vs_inproc_single"] = round(1 - out["server_qps"] / out["inproc_single_qps"], 3)
    out["overhead_qps_vs_inproc_threads"] = round(1 - out["server_qps"] / out["inproc_threads_qps"], 3)
    out["overhead_server_cpu_vs_inproc_single"] = round(out["server_cpu_ms_per_q"] / out["inproc_single_cpu_ms_per_q"] - 1, 3)
    out["overhead_qps_batch32"] = round(1 - out["server_batch32_requests_qps"] / out["inproc_batch32_qps"], 3)
    log(f"speed: {out['kind']} server {out['server_qps']} q/s with {clients} clients (p50 {out['server_p50_ms']} ms, p99 "
        f"{out['server_p99_ms']} ms, mean batch {out['server_mean_batch']}, server CPU {out['server_cpu_ms_per_q']} ms/q) "
        f"vs in-process single {out['inproc_single_qps']} q/s ({out['inproc_single_cpu_ms_per_q']} ms/q)")
    return out


def _http_stack() -> dict:
    """Which HTTP parser / event loop uvicorn picks up (httptools and uvloop are much faster than h11)."""
    import importlib.util

    return {m: importlib.util.find_spec(m) is not None for m in ("httptools", "uvloop")}
