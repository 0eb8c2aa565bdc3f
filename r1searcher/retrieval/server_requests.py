"""The retrieval server's search endpoints, below FastAPI: read and limit a request's body, validate
its queries and ``k`` (every limit a 4xx naming the ``r1searcher serve`` flag that raises it), shape
the two peer APIs' replies, and dispatch to them as raw ASGI (see :mod:`~r1searcher.retrieval.server`)."""

from __future__ import annotations

import asyncio
import json
import re

from r1searcher.util.asgi_body import ClientGone, parse_json_object, read_body
from r1searcher.retrieval.base import Passage
from r1searcher.retrieval.server_batcher import MicroBatcher, RequestTimeout, ServerStats
from r1searcher.retrieval.server_limits import ServerLimits

try:  # 5-10x faster than json.dumps for the replies; optional (requests are always parsed by json.loads)
    import orjson as _orjson
except ImportError:  # pragma: no cover - depends on the environment
    _orjson = None


def dumps(obj) -> bytes:
    """JSON bytes of a reply (UTF-8, compact). A NaN score (JSON has none) becomes ``null`` with
    orjson and a JSON 500 reply with the stdlib fallback."""
    if _orjson is not None:
        return _orjson.dumps(obj)
    return json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")


class RequestError(ValueError):
    """A client mistake: becomes a 4xx reply with ``{"error": message}`` (and ``headers``)."""

    def __init__(self, message: str, status: int = 400, headers: tuple[tuple[bytes, bytes], ...] = ()):
        super().__init__(message)
        self.status, self.headers = status, headers


_CLOSE = ((b"connection", b"close"),)


async def read_request_body(scope: dict, receive, limit: int, timeout_s: float | None = None) -> bytes:
    """The request body, refused (413) from its Content-Length before reading, or as soon as a
    chunked stream passes ``limit``: never more than ``limit`` bytes are held; a body not complete
    within ``timeout_s`` is a 408 (and the connection is closed). Raw ASGI (the ``http.request``
    messages): no Starlette ``Request`` per call."""
    if timeout_s is None:
        return await _read_body_now(scope, receive, limit)
    timeout_ctx = getattr(asyncio, "timeout", None)  # Python 3.11+: one timer, no extra task
    try:
        if timeout_ctx is not None:
            async with timeout_ctx(timeout_s):
                return await _read_body_now(scope, receive, limit)
        return await asyncio.wait_for(_read_body_now(scope, receive, limit), timeout_s)
    except asyncio.TimeoutError:
        raise RequestError(f"the request body did not arrive within {timeout_s:g} s (the limit; "
                           "r1searcher serve --body-timeout S)", 408, _CLOSE) from None


async def _read_body_now(scope: dict, receive, limit: int) -> bytes:
    return await read_body(scope, receive, limit, RequestError)


def parse_body(raw: bytes, limits: ServerLimits) -> dict:
    """The body as a JSON object (413 over the byte limit, 400 when it is not JSON or not an object)."""
    return parse_json_object(raw, limits.max_body_bytes, RequestError)


def parse_queries(body: dict, limits: ServerLimits) -> list[str]:
    """The request's ``queries``: a list of valid Unicode strings within the count, length and word limits."""
    qs = body.get("queries")
    if qs is None:
        raise RequestError("missing field 'queries' (a list of strings)", 422)
    if not isinstance(qs, list):
        raise RequestError(f"'queries' must be a list of strings, got {type(qs).__name__}", 422)
    if len(qs) > limits.max_queries:
        raise RequestError(f"{len(qs)} queries in one request; the limit is {limits.max_queries} "
                           "(r1searcher serve --max-queries N)", 413)
    for i, q in enumerate(qs):
        if not isinstance(q, str):
            raise RequestError(f"queries[{i}] must be a string, got {type(q).__name__}", 422)
        if len(q) > limits.max_query_chars:
            raise RequestError(f"queries[{i}] is {len(q)} characters; the limit is {limits.max_query_chars} "
                               "(r1searcher serve --max-query-chars N)", 413)
        if len(q) > limits.max_query_words and len(words := q.split()) > limits.max_query_words:
            raise RequestError(f"queries[{i}] has {len(words)} words; the limit is {limits.max_query_words} "
                               "(r1searcher serve --max-query-words N)", 413)
        try:
            q.encode("utf-8")
        except UnicodeEncodeError:
            raise RequestError(f"queries[{i}] is not valid Unicode (a lone surrogate escape such as \\ud800)", 422) from None
    return qs


def parse_k(body: dict, name: str, limits: ServerLimits) -> int:
    """The request's ``k`` (field ``name``: ``topk`` or ``k``): an integer in 1..``max_k``, else the default."""
    k = body.get(name)
    if k is None:
        return limits.default_k
    if isinstance(k, bool) or not isinstance(k, int):
        raise RequestError(f"'{name}' must be an integer, got {type(k).__name__}", 422)
    if not 1 <= k <= limits.max_k:
        raise RequestError(f"'{name}' is {k}; it must be between 1 and {limits.max_k} (r1searcher serve --max-k N)", 422)
    return k


def check_work(n: int, k: int, name: str, limits: ServerLimits) -> None:
    """Refuse a request asking for more than ``max_results`` results (queries × k)."""
    if n * k > limits.max_results:
        raise RequestError(
            f"{n} queries × {name}={k} = {n * k} results in one request; the limit is {limits.max_results} "
            "(send fewer queries per request or a smaller k, or raise it: r1searcher serve --max-results N)", 413)


_ROW_RE = re.compile(r"[^\d]*?0*(\d+)")


def corpus_line(p: Passage, rank: int) -> str:
    """The passage as a line of R1-Searcher's corpus file: ``{row}\\t{title}   {text}``."""
    m = _ROW_RE.fullmatch(p.id)
    row = int(m.group(1)) if m else rank
    return f"{row}\t{' '.join(p.title.split())}   {' '.join(p.text.split())}"


_JSON_HEADERS = [(b"content-type", b"application/json")]


async def _send_json(send, body: bytes, status: int = 200, headers=()) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [*_JSON_HEADERS, (b"content-length", str(len(body)).encode("ascii")), *headers]})
    await send({"type": "http.response.body", "body": body})


class SearchEndpoint:
    """A search endpoint as a raw ASGI app: ``handle(body) -> reply`` with the body read, limited
    and parsed here and the reply encoded here (orjson when installed). Registered as an ordinary
    route, so it still shows in ``app.routes`` and can be removed; :class:`_App` calls it directly."""

    def __init__(self, handle, error, max_body_bytes: int, body_timeout_s: float | None = None):
        self.handle, self.error, self.max_body_bytes, self.body_timeout_s = handle, error, max_body_bytes, body_timeout_s

    async def __call__(self, scope, receive, send) -> None:
        headers = ()
        try:
            raw = await read_request_body(scope, receive, self.max_body_bytes, self.body_timeout_s)
            body, status = dumps(await self.handle(raw)), 200
        except Exception as e:  # every failure is a JSON reply: 4xx for the client's, 500 for ours
            reply, status = self.error(e)  # (an unencodable reply, e.g. NaN, is a 500 too)
            body = json.dumps(reply).encode("ascii")  # ASCII escapes: any message encodes
            headers = getattr(e, "headers", ())  # Retry-After on a 503, Connection: close on a 408
        await _send_json(send, body, status, headers)


def fast_app_class():
    """The app class: FastAPI with the search routes dispatched straight to their endpoints."""
    from fastapi import FastAPI

    class _App(FastAPI):
        """FastAPI, except that a request for one of the search routes goes straight to its
        :class:`SearchEndpoint`, skipping Starlette's middleware stack, router and Request objects
        (about half the server's per-request CPU for a one-query request). Everything else
        (``/health``, 404/405, lifespan, middleware added later) takes the normal path."""

        async def __call__(self, scope, receive, send) -> None:
            if scope["type"] == "http" and not self.user_middleware:
                path = scope["path"]
                for route in self.router.routes:
                    if getattr(route, "path", None) == path:
                        ep = getattr(route, "endpoint", None)
                        if isinstance(ep, SearchEndpoint) and scope["method"] in route.methods:
                            await ep(scope, receive, send)
                            return
                        break
            await super().__call__(scope, receive, send)

    return _App


class SearchHandlers:
    """The two search APIs over one index: each request's body validated against ``limits``, its
    queries searched through the ``batcher``, the reply shaped as the API's peers expect; every
    failure becomes a JSON reply (4xx for the client's, 503 past the time budget, 500 for ours),
    counted in ``stats``."""

    def __init__(self, batcher: MicroBatcher, limits: ServerLimits, stats: ServerStats):
        self.batcher, self.limits, self.stats = batcher, limits, stats

    def error(self, e: Exception) -> tuple[dict, int]:
        """The JSON reply and status for a failure of a search request."""
        stats = self.stats
        if isinstance(e, ClientGone):  # nobody reads this reply
            stats.disconnects += 1
            return {"error": "client disconnected"}, 400
        if isinstance(e, RequestError):
            stats.errors_4xx += 1
            return {"error": str(e)}, e.status
        if isinstance(e, RequestTimeout):
            stats.timeouts += 1
            return {"error": str(e)}, 503
        stats.errors_5xx += 1
        return {"error": f"retrieval failed: {type(e).__name__}: {e}"}, 500

    async def _run(self, body: dict, kname: str) -> tuple[list[str], list[list[Passage]]]:
        lim = self.limits
        qs = parse_queries(body, lim)
        k = parse_k(body, kname, lim)
        check_work(len(qs), k, kname, lim)
        self.stats.requests += 1
        self.stats.queries += len(qs)
        return qs, await self.batcher.search(qs, k, lim.request_timeout_s or None)

    async def retrieve(self, raw: bytes) -> dict:
        """``POST /retrieve`` (Search-R1)."""
        body = parse_body(raw, self.limits)
        scores = body.get("return_scores", False)
        if not isinstance(scores, bool):
            raise RequestError("'return_scores' must be true or false", 422)
        _qs, res = await self._run(body, "topk")
        if scores:
            return {"result": [[{"document": {"id": p.id, "contents": p.contents}, "score": p.score} for p in r] for r in res]}
        return {"result": [[{"id": p.id, "contents": p.contents} for p in r] for r in res]}

    async def queries(self, raw: bytes) -> dict:
        """``POST /queries`` (R1-Searcher)."""
        qs, res = await self._run(parse_body(raw, self.limits), "k")
        return {
            "queries": qs,
            "answers": [[corpus_line(p, j) for j, p in enumerate(r)] for r in res],
            "ids": [[p.id for p in r] for r in res],
            "scores": [[p.score for p in r] for r in res],
        }

    def endpoint(self, handle) -> SearchEndpoint:
        """``handle`` (:meth:`retrieve` or :meth:`queries`) as a raw ASGI endpoint under the limits."""
        return SearchEndpoint(handle, self.error, self.limits.max_body_bytes, self.limits.body_timeout_s)
