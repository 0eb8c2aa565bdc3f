"""The retrieval server's request checks and reply shapes as plain functions (no server, no
socket): every limit is a 4xx naming the ``r1searcher serve`` flag that raises it, and every failure
maps to the status and counter ``/health`` shows. The same rules end to end are in
tests/test_retrieval_server.py and tests/test_reliability_server.py."""

from __future__ import annotations

import asyncio

import pytest

from r1searcher.util.asgi_body import ClientGone
from r1searcher.retrieval.base import Passage
from r1searcher.retrieval.server_batcher import MicroBatcher, RequestTimeout, ServerStats
from r1searcher.retrieval.server_limits import ServerLimits
from r1searcher.retrieval.server_requests import (RequestError, SearchHandlers, check_work, corpus_line, parse_body,
                                                  parse_k, parse_queries)

LIM = ServerLimits(max_queries=3, max_query_chars=40, max_query_words=5, max_k=10, max_results=12, default_k=3,
                   max_body_bytes=200)


@pytest.mark.parametrize("body, status, words", [
    ({}, 422, "missing field 'queries'"),
    ({"queries": "one"}, 422, "must be a list of strings, got str"),
    ({"queries": ["a", "b", "c", "d"]}, 413, "--max-queries"),
    ({"queries": ["a", 5]}, 422, r"queries\[1\] must be a string, got int"),
    ({"queries": ["x" * 41]}, 413, "--max-query-chars"),
    ({"queries": ["a b c d e f"]}, 413, "has 6 words.*--max-query-words"),
    ({"queries": ["\ud800"]}, 422, "not valid Unicode"),
])
def test_queries_are_refused_with_the_limit_named(body, status, words):
    with pytest.raises(RequestError, match=words) as e:
        parse_queries(body, LIM)
    assert e.value.status == status


def test_queries_within_the_limits_pass_unchanged():
    qs = ["capital of France", "", "東京 Tōkyō"]
    assert parse_queries({"queries": qs}, LIM) is qs
    assert parse_queries({"queries": ["a  b  c  d  e"]}, LIM) == ["a  b  c  d  e"]  # 5 words: at the limit


@pytest.mark.parametrize("value, words", [
    (True, "must be an integer, got bool"),
    (2.0, "must be an integer, got float"),
    ("3", "must be an integer, got str"),
    (0, "is 0; it must be between 1 and 10"),
    (11, "--max-k"),
])
def test_k_is_an_integer_within_the_limit(value, words):
    with pytest.raises(RequestError, match=words) as e:
        parse_k({"topk": value}, "topk", LIM)
    assert e.value.status == 422 and "'topk'" in str(e.value)


def test_k_defaults_and_work_limit():
    assert parse_k({}, "k", LIM) == 3 and parse_k({"k": 10}, "k", LIM) == 10
    check_work(3, 4, "k", LIM)  # 12 results: at the limit
    with pytest.raises(RequestError, match="3 queries × k=5 = 15 results.*--max-results") as e:
        check_work(3, 5, "k", LIM)
    assert e.value.status == 413


@pytest.mark.parametrize("raw, status, words", [
    (b"x" * 201, 413, "201 bytes; the limit is 200"),
    (b"{not json", 400, "invalid JSON"),
    (b"[1, 2]", 400, "must be a JSON object, got list"),
])
def test_bodies_that_are_not_a_json_object_are_client_errors(raw, status, words):
    with pytest.raises(RequestError, match=words) as e:
        parse_body(raw, LIM)
    assert e.value.status == status


@pytest.mark.parametrize("pid, rank, row", [("p0000012", 0, 12), ("wiki-7", 3, 7), ("d0", 1, 0), ("abc", 4, 4)])
def test_corpus_line_is_r1_searchers_format(pid, rank, row):
    p = Passage(id=pid, title=" 1984  (novel) ", text="A  novel\nby Orwell.")
    assert corpus_line(p, rank) == f"{row}\t1984 (novel)   A novel by Orwell."


def test_failures_map_to_status_and_counters():
    stats = ServerStats()
    h = SearchHandlers(MicroBatcher(_Index(), LIM, stats), LIM, stats)
    assert h.error(RequestError("bad", 413)) == ({"error": "bad"}, 413)
    assert h.error(RequestTimeout("slow"))[1] == 503
    assert h.error(ClientGone())[1] == 400
    reply, status = h.error(OSError("disk"))
    assert status == 500 and reply["error"] == "retrieval failed: OSError: disk"
    assert (stats.errors_4xx, stats.timeouts, stats.disconnects, stats.errors_5xx) == (1, 1, 1, 1)


class _Index:
    """A tiny real retriever: the query itself as the only passage (enough to drive the handlers)."""

    def search(self, queries, k):
        return [[Passage(id=f"d{i}", title="T", text=q, score=1.0)] if q.strip() else [] for i, q in enumerate(queries)]


def test_handlers_shape_both_apis():
    stats = ServerStats()
    batcher = MicroBatcher(_Index(), LIM, stats)
    h = SearchHandlers(batcher, LIM, stats)

    async def run():
        batcher.start()
        try:
            a = await h.retrieve(b'{"queries": ["x y", ""], "topk": 2, "return_scores": true}')
            b = await h.queries(b'{"queries": ["x y"]}')
            with pytest.raises(RequestError, match="'return_scores' must be true or false"):
                await h.retrieve(b'{"queries": ["x"], "return_scores": 1}')
        finally:
            await batcher.stop()
        return a, b

    a, b = asyncio.run(run())
    assert a == {"result": [[{"document": {"id": "d0", "contents": "T\nx y"}, "score": 1.0}], []]}
    assert b == {"queries": ["x y"], "answers": [["0\tT   x y"]], "ids": [["d0"]], "scores": [[1.0]]}
    assert (stats.requests, stats.queries) == (2, 3)
