"""Issue #16, server side: R1-Searcher's own client parsing, bounded bodies, client faults as 4xx,
disconnects, URLs without a scheme. A real uvicorn on a loopback port; raw sockets where the fault
is below what an HTTP library will send."""

from __future__ import annotations

import re
import select
import socket
import threading
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


# ---------------------------------------------------------------------------------------------- one request
# cannot stall the others: work limits, slices, a time budget, timeouts for half-sent requests
class GatedIndex:
    """A real BM25 index that records the queries of every call and holds its first call until
    ``gate`` is set (and, with ``hold_after``, every call after that many until ``rest`` is set), so
    a test can line requests up while the index is busy (no timing involved)."""

    def __init__(self, inner: BM25Index, hold_after: int | None = None):
        self.inner, self.calls, self.hold_after = inner, [], hold_after
        self.busy, self.gate, self.rest = threading.Event(), threading.Event(), threading.Event()

    def __len__(self) -> int:
        return len(self.inner)

    def search(self, queries, k):
        self.calls.append(list(queries))
        self.busy.set()
        if len(self.calls) == 1:
            assert self.gate.wait(30), "the test never opened the gate"
        elif self.hold_after is not None and len(self.calls) > self.hold_after:
            assert self.rest.wait(30), "the test never let the rest through"
        return self.inner.search(queries, k)


def _bm25() -> BM25Index:
    return BM25Index.build([Passage(id=f"p{i:07d}", title=t, text=x) for i, (t, x) in enumerate(DOCS)])


def _wait_for(cond, what: str, seconds: float = 20.0) -> None:
    deadline = time.time() + seconds
    while not cond():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_a_big_request_does_not_hold_up_a_small_one():
    """160 queries at k=5 arrive first and keep the index busy; a one-query request sent meanwhile
    shares the next index call (the big one is searched in slices) and is answered first."""
    from r1searcher.retrieval.server import ServerLimits as Limits

    index = GatedIndex(_bm25(), hold_after=2)  # calls after the 2nd wait until the small one is answered
    big = [f"{t} {x}" for t, x in DOCS] * 40  # 160 long queries
    s = ThreadServer(create_app(index, Limits(max_queries=200, slice_results=40), {"kind": "bm25"}))
    finished: list[str] = []
    replies: dict[str, httpx.Response] = {}

    def post(name: str, payload: dict) -> None:
        replies[name] = httpx.post(f"{s.url}/queries", json=payload, timeout=60)
        finished.append(name)
        index.rest.set()

    try:
        t_big = threading.Thread(target=post, args=("big", {"queries": big, "k": 5}))
        t_big.start()
        assert index.busy.wait(20)  # the first slice of the big request is in the index
        t_small = threading.Thread(target=post, args=("small", {"queries": ["Jackie Robinson baseball"], "k": 1}))
        t_small.start()
        _wait_for(lambda: httpx.get(f"{s.url}/health").json()["requests"] == 2, "the small request to be queued")
        index.gate.set()
        t_small.join(30)
        t_big.join(30)
        assert finished == ["small", "big"]
        assert replies["small"].json()["ids"] == [["p0000003"]]
        want = index.inner.search(big, 5)
        assert replies["big"].json()["ids"] == [[p.id for p in r] for r in want]  # slices put back in order
        assert index.calls[1][-1] == "Jackie Robinson baseball"  # the second index call, not the last
        assert max(len(c) for c in index.calls) <= 40 // 5 + 1 and len(index.calls) >= 160 // 8
    finally:
        index.gate.set()
        index.rest.set()
        s.stop()


@pytest.mark.parametrize(
    "payload,words",
    [
        ({"queries": ["Los Angeles"] * 30, "k": 5, "topk": 5}, "k=5 = 150 results in one request; the limit is 100"),
        ({"queries": ["x"] * 11, "k": 10, "topk": 10}, "k=10 = 110 results in one request; the limit is 100"),
        ({"queries": ["Los Angeles", " ".join(["word"] * 9)]}, "queries[1] has 9 words; the limit is 8"),
    ],
    ids=["queries-x-k", "queries-x-topk", "words"],
)
def test_work_limits_are_a_4xx_naming_the_limit_and_the_flag(payload, words):
    from r1searcher.retrieval.server import ServerLimits as Limits

    s = ThreadServer(create_app(_bm25(), Limits(max_results=100, max_query_words=8), {"kind": "bm25"}))
    try:
        for path in ("/queries", "/retrieve"):
            r = httpx.post(f"{s.url}{path}", json=payload)
            assert r.status_code == 413 and words in r.json()["error"], r.text
            assert ("--max-results" if "results" in words else "--max-query-words") in r.json()["error"]
        ok = httpx.post(f"{s.url}/queries", json={"queries": ["Los Angeles"] * 20, "k": 5})  # exactly the limit
        assert ok.status_code == 200 and len(ok.json()["ids"]) == 20
    finally:
        s.stop()


def test_a_request_over_its_time_budget_is_a_503_and_the_rest_of_it_is_not_searched():
    from r1searcher.retrieval.server import ServerLimits as Limits

    index = GatedIndex(_bm25())
    s = ThreadServer(create_app(index, Limits(slice_results=8, request_timeout_s=0.5), {"kind": "bm25"}))
    try:
        r = httpx.post(f"{s.url}/queries", json={"queries": ["Los Angeles"] * 40, "k": 1}, timeout=30)
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        assert "time budget of 0.5 s" in r.json()["error"] and "--request-timeout" in r.json()["error"]
        index.gate.set()
        ok = httpx.post(f"{s.url}/queries", json={"queries": ["Jackie Robinson"], "k": 1}, timeout=30)
        assert ok.status_code == 200 and ok.json()["ids"] == [["p0000003"]]
        assert [len(c) for c in index.calls] == [8, 1]  # one slice of the 40 queries, then the next request
        h = httpx.get(f"{s.url}/health").json()
        assert h["timeouts"] == 1 and h["errors_5xx"] == 0
    finally:
        index.gate.set()
        s.stop()


def _closed_within(sock: socket.socket, seconds: float) -> tuple[bool, bytes]:
    """(whether the server closed the connection within ``seconds``, what it sent before)."""
    sock.settimeout(seconds)
    got = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return True, got
            got += chunk
    except (TimeoutError, socket.timeout):
        return False, got
    except ConnectionResetError:
        return True, got


@pytest.fixture(scope="module")
def strict_server():
    """Under ``r1searcher serve``'s uvicorn configuration, with short timeouts."""
    from r1searcher.retrieval.server import ServerLimits as Limits

    limits = Limits(header_timeout_s=0.5, body_timeout_s=0.5, keep_alive_s=60)
    s = ThreadServer(create_app(_bm25(), limits, {"kind": "bm25"}), limits)
    yield s
    s.stop()


@pytest.mark.parametrize("sent", [
    b"",  # connected, never sent a byte
    b"POST /queries HTTP/1.1\r\nHost: x\r\nContent-Le",  # half a header block
    b"POST /quer",  # half a request line
], ids=["nothing", "half-headers", "half-request-line"])
def test_half_sent_headers_are_closed_in_bounded_time(strict_server, sent):
    with socket.create_connection(("127.0.0.1", strict_server.port)) as s:
        s.sendall(sent)
        closed, _ = _closed_within(s, 10.0)  # the old server held the connection forever
    assert closed


def test_half_sent_body_is_a_408_and_the_connection_is_closed(strict_server):
    with socket.create_connection(("127.0.0.1", strict_server.port)) as s:
        s.sendall(b"POST /queries HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 100\r\n\r\n" + b'{"queries": ["Lo')
        closed, reply = _closed_within(s, 10.0)
    assert closed and _status(reply) == 408 and b"did not arrive within 0.5 s" in reply
    assert httpx.get(f"{strict_server.url}/health").json()["errors_5xx"] == 0


def test_half_sent_second_request_on_a_kept_alive_connection_is_closed(strict_server):
    with socket.create_connection(("127.0.0.1", strict_server.port)) as s:
        body = b'{"queries": ["Jackie Robinson"], "k": 1}'
        s.sendall(b"POST /queries HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        s.settimeout(10)
        first = s.recv(65536)
        assert _status(first) == 200 and b"p0000003" in first
        time.sleep(1.0)  # longer than the header timeout: a live keep-alive connection is not cut for idling
        s.sendall(b"POST /queries HTTP/1.1\r\nHost: x\r\n")  # then half a second request
        closed, _ = _closed_within(s, 10.0)
    assert closed
