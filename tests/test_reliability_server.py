"""Issue #16, server side: R1-Searcher's own client parsing, bounded bodies, client faults as 4xx,
disconnects, URLs without a scheme. A real uvicorn on a loopback port; raw sockets where the fault
is below what an HTTP library will send."""

from __future__ import annotations

import re
import select
import socket
import time

import httpx
import pytest

from r1searcher.retrieval.base import Passage
from r1searcher.retrieval.bm25 import BM25Index
from r1searcher.retrieval.client import HttpRetriever
from r1searcher.retrieval.server import ServerLimits, create_app
from tests.test_retrieval_server import ThreadServer

DOCS = [
    ("1984 Summer Olympics", "The 1984 Summer Olympics were held in Los Angeles, California."),
    ("42 (film)", "42 is a 2013 American biographical sports film about Jackie Robinson."),
    ("Los Angeles", "Los Angeles is the most populous city in California."),
    ("Jackie Robinson", "Jackie Robinson was an American professional baseball player."),
]
LIMIT = 20_000


@pytest.fixture(scope="module")
def server():
    index = BM25Index.build([Passage(id=f"p{i:07d}", title=t, text=x) for i, (t, x) in enumerate(DOCS)])
    s = ThreadServer(create_app(index, ServerLimits(max_body_bytes=LIMIT), {"kind": "bm25"}))
    yield s
    s.stop()


def _raw(port: int, head: bytes, body_chunks=(), read_timeout: float = 10.0) -> tuple[bytes, int]:
    """Send ``head`` then ``body_chunks`` until the server answers; return (reply, body bytes sent)."""
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=read_timeout) as s:
        s.sendall(head)
        reply = b""
        s.settimeout(5)
        for chunk in body_chunks:  # send until the server answers (or stops reading)
            if select.select([s], [], [], 0)[0]:
                break
            try:
                s.sendall(chunk)
            except OSError:  # the server answered and closed while we were still sending
                break
            sent += len(chunk)
        s.settimeout(read_timeout)
        try:
            while b"\r\n\r\n" not in reply:
                got = s.recv(65536)
                if not got:
                    break
                reply += got
            reply += s.recv(65536) if b'"error"' not in reply else b""
        except (TimeoutError, socket.timeout, ConnectionResetError):
            pass
    return reply, sent


def _status(reply: bytes) -> int:
    return int(reply.split(b" ", 2)[1]) if reply.startswith(b"HTTP/") else 0


def test_r1_searchers_own_client_sees_titles_whole(server):
    """R1-Searcher's rollout posts /queries with requests and strips ``^\\d+\\s+`` from each line
    (evaluation/eval_search_loacl.py 268-278); titles starting with a number must survive."""
    import requests

    response = requests.post(f"{server.url}/queries", json={"queries": ["1984 Olympics Los Angeles", "42 film Robinson"], "k": 2})
    assert response.status_code == 200
    answers = response.json()["answers"]
    docs = [[re.sub(r"^\d+\s+", "", d) for d in row] for row in answers]  # the peer's own line
    assert docs[0][0] == "1984 Summer Olympics   The 1984 Summer Olympics were held in Los Angeles, California."
    assert docs[1][0] == "42 (film)   42 is a 2013 American biographical sports film about Jackie Robinson."
    # the line is the peer's corpus line: {row}\t{title}   {text}, row = the number in the id
    assert answers[0][0].startswith("0\t1984 Summer Olympics   ") and answers[1][0].startswith("1\t42 (film)   ")
    with HttpRetriever(server.url, api="queries", cache_size=0) as client:
        p = client.search(["42 film Robinson"], 1)[0][0]
    assert (p.id, p.title, p.text) == ("p0000001", "42 (film)", DOCS[1][1])


def test_oversize_content_length_is_refused_before_the_body_is_read(server):
    head = (b"POST /queries HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 300000000\r\n\r\n")
    t0 = time.perf_counter()
    reply, _ = _raw(server.port, head, read_timeout=5.0)  # no body at all: the old server waited for it
    assert _status(reply) == 413 and b"the limit is 20000" in reply
    assert time.perf_counter() - t0 < 5.0


def test_chunked_body_stops_being_read_at_the_limit(server):
    head = (b"POST /retrieve HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")
    piece = b"a" * 4096
    chunks = (b"%x\r\n%s\r\n" % (len(piece), piece) for _ in range(8192))  # 32 MiB, never terminated
    reply, sent = _raw(server.port, head, chunks, read_timeout=5.0)
    assert _status(reply) == 413 and b"stopped reading" in reply  # the old server read on, waiting for the end
    assert sent < 16 << 20  # answered long before the 32 MiB were sent (socket buffers hold a few MiB)
    h = httpx.get(f"{server.url}/health").json()
    assert h["errors_5xx"] == 0


@pytest.mark.parametrize("path", ["/queries", "/retrieve"])
@pytest.mark.parametrize(
    "body,words",
    [
        (b'{"queries": ["Los Angeles \\ud800"]}', "not valid Unicode"),
        (b'{"queries": ' + b"[" * 5000 + b"]" * 5000 + b"}", "nested too deeply"),
        (b'{"queries": ["x"], "k": ' + b"9" * 5000 + b"}", "invalid JSON"),
        (b'{"queries": ["x"], "topk": ' + b"9" * 5000 + b"}", "invalid JSON"),
    ],
    ids=["lone-surrogate", "deep-nesting", "5000-digit-k", "5000-digit-topk"],
)
def test_client_faults_are_json_4xx_not_5xx(server, path, body, words):
    before = httpx.get(f"{server.url}/health").json()["errors_5xx"]
    r = httpx.post(f"{server.url}{path}", content=body, headers={"content-type": "application/json"})
    assert 400 <= r.status_code < 500, r.text[:200]
    assert words in r.json()["error"]
    assert httpx.get(f"{server.url}/health").json()["errors_5xx"] == before == 0


def test_client_disconnects_are_not_server_errors(server):
    for _ in range(5):
        with socket.create_connection(("127.0.0.1", server.port)) as s:
            s.sendall(b"POST /queries HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n" + b'{"queries": ["Lo')
    deadline = time.time() + 5
    while (h := httpx.get(f"{server.url}/health").json())["disconnects"] < 5 and time.time() < deadline:
        time.sleep(0.05)
    assert h["errors_5xx"] == 0 and h["disconnects"] >= 5
    r = httpx.post(f"{server.url}/queries", json={"queries": ["Jackie Robinson baseball"], "k": 1})
    assert r.status_code == 200 and r.json()["ids"][0][0] == "p0000003"


@pytest.mark.parametrize("url", ["localhost:8000", "127.0.0.1:8000/", "ftp://host/x", "http://"])
def test_server_url_without_scheme_is_refused_at_once(url):
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match="must start with http:// or https://"):
        HttpRetriever(url, retries=16)
    assert time.perf_counter() - t0 < 1.0
