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
limit (body size, batch size, query length, k) answers a 4xx JSON ``{"error": …}`` naming it.

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
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from r1searcher.retrieval.base import Passage, Retriever

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
class ServerLimits:
    """Request limits; anything beyond them is refused with a 4xx naming the limit."""

    max_body_bytes: int = 4 << 20
    max_queries: int = 1024
    max_query_chars: int = 4096
    max_k: int = 100
    default_k: int = 3  # R1-Searcher's /queries default; /retrieve defaults to the same
    batch_wait_ms: float = 0.0  # 0: take what is ready now (batches still form while the index is busy)
    max_batch_queries: int = 1024


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


class RequestError(ValueError):
    """A client mistake: becomes a 4xx reply with ``{"error": message}``."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


class MicroBatcher:
    """Collects concurrent search calls into one ``index.search`` per batch window."""

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

    async def search(self, queries: list[str], k: int) -> list[list[Passage]]:
        if not queries:
            return []
        if self._queue is None:  # app used without its lifespan (should not happen under uvicorn)
            self.start()
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        await self._queue.put((queries, k, fut))  # type: ignore[union-attr]
        return await fut

    async def _worker(self) -> None:
        loop = asyncio.get_running_loop()
        q = self._queue
        assert q is not None
        wait = self.limits.batch_wait_ms / 1000.0
        while True:
            items = [await q.get()]
            n = len(items[0][0])
            # Let requests that are already readable be parsed (sleep(0) yields one loop turn) or,
            # with a window, wait for more; then take everything queued. Under load, batches also
            # form on their own: requests queue up while the previous batch runs in the thread.
            await asyncio.sleep(wait)
            while n < self.limits.max_batch_queries and not q.empty():
                item = q.get_nowait()
                items.append(item)
                n += len(item[0])
            all_q = [s for qs, _, _ in items for s in qs]
            kmax = max(k for _, k, _ in items)
            try:
                res = await loop.run_in_executor(self._pool, self.index.search, all_q, kmax)
            except Exception as e:  # the index failed: every waiting request gets the error
                for _, _, fut in items:
                    if not fut.done():
                        fut.set_exception(e)
                continue
            self.stats.batches += 1
            self.stats.batched_queries += len(all_q)
            pos = 0
            for qs, k, fut in items:
                if not fut.done():
                    fut.set_result([r[:k] for r in res[pos : pos + len(qs)]])
                pos += len(qs)


class ClientGone(Exception):
    """The client hung up before its request body arrived (nobody to answer; not a server error)."""


async def _read_body(scope: dict, receive, limit: int) -> bytes:
    """The request body, refused (413) from its Content-Length before reading, or as soon as a
    chunked stream passes ``limit``: never more than ``limit`` bytes are held. Raw ASGI (the
    ``http.request`` messages): no Starlette ``Request`` per call."""
    declared = None
    for name, value in scope["headers"]:
        if name == b"content-length":
            declared = value.decode("latin-1")
            break
    if declared is not None:
        if not declared.strip().isdigit():
            raise RequestError(f"invalid Content-Length header {declared[:40]!r}")
        if int(declared) > limit:
            raise RequestError(f"request body is {int(declared)} bytes; the limit is {limit}", 413)
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise RequestError(f"request body is over {limit} bytes (the limit); stopped reading at {size}", 413)
        if not message.get("more_body", False):
            if not chunks:  # the usual case: the whole body in one message
                return chunk
            chunks.append(chunk)
            return b"".join(chunks)
        chunks.append(chunk)


def _parse_body(raw: bytes, limits: ServerLimits) -> dict:
    if len(raw) > limits.max_body_bytes:
        raise RequestError(f"request body is {len(raw)} bytes; the limit is {limits.max_body_bytes}", 413)
    try:
        body = json.loads(raw)
    except RecursionError:
        raise RequestError("invalid JSON: nested too deeply") from None
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError, an integer over Python's digit limit
        raise RequestError(f"invalid JSON: {str(e).splitlines()[0][:200]}") from None
    if not isinstance(body, dict):
        raise RequestError(f"the body must be a JSON object, got {type(body).__name__}")
    return body


def _queries(body: dict, limits: ServerLimits) -> list[str]:
    qs = body.get("queries")
    if qs is None:
        raise RequestError("missing field 'queries' (a list of strings)", 422)
    if not isinstance(qs, list):
        raise RequestError(f"'queries' must be a list of strings, got {type(qs).__name__}", 422)
    if len(qs) > limits.max_queries:
        raise RequestError(f"{len(qs)} queries in one request; the limit is {limits.max_queries}", 413)
    for i, q in enumerate(qs):
        if not isinstance(q, str):
            raise RequestError(f"queries[{i}] must be a string, got {type(q).__name__}", 422)
        if len(q) > limits.max_query_chars:
            raise RequestError(f"queries[{i}] is {len(q)} characters; the limit is {limits.max_query_chars}", 413)
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
        raise RequestError(f"'{name}' is {k}; it must be between 1 and {limits.max_k}", 422)
    return k


_ROW_RE = re.compile(r"[^\d]*?0*(\d+)")


def _line(p: Passage, rank: int) -> str:
    """The passage as a line of R1-Searcher's corpus file: ``{row}\\t{title}   {text}``."""
    m = _ROW_RE.fullmatch(p.id)
    row = int(m.group(1)) if m else rank
    return f"{row}\t{' '.join(p.title.split())}   {' '.join(p.text.split())}"


_JSON_HEADERS = [(b"content-type", b"application/json")]


async def _send_json(send, body: bytes, status: int = 200) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [*_JSON_HEADERS, (b"content-length", str(len(body)).encode("ascii"))]})
    await send({"type": "http.response.body", "body": body})


class _Endpoint:
    """A search endpoint as a raw ASGI app: ``handle(body) -> reply`` with the body read, limited
    and parsed here and the reply encoded here (orjson when installed). Registered as an ordinary
    route, so it still shows in ``app.routes`` and can be removed; :class:`_App` calls it directly."""

    def __init__(self, handle, error, max_body_bytes: int):
        self.handle, self.error, self.max_body_bytes = handle, error, max_body_bytes

    async def __call__(self, scope, receive, send) -> None:
        try:
            body, status = _dumps(await self.handle(await _read_body(scope, receive, self.max_body_bytes))), 200
        except Exception as e:  # every failure is a JSON reply: 4xx for the client's, 500 for ours
            reply, status = self.error(e)  # (an unencodable reply, e.g. NaN, is a 500 too)
            body = json.dumps(reply).encode("ascii")  # ASCII escapes: any message encodes
        await _send_json(send, body, status)


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
        stats.errors_5xx += 1
        return {"error": f"retrieval failed: {type(e).__name__}: {e}"}, 500

    async def run(body: dict, kname: str) -> tuple[list[str], list[list[Passage]]]:
        qs = _queries(body, lim)
        k = _k(body, kname, lim)
        stats.requests += 1
        stats.queries += len(qs)
        return qs, await batcher.search(qs, k)

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
            "limits": lim.__dict__,
        })

    # Raw ASGI endpoints: they parse and validate the body themselves (clear 4xx messages, no
    # pydantic model, no Request/Response objects); _App dispatches to them directly.
    app.add_route("/retrieve", _Endpoint(retrieve, error, lim.max_body_bytes), methods=["POST"])
    app.add_route("/queries", _Endpoint(queries, error, lim.max_body_bytes), methods=["POST"])
    app.add_route("/health", health, methods=["GET"])
    return app


def serve(index: Retriever, host: str = "127.0.0.1", port: int = 8000, limits: ServerLimits | None = None,
          info: dict | None = None, log_level: str = "warning") -> None:
    """Run the app under uvicorn until interrupted (httptools and uvloop when installed: uvicorn's
    "auto"). No access log, so no proxy-header rewriting of the client address either, and no
    ``server`` header: per-request work that nothing here reads."""
    import uvicorn

    uvicorn.run(create_app(index, limits, info), host=host, port=port, log_level=log_level, access_log=False,
                proxy_headers=False, server_header=False)
