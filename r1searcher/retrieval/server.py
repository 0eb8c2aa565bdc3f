"""HTTP retrieval service (FastAPI + uvicorn) speaking both peer APIs, with micro-batching.

* ``POST /retrieve`` (Search-R1): ``{"queries": [str], "topk": int?, "return_scores": bool?}`` →
  ``{"result": [[doc, …] per query]}``, doc = ``{"id", "contents"}`` (contents = title + "\\n" +
  text); with ``return_scores`` each item is ``{"document": doc, "score": float}``.
* ``POST /queries`` (R1-Searcher): ``{"queries": [str], "k": int = 3}`` →
  ``{"queries": [...], "answers": [[line × k] per query], "ids": [[id × k]], "scores": [[…]]}``;
  each answer is a line of R1-Searcher's own corpus file, ``{row}\\t{title}   {text}`` (its
  ``split_kilt_to_100.py`` writes ``f"{idx}\\t{title}   {paragraph}"``; its rollout strips
  ``^\\d+\\s+``, so a title that starts with a number survives). ``row`` is the number in the
  passage id (``p0000012`` → 12); whitespace runs in title and text become one space, so three
  spaces always separate them. ``ids``/``scores`` are extras R1-Searcher ignores.
* ``GET /health``: the index's kind, size (``index``: what its manifest says, and its bytes on
  disk, when ``r1searcher serve`` passes them), corpus hash, the process's resident memory
  (``memory``: ``rss_bytes`` now, ``peak_rss_bytes`` since start, from /proc/self/status),
  batching and error counters, and the limits.

Why micro-batching: a rollout engine, or many of them, send small requests concurrently; BM25
and dense search are far cheaper per query in batches (one encoder forward, one thread pool).
Requests go into an asyncio queue; one worker takes everything queued (after one event-loop
turn, or ``batch_wait_ms`` if set; up to ``max_batch_queries``), runs one ``index.search`` in a
worker thread, and hands each request its slice; requests arriving meanwhile form the next batch. Bad input never reaches the index: every
limit (body size, batch size, query length in characters and words, k, queries × k) answers a 4xx
JSON ``{"error": …}`` naming it and the ``r1searcher serve`` flag that raises it.

No request can stall the others: a request is searched in slices of about ``slice_results``
results (queries × k), one slice per waiting request per index call, so a small request that
arrives while a big one is being searched shares the next index call instead of queueing behind
the whole big request. A request not answered within ``request_timeout_s`` (queue time included)
gets a 503 with ``Retry-After`` and the rest of it is never searched. Connections that stop
half-way are closed: a request's headers must arrive within ``header_timeout_s`` (a uvicorn
protocol subclass, :func:`uvicorn_config`) and its body within ``body_timeout_s`` (a 408, then the
connection is closed); idle keep-alive connections close after ``keep_alive_s``.

Per-request cost: ``/retrieve`` and ``/queries`` are raw ASGI endpoints that :class:`_App` calls
directly, skipping Starlette's middleware stack, router and Request/Response objects; replies are
encoded by orjson when installed. For one-query requests that halved the event loop's CPU per
request (0.46–0.56 → 0.22–0.31 ms in BENCHMARKS.md's runs, where a BM25 search of the shared
46,750-passage corpus costs 1.6–2.0 ms). ``/health`` and everything else take FastAPI's normal path.

Client faults never become 5xx: a body over the limit is refused from its Content-Length before a
byte is read, and a chunked body is read only up to the limit; JSON too deep or a number too long
for Python's parser, and a query that is not valid Unicode (a lone surrogate), are 4xx. A client
that hangs up before its body arrived is counted in ``disconnects``, not in ``errors_5xx``.
"""


import asyncio
import json
import re
import socket
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from r1searcher.asgi_body import ClientGone, parse_json_object, read_body
from r1searcher.retrieval.base import Passage, Retriever
from r1searcher.retrieval.server_limits import ServerLimits

try:  # 5-10x faster than json.dumps for the replies; optional (requests are always parsed by json.loads)
    import orjson as _orjson
except ImportError:  # pragma: no cover - depends on the environment
    _orjson = None


def _dumps(obj) -> bytes:
    """JSON bytes of a reply (UTF-8, compact). A NaN score (JSON has none) becomes ``null`` with
    orjson and a JSON 500 reply with the stdlib fallback."""
    if _orjson is not None:
        return _orjson.dumps(obj)
    return json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")


def memory() -> dict:
    """This process's resident memory now and at its peak (bytes), from /proc/self/status
    (VmRSS / VmHWM); psutil or getrusage where there is no /proc."""
    out: dict = {}
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith((b"VmRSS:", b"VmHWM:")):
                    key, val = line.split(b":", 1)
                    kb = int(val.split()[0])  # "123456 kB"
                    out["rss_bytes" if key == b"VmRSS" else "peak_rss_bytes"] = kb * 1024
        out["source"] = "/proc/self/status"
    except (OSError, ValueError, IndexError):
        out = {}
    if "rss_bytes" not in out:
        try:
            import psutil

            mi = psutil.Process().memory_info()
            out = {"rss_bytes": int(mi.rss), "source": "psutil"}
        except ImportError:  # pragma: no cover - psutil is normally installed
            out = {"source": "getrusage"}
    if "peak_rss_bytes" not in out:
        import resource
        import sys

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        out["peak_rss_bytes"] = peak if sys.platform == "darwin" else peak * 1024  # kB on Linux
    if "rss_bytes" in out:
        out["rss_mb"] = round(out["rss_bytes"] / 2**20, 1)
    out["peak_rss_mb"] = round(out["peak_rss_bytes"] / 2**20, 1)
    return out


@dataclass
class _Stats:
    started: float = field(default_factory=time.time)
    requests: int = 0
    queries: int = 0
    batches: int = 0
    batched_queries: int = 0
    errors_4xx: int = 0
    errors_5xx: int = 0
    disconnects: int = 0
    timeouts: int = 0  # requests answered 503 because they ran past request_timeout_s


class RequestError(ValueError):
    """A client mistake: becomes a 4xx reply with ``{"error": message}`` (and ``headers``)."""

    def __init__(self, message: str, status: int = 400, headers: tuple[tuple[bytes, bytes], ...] = ()):
        super().__init__(message)
        self.status, self.headers = status, headers


class RequestTimeout(Exception):
    """The request ran past ``request_timeout_s``: a 503 with ``Retry-After`` (the server is busy)."""

    headers = ((b"retry-after", b"1"),)


@dataclass(eq=False)
class _Job:
    """One request inside the batcher: its queries, the results of the slices searched so far."""

    queries: list[str]
    k: int
    fut: asyncio.Future
    done: list = field(default_factory=list)


class MicroBatcher:
    """Collects concurrent search calls into one ``index.search`` per batch, each request cut into
    slices of about ``slice_results`` results so that requests are interleaved (fairness)."""

    def __init__(self, index: Retriever, limits: ServerLimits, stats: _Stats):
        self.index, self.limits, self.stats = index, limits, stats
        self._queue: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="r1s-index")

    def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._worker())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def search(self, queries: list[str], k: int, timeout: float | None = None) -> list[list[Passage]]:
        """The top ``k`` of every query; :class:`RequestTimeout` after ``timeout`` seconds (then
        the request's slices not yet searched are dropped)."""
        if not queries:
            return []
        if self._queue is None:  # app used without its lifespan (should not happen under uvicorn)
            self.start()
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        job = _Job(queries, k, fut)
        self._queue.put_nowait(job)  # type: ignore[union-attr]
        if not timeout:
            return await fut
        try:
            return await asyncio.wait_for(fut, timeout)  # cancels fut on timeout: the worker drops the job
        except asyncio.TimeoutError:
            raise RequestTimeout(
                f"the request was not answered within the server's time budget of {timeout:g} s "
                f"({len(job.done)} of {len(queries)} queries searched; the server is busy); retry later, send fewer "
                "queries per request, or raise the budget: r1searcher serve --request-timeout S"
            ) from None

    def _next_batch(self, active: deque) -> list[tuple[_Job, int, int]]:
        """One slice (job, start, end) per waiting job in order, up to ``max_batch_queries``;
        the jobs taken leave ``active`` (those not reached stay at its front)."""
        batch: list[tuple[_Job, int, int]] = []
        n, cap = 0, self.limits.max_batch_queries
        while active and n < cap:
            job = active.popleft()
            if job.fut.done():  # timed out (or its client is gone): never search the rest
                continue
            start = len(job.done)
            end = min(len(job.queries), start + max(1, self.limits.slice_results // job.k), start + cap - n)
            batch.append((job, start, end))
            n += end - start
        return batch

    async def _worker(self) -> None:
        loop = asyncio.get_running_loop()
        q = self._queue
        assert q is not None
        wait = self.limits.batch_wait_ms / 1000.0
        active: deque[_Job] = deque()  # requests with queries left, in serving order
        while True:
            if not active:
                active.append(await q.get())
                # Let requests that are already readable be parsed (sleep(0) yields one loop turn) or,
                # with a window, wait for more; then take everything queued. Under load, batches also
                # form on their own: requests queue up while the previous batch runs in the thread.
                await asyncio.sleep(wait)
            else:
                await asyncio.sleep(0)  # between slices: let requests that just arrived be parsed
            while not q.empty():
                active.append(q.get_nowait())
            batch = self._next_batch(active)
            if not batch:
                continue
            all_q = [s for job, a, b in batch for s in job.queries[a:b]]
            kmax = max(job.k for job, _, _ in batch)
            try:
                res = await loop.run_in_executor(self._pool, self.index.search, all_q, kmax)
            except Exception as e:  # the index failed: every request in the batch gets the error
                for job, _, _ in batch:
                    if not job.fut.done():
                        job.fut.set_exception(e)
                continue
            self.stats.batches += 1
            self.stats.batched_queries += len(all_q)
            pos = 0
            for job, a, b in batch:
                if not job.fut.done():
                    job.done.extend(r[: job.k] for r in res[pos : pos + b - a])
                    if len(job.done) == len(job.queries):
                        job.fut.set_result(job.done)
                    else:  # the rest of it after the requests that were waiting
                        active.append(job)
                pos += b - a


_CLOSE = ((b"connection", b"close"),)


async def _read_body(scope: dict, receive, limit: int, timeout_s: float | None = None) -> bytes:
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


def _parse_body(raw: bytes, limits: ServerLimits) -> dict:
    return parse_json_object(raw, limits.max_body_bytes, RequestError)


def _queries(body: dict, limits: ServerLimits) -> list[str]:
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


def _k(body: dict, name: str, limits: ServerLimits) -> int:
    k = body.get(name)
    if k is None:
        return limits.default_k
    if isinstance(k, bool) or not isinstance(k, int):
        raise RequestError(f"'{name}' must be an integer, got {type(k).__name__}", 422)
    if not 1 <= k <= limits.max_k:
        raise RequestError(f"'{name}' is {k}; it must be between 1 and {limits.max_k} (r1searcher serve --max-k N)", 422)
    return k


def _check_work(n: int, k: int, name: str, limits: ServerLimits) -> None:
    """Refuse a request asking for more than ``max_results`` results (queries × k)."""
    if n * k > limits.max_results:
        raise RequestError(
            f"{n} queries × {name}={k} = {n * k} results in one request; the limit is {limits.max_results} "
            "(send fewer queries per request or a smaller k, or raise it: r1searcher serve --max-results N)", 413)


_ROW_RE = re.compile(r"[^\d]*?0*(\d+)")


def _line(p: Passage, rank: int) -> str:
    """The passage as a line of R1-Searcher's corpus file: ``{row}\\t{title}   {text}``."""
    m = _ROW_RE.fullmatch(p.id)
    row = int(m.group(1)) if m else rank
    return f"{row}\t{' '.join(p.title.split())}   {' '.join(p.text.split())}"


_JSON_HEADERS = [(b"content-type", b"application/json")]


async def _send_json(send, body: bytes, status: int = 200, headers=()) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [*_JSON_HEADERS, (b"content-length", str(len(body)).encode("ascii")), *headers]})
    await send({"type": "http.response.body", "body": body})


class _Endpoint:
    """A search endpoint as a raw ASGI app: ``handle(body) -> reply`` with the body read, limited
    and parsed here and the reply encoded here (orjson when installed). Registered as an ordinary
    route, so it still shows in ``app.routes`` and can be removed; :class:`_App` calls it directly."""

    def __init__(self, handle, error, max_body_bytes: int, body_timeout_s: float | None = None):
        self.handle, self.error, self.max_body_bytes, self.body_timeout_s = handle, error, max_body_bytes, body_timeout_s

    async def __call__(self, scope, receive, send) -> None:
        headers = ()
        try:
            raw = await _read_body(scope, receive, self.max_body_bytes, self.body_timeout_s)
            body, status = _dumps(await self.handle(raw)), 200
        except Exception as e:  # every failure is a JSON reply: 4xx for the client's, 500 for ours
            reply, status = self.error(e)  # (an unencodable reply, e.g. NaN, is a 500 too)
            body = json.dumps(reply).encode("ascii")  # ASCII escapes: any message encodes
            headers = getattr(e, "headers", ())  # Retry-After on a 503, Connection: close on a 408
        await _send_json(send, body, status, headers)


def _fast_app_class():
    from fastapi import FastAPI

    class _App(FastAPI):
        """FastAPI, except that a request for one of the search routes goes straight to its
        :class:`_Endpoint`, skipping Starlette's middleware stack, router and Request objects
        (about half the server's per-request CPU for a one-query request). Everything else
        (``/health``, 404/405, lifespan, middleware added later) takes the normal path."""

        async def __call__(self, scope, receive, send) -> None:
            if scope["type"] == "http" and not self.user_middleware:
                path = scope["path"]
                for route in self.router.routes:
                    if getattr(route, "path", None) == path:
                        ep = getattr(route, "endpoint", None)
                        if isinstance(ep, _Endpoint) and scope["method"] in route.methods:
                            await ep(scope, receive, send)
                            return
                        break
            await super().__call__(scope, receive, send)

    return _App


def create_app(index: Retriever, limits: ServerLimits | None = None, info: dict | None = None):
    """The FastAPI app serving ``index``; ``info`` (e.g. the manifest) is echoed by ``/health``."""
    from contextlib import asynccontextmanager

    from fastapi import Request
    from fastapi.responses import JSONResponse

    lim = limits or ServerLimits()
    stats = _Stats()
    batcher = MicroBatcher(index, lim, stats)

    @asynccontextmanager
    async def lifespan(_app):
        batcher.start()
        yield
        await batcher.stop()

    app = _fast_app_class()(title="r1searcher retrieval", lifespan=lifespan)
    app.state.batcher, app.state.stats, app.state.limits = batcher, stats, lim

    def error(e: Exception) -> tuple[dict, int]:
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

    async def run(body: dict, kname: str) -> tuple[list[str], list[list[Passage]]]:
        qs = _queries(body, lim)
        k = _k(body, kname, lim)
        _check_work(len(qs), k, kname, lim)
        stats.requests += 1
        stats.queries += len(qs)
        return qs, await batcher.search(qs, k, lim.request_timeout_s or None)

    async def retrieve(raw: bytes) -> dict:
        body = _parse_body(raw, lim)
        scores = body.get("return_scores", False)
        if not isinstance(scores, bool):
            raise RequestError("'return_scores' must be true or false", 422)
        _qs, res = await run(body, "topk")
        if scores:
            return {"result": [[{"document": {"id": p.id, "contents": p.contents}, "score": p.score} for p in r] for r in res]}
        return {"result": [[{"id": p.id, "contents": p.contents} for p in r] for r in res]}

    async def queries(raw: bytes) -> dict:
        qs, res = await run(_parse_body(raw, lim), "k")
        return {
            "queries": qs,
            "answers": [[_line(p, j) for j, p in enumerate(r)] for r in res],
            "ids": [[p.id for p in r] for r in res],
            "scores": [[p.score for p in r] for r in res],
        }

    async def health(_request: Request):
        s = stats
        return JSONResponse({
            "status": "ok",
            "passages": len(index) if hasattr(index, "__len__") else None,  # type: ignore[arg-type]
            **(info or {}),
            "memory": memory(),
            "uptime_s": round(time.time() - s.started, 1),
            "requests": s.requests,
            "queries": s.queries,
            "batches": s.batches,
            "mean_batch": round(s.batched_queries / s.batches, 2) if s.batches else 0.0,
            "errors_4xx": s.errors_4xx,
            "errors_5xx": s.errors_5xx,
            "disconnects": s.disconnects,
            "timeouts": s.timeouts,
            "limits": lim.__dict__,
        })

    # Raw ASGI endpoints: they parse and validate the body themselves (clear 4xx messages, no
    # pydantic model, no Request/Response objects); _App dispatches to them directly.
    app.add_route("/retrieve", _Endpoint(retrieve, error, lim.max_body_bytes, lim.body_timeout_s), methods=["POST"])
    app.add_route("/queries", _Endpoint(queries, error, lim.max_body_bytes, lim.body_timeout_s), methods=["POST"])
    app.add_route("/health", health, methods=["GET"])
    return app


def _header_timeout_protocol(header_timeout_s: float):
    """uvicorn's HTTP protocol (httptools when installed, else h11, as its "auto" picks) with a
    deadline for each request's headers: uvicorn has none, so a client that sends part of a request
    line or header block and stops would hold its connection forever. The timer starts when the
    connection opens and when the first bytes of a next request arrive (not again for its later
    bytes, so trickling does not extend it); if no new request's headers were completed when it
    fires, the connection is closed. An idle keep-alive connection is left to ``keep_alive_s``."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as base
    except ImportError:  # pragma: no cover - httptools is normally installed (uvicorn[standard])
        from uvicorn.protocols.http.h11_impl import H11Protocol as base

    class HeaderTimeoutProtocol(base):  # type: ignore[misc, valid-type]
        _r1s_timer = None
        _r1s_cycle = None

        def connection_made(self, transport) -> None:  # noqa: ANN001
            super().connection_made(transport)
            self._r1s_arm()

        def data_received(self, data: bytes) -> None:
            if (self.cycle is None or self.cycle.response_complete) and not (
                    self._r1s_timer is not None and self._r1s_cycle is self.cycle):
                self._r1s_arm()  # the first bytes of a next request: its headers get header_timeout_s
            super().data_received(data)

        def connection_lost(self, exc) -> None:  # noqa: ANN001
            if self._r1s_timer is not None:
                self._r1s_timer.cancel()
                self._r1s_timer = None
            super().connection_lost(exc)

        def _r1s_arm(self) -> None:
            if self._r1s_timer is not None:
                self._r1s_timer.cancel()
            self._r1s_cycle = self.cycle
            self._r1s_timer = self.loop.call_later(header_timeout_s, self._r1s_expire)

        def _r1s_expire(self) -> None:
            self._r1s_timer = None
            if self.cycle is self._r1s_cycle and not self.transport.is_closing():
                self.transport.close()  # no request's headers were completed since the timer started

    return HeaderTimeoutProtocol


def uvicorn_config(app, host: str = "127.0.0.1", port: int = 8000, limits: ServerLimits | None = None,
                   log_level: str = "warning"):
    """The ``uvicorn.Config`` that :func:`serve` runs ``app`` under: header and keep-alive
    timeouts from ``limits``; no access log, so no proxy-header rewriting of the client address
    either, and no ``server`` header (per-request work that nothing here reads)."""
    import uvicorn

    lim = limits or ServerLimits()
    return uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False, proxy_headers=False,
                          server_header=False, timeout_keep_alive=lim.keep_alive_s,
                          http=_header_timeout_protocol(lim.header_timeout_s))


def check_port(port: int) -> int:
    """``port`` if it is a TCP port number (0 = any free port), else a ValueError."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"port must be between 0 and 65535 (0: any free port), got {port!r}")
    return port


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on (``host``, ``port``); port 0 picks a free one (read it with
    ``getsockname()``). An OSError naming the address when it cannot be had."""
    check_port(port)
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                                          flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as e:
        raise OSError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(2048)
    except OSError as e:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    sock.set_inheritable(True)
    return sock


def socket_url(sock: socket.socket) -> str:
    """``http://HOST:PORT`` of a bound socket (an IPv6 host in brackets)."""
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def serve(index: Retriever, host: str = "127.0.0.1", port: int = 8000, limits: ServerLimits | None = None,
          info: dict | None = None, log_level: str = "warning", announce: Callable[[str], None] | None = None) -> None:
    """Serve ``index`` until interrupted (:func:`run_app`)."""
    run_app(create_app(index, limits, info), host, port, limits, log_level, announce)


def run_app(app, host: str = "127.0.0.1", port: int = 8000, limits: ServerLimits | None = None,
            log_level: str = "warning", announce: Callable[[str], None] | None = None) -> None:
    """Run an ASGI ``app`` under uvicorn (:func:`uvicorn_config`: header and keep-alive timeouts;
    httptools and uvloop when installed) until interrupted. The socket is bound first, so
    ``announce`` gets the URL actually listened on (port 0: a free port) before the first request
    can arrive."""
    import uvicorn

    sock = bind_socket(host, port)
    config = uvicorn_config(app, host, sock.getsockname()[1], limits, log_level)
    if announce is not None:
        announce(socket_url(sock))
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
