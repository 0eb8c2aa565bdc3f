"""The HTTP retrieval server (real uvicorn on a free loopback port) and HttpRetriever against it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from r1searcher.retrieval.base import Passage, RetrieverError
from r1searcher.retrieval.bm25 import BM25Index
from r1searcher.retrieval.client import HttpRetriever
from r1searcher.retrieval.server import ServerLimits, create_app

REPO = Path(__file__).resolve().parents[1]
DOCS = [
    ("Paris", "Paris is the capital and most populous city of France."),
    ("Berlin", "Berlin is the capital and largest city of Germany."),
    ("Tokyo", "Tokyo is the capital of Japan and its largest city."),
    ("Seine", "The Seine is a river in northern France that flows through Paris."),
    ("Mount Fuji", "Mount Fuji is the highest mountain in Japan."),
    ("Café Müller", "Café Müller is a dance piece by Pina Bausch, 東京 tour."),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ThreadServer:
    """uvicorn in a daemon thread, stopped through ``should_exit``; with ``limits``, under the
    configuration ``r1searcher serve`` runs (header and keep-alive timeouts)."""

    def __init__(self, app, limits: ServerLimits | None = None):
        import uvicorn

        self.port = free_port()
        if limits is None:
            config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="error")
        else:
            from r1searcher.retrieval.server import uvicorn_config

            config = uvicorn_config(app, "127.0.0.1", self.port, limits, "error")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.time() + 20
        while not self.server.started:
            if time.time() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


class FlakyIndex:
    """A real BM25 index that fails its first ``fail`` calls (fault injection for retry tests)."""

    def __init__(self, inner: BM25Index, fail: int):
        self.inner, self.fail, self.calls = inner, fail, 0

    def __len__(self) -> int:
        return len(self.inner)

    def search(self, queries, k):
        self.calls += 1
        if self.calls <= self.fail:
            raise RuntimeError("disk hiccup")
        return self.inner.search(queries, k)


@pytest.fixture(scope="module")
def index() -> BM25Index:
    return BM25Index.build([Passage(id=f"d{i}", title=t, text=x) for i, (t, x) in enumerate(DOCS)])


@pytest.fixture(scope="module")
def server(index):
    limits = ServerLimits(max_queries=16, max_query_chars=200, max_k=5, max_body_bytes=20_000)
    s = ThreadServer(create_app(index, limits, {"kind": "bm25"}))
    yield s
    s.stop()


def test_retrieve_shape_search_r1(server):
    r = httpx.post(f"{server.url}/retrieve", json={"queries": ["capital of Germany", "zzzz"], "topk": 2})
    assert r.status_code == 200
    res = r.json()["result"]
    assert len(res) == 2 and res[1] == []
    assert set(res[0][0]) == {"id", "contents"}
    assert res[0][0]["contents"].split("\n", 1) == ["Berlin", "Berlin is the capital and largest city of Germany."]
    r = httpx.post(f"{server.url}/retrieve", json={"queries": ["Japan mountain"], "return_scores": True})
    item = r.json()["result"][0][0]
    assert set(item) == {"document", "score"} and item["document"]["id"] == "d4" and item["score"] > 0
    assert len(r.json()["result"][0]) <= 3  # default k


def test_queries_shape_r1_searcher(server):
    r = httpx.post(f"{server.url}/queries", json={"queries": ["river France", "東京"]})
    body = r.json()
    assert r.status_code == 200 and body["queries"] == ["river France", "東京"]
    assert len(body["answers"]) == 2 and len(body["answers"][0]) <= 3
    assert body["answers"][0][0] == f"3\tSeine   {DOCS[3][1]}"  # R1-Searcher's corpus line: {row}\t{title}   {text}
    assert body["answers"][1][0].startswith("5\tCafé Müller   ")
    assert body["ids"][0][0] == "d3" and body["scores"][0][0] > 0


def _mem_total() -> int:
    with open("/proc/meminfo") as f:
        return int(f.readline().split()[1]) * 1024  # "MemTotal:  131072000 kB"


def test_health(server):
    h = httpx.get(f"{server.url}/health").json()
    assert h["status"] == "ok" and h["passages"] == len(DOCS) and h["kind"] == "bm25"
    for key in ("uptime_s", "requests", "queries", "batches", "mean_batch", "errors_4xx", "errors_5xx", "disconnects", "limits"):
        assert key in h
    # resident memory of the serving process (this test process: Python + numpy + bm25s + FastAPI)
    m = h["memory"]
    assert 20 * 2**20 < m["rss_bytes"] <= m["peak_rss_bytes"] < _mem_total()
    assert m["rss_mb"] == round(m["rss_bytes"] / 2**20, 1) and m["peak_rss_mb"] >= m["rss_mb"]
    if os.path.exists("/proc/self/status"):
        assert m["source"] == "/proc/self/status"


def test_search_routes_still_work_through_added_middleware(index):
    """With middleware added, requests take Starlette's normal path down to the same endpoints."""
    seen: list[str] = []

    class Count:
        def __init__(self, app):
            self.app = app

        async def __call__(self, scope, receive, send):
            if scope["type"] == "http":
                seen.append(scope["path"])
            await self.app(scope, receive, send)

    app = create_app(index, ServerLimits(max_k=5))
    app.add_middleware(Count)
    s = ThreadServer(app)
    try:
        r = httpx.post(f"{s.url}/retrieve", json={"queries": ["capital of Germany"], "topk": 1})
        assert r.status_code == 200 and r.json()["result"][0][0]["id"] == "d1"
        r = httpx.post(f"{s.url}/queries", json={"queries": ["x"], "k": 9})
        assert r.status_code == 422 and "between 1 and 5" in r.json()["error"]
        assert httpx.get(f"{s.url}/retrieve").status_code == 405
        assert seen[:3] == ["/retrieve", "/queries", "/retrieve"]
    finally:
        s.stop()


@pytest.mark.parametrize(
    "payload,status,words",
    [
        ({"queries": "not a list"}, 422, "list"),
        ({"topk": 3}, 422, "missing field 'queries'"),
        ({"queries": [1, 2]}, 422, "queries[0]"),
        ({"queries": ["x"] * 17}, 413, "limit is 16"),
        ({"queries": ["x" * 201]}, 413, "limit is 200"),
        ({"queries": ["x"], "topk": 6}, 422, "between 1 and 5"),
        ({"queries": ["x"], "topk": 0}, 422, "between 1 and 5"),
        ({"queries": ["x"], "topk": "3"}, 422, "integer"),
        ({"queries": ["x"], "return_scores": "yes"}, 422, "return_scores"),
    ],
)
def test_limits_answer_4xx_json_naming_the_problem(server, payload, status, words):
    r = httpx.post(f"{server.url}/retrieve", json=payload)
    assert r.status_code == status
    assert words in r.json()["error"]


def test_body_too_large_and_k_on_queries_api(server):
    r = httpx.post(f"{server.url}/queries", content=b'{"queries": ["' + b"a" * 30_000 + b'"]}')
    assert r.status_code == 413 and "body" in r.json()["error"]
    r = httpx.post(f"{server.url}/queries", json={"queries": ["x"], "k": 99})
    assert r.status_code == 422 and "'k'" in r.json()["error"]


def test_bad_json_flood_leaves_server_serving(server):
    bad = [b"{", b"not json", b"[1,2]", b"\xff\xfe", b'{"queries": ', b"", b"null", b'"str"']
    with httpx.Client() as c:
        codes = {c.post(f"{server.url}/retrieve", content=bad[i % len(bad)]).status_code for i in range(1000)}
        assert codes == {400}
        r = c.post(f"{server.url}/queries", json={"queries": ["Tokyo capital"], "k": 1})
    assert r.status_code == 200 and r.json()["answers"][0][0].startswith("2\tTokyo   ")


def test_concurrent_requests_are_batched_and_answers_stay_with_their_request(index):
    s = ThreadServer(create_app(index, ServerLimits(batch_wait_ms=20)))
    try:
        queries = [t for t, _ in DOCS] * 8
        with HttpRetriever(s.url, cache_size=0) as client, ThreadPoolExecutor(24) as pool:
            got = list(pool.map(lambda q: client.search([q], 1)[0][0].title, queries))
        assert got == queries
        h = httpx.get(f"{s.url}/health").json()
        assert h["queries"] == len(queries) and h["batches"] < len(queries)  # some requests shared an index call
    finally:
        s.stop()


def test_client_both_apis_match_in_process(server, index):
    qs = ["capital city", "Japan", "", "Pina Bausch"]
    want = index.search(qs, 3)
    for api in ("retrieve", "queries", "auto"):
        with HttpRetriever(server.url, api=api, cache_size=0) as c:
            got = c.search(qs, 3)
        assert [[(p.id, p.title, p.text) for p in r] for r in got] == [[(p.id, p.title, p.text) for p in r] for r in want]
        assert [[round(p.score, 4) for p in r] for r in got] == [[round(p.score, 4) for p in r] for r in want]


def test_client_cache_serves_repeats_without_requests(server):
    with HttpRetriever(server.url, cache_size=2) as c:
        first = c.search(["Paris", "Paris", "Berlin"], 2)
        assert c.requests == 1  # duplicates inside one call are sent once
        assert c.search(["Paris"], 2) == [first[0]] and c.requests == 1
        assert c.cache.hits >= 1
        c.search(["Tokyo"], 2)  # evicts the least recently used entry ("Berlin")
        c.search(["Berlin"], 2)
        assert c.requests == 3 and len(c.cache) == 2
        c.search(["Paris"], 3)  # another k is another key
        assert c.requests == 4


def test_client_4xx_is_not_retried(server):
    with HttpRetriever(server.url, retries=3, backoff=0.01) as c:
        with pytest.raises(RetrieverError, match="refused.*limit is 200"):
            c.search(["x" * 300], 2)
        assert c.requests == 1


def test_client_retries_5xx_with_exponential_backoff(index, monkeypatch):
    import r1searcher.retrieval.client as client_mod

    slept: list[float] = []
    real_sleep = time.sleep
    flaky = FlakyIndex(index, fail=2)
    s = ThreadServer(create_app(flaky, ServerLimits(batch_wait_ms=0)))
    monkeypatch.setattr(client_mod.time, "sleep", lambda t: (slept.append(t), real_sleep(t)))
    try:
        with HttpRetriever(s.url, api="queries", retries=3, backoff=0.02) as c:
            assert c.search(["Paris"], 1)[0][0].title == "Paris"
            assert c.requests == 3 and slept == [0.02, 0.04]
        flaky.calls, flaky.fail = 0, 10
        with HttpRetriever(s.url, api="queries", retries=1, backoff=0.0) as c:
            with pytest.raises(RetrieverError, match="HTTP 500.*disk hiccup"):
                c.search(["Paris"], 1)
    finally:
        s.stop()


def test_server_down_raises_clear_error_naming_url():
    url = f"http://127.0.0.1:{free_port()}"
    with HttpRetriever(url, retries=2, backoff=0.0, timeout=2) as c:
        with pytest.raises(RetrieverError) as e:
            c.search(["anything"], 3)
        assert url in str(e.value) and "3 attempts" in str(e.value) and "connect" in str(e.value)
        assert c.requests == 3


def _spawn(index_dir: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    p = subprocess.Popen(
        [sys.executable, "-m", "r1searcher.cli", "serve", "--index", str(index_dir), "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
    )
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return p
        except httpx.TransportError:
            time.sleep(0.1)
        if p.poll() is not None:
            raise RuntimeError(f"server exited: {p.stderr.read().decode()[-2000:]}")
    p.kill()
    raise RuntimeError("server did not come up")


def test_server_killed_mid_run_then_restarted(index, tmp_path):
    index.save(tmp_path / "idx")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = _spawn(tmp_path / "idx", port)
    try:
        with HttpRetriever(url, retries=1, backoff=0.05, timeout=5, cache_size=0) as c:
            assert c.search(["Berlin"], 1)[0][0].title == "Berlin"
            proc.kill()
            proc.wait(10)
            with pytest.raises(RetrieverError, match=f"{port}.*failed after 2 attempts"):
                c.search(["Tokyo"], 1)
            proc = _spawn(tmp_path / "idx", port)
            assert c.search(["Tokyo"], 1)[0][0].title == "Tokyo"  # same client object recovers
    finally:
        proc.kill()
        proc.wait(10)


def test_served_index_health_reports_its_size_and_memory(index, tmp_path):
    """``r1searcher serve --index DIR``: /health carries the manifest's size and the bytes on disk."""
    index.save(tmp_path / "idx")
    disk = sum(f.stat().st_size for f in (tmp_path / "idx").rglob("*") if f.is_file())
    port = free_port()
    proc = _spawn(tmp_path / "idx", port)
    try:
        h = httpx.get(f"http://127.0.0.1:{port}/health").json()
    finally:
        proc.kill()
        proc.wait(10)
    assert h["passages"] == len(DOCS) and h["kind"] == "bm25" and len(h["corpus_sha256"]) == 64
    assert h["index"]["passages"] == len(DOCS) and h["index"]["bytes_on_disk"] == disk
    assert h["index"]["disk_bytes_per_passage"] == round(disk / len(DOCS), 1)
    m = h["memory"]  # a fresh process with the index loaded: tens of MB, not KB, not more than the machine
    assert 20 * 2**20 < m["rss_bytes"] <= m["peak_rss_bytes"] < _mem_total()


def test_index_size_reports_what_the_manifest_states(tmp_path):
    """Sharded manifests (a list of shards) and bytes_per_passage are passed on; disk bytes are counted."""
    from r1searcher.commands.serve import index_size

    (tmp_path / "shard_0").mkdir()
    (tmp_path / "shard_0" / "seg").write_bytes(b"x" * 100)
    (tmp_path / "passages.jsonl").write_bytes(b"y" * 50)
    m = {"kind": "bm25", "passages": 10, "shards": [{"rows": 6}, {"rows": 4}], "bytes_per_passage": 12.5,
         "params": {"k1": 0.9}, "created": "2026-12-01T00:00:00Z"}
    assert index_size(tmp_path, m) == {"passages": 10, "shards": 2, "bytes_per_passage": 12.5,
                                       "bytes_on_disk": 150, "disk_bytes_per_passage": 15.0}
    assert index_size(tmp_path, {"passages": 0}) == {"passages": 0, "bytes_on_disk": 150}


def test_auto_falls_back_to_queries_when_retrieve_is_missing(index):
    from fastapi import FastAPI

    app = create_app(index)
    app.router.routes = [r for r in app.router.routes if getattr(r, "path", "") != "/retrieve"]
    s = ThreadServer(app)
    try:
        with HttpRetriever(s.url, api="auto") as c:
            assert c.search(["Seine river"], 1)[0][0].title == "Seine"
            assert c.api == "queries"
        with HttpRetriever(s.url, api="retrieve") as c, pytest.raises(RetrieverError, match="no /retrieve"):
            c.search(["Seine"], 1)
    finally:
        s.stop()
    assert isinstance(app, FastAPI)


def test_port_out_of_range_is_refused_by_the_parser(capsys):
    """``serve --port 99999`` used to print 99999 and listen elsewhere."""
    from r1searcher.cli import build_parser

    for bad in ("99999", "-1", "eighty"):
        with pytest.raises(SystemExit) as e:
            build_parser().parse_args(["serve", "--index", "idx", "--port", bad])
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert "--port" in err and ("between 0 and 65535" in err or "not a port number" in err)
    assert build_parser().parse_args(["serve", "--index", "idx", "--port", "0"]).port == 0


def test_port_0_serves_on_a_free_port_and_prints_it(index, tmp_path):
    """``serve --port 0`` prints the port it actually listens on (not 0), and answers there."""
    import re

    index.save(tmp_path / "idx")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "r1searcher.cli", "serve", "--index", str(tmp_path / "idx"), "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
    )
    try:
        got: list[bytes] = []
        reader = threading.Thread(target=lambda: got.append(proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(60)  # the line comes once the socket is bound, before the first request
        line = got[0] if got else b""
        m = re.search(rb"on (http://127\.0\.0\.1:(\d+)) \(POST /retrieve", line)
        assert m, line.decode(errors="replace")
        assert int(m.group(2)) != 0
        r = httpx.get(f"{m.group(1).decode()}/health", timeout=10)
        assert r.status_code == 200 and r.json()["passages"] == len(DOCS)
    finally:
        proc.kill()
        proc.wait(10)


def test_port_taken_is_a_one_line_error(index, tmp_path):
    from r1searcher.retrieval.server import bind_socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{port}"):
            bind_socket("127.0.0.1", port).close()
