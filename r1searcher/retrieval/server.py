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
* ``GET /health``: the index's kind, size, corpus hash and batching counters.

Why micro-batching: a rollout engine, or many of them, send small requests concurrently; BM25
and dense search are far cheaper per query in batches (one encoder forward, one thread pool).
Requests go into an asyncio queue; one worker takes everything queued (after one event-loop
turn, or ``batch_wait_ms`` if set; up to ``max_batch_queries``), runs one ``index.search`` in a
worker thread, and hands each request its slice; requests arriving meanwhile form the next batch. Bad input never reaches the index: every
limit (body size, batch size, query length, k) answers a 4xx JSON ``{"error": …}`` naming it.

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


async def _read_body(request, limit: int) -> bytes:
    """The request body, refused (413) from its Content-Length before reading, or as soon as a
    chunked stream passes ``limit``: never more than ``limit`` bytes are held."""
    from starlette.requests import ClientDisconnect

    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise RequestError(f"invalid Content-Length header {declared[:40]!r}")
        if int(declared) > limit:
            raise RequestError(f"request body is {int(declared)} bytes; the limit is {limit}", 413)
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise RequestError(f"request body is over {limit} bytes (the limit); stopped reading at {size}", 413)
            chunks.append(chunk)
    except ClientDisconnect:
        raise ClientGone() from None
    return b"".join(chunks)


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


def create_app(index: Retriever, limits: ServerLimits | None = None, info: dict | None = None):
    """The FastAPI app serving ``index``; ``info`` (e.g. the manifest) is echoed by ``/health``."""
    from contextlib import asynccontextmanager

    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse

    lim = limits or ServerLimits()
    stats = _Stats()
    batcher = MicroBatcher(index, lim, stats)

    @asynccontextmanager
    async def lifespan(_app):
        batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="r1searcher retrieval", lifespan=lifespan)
    app.state.batcher, app.state.stats, app.state.limits = batcher, stats, lim

    def error(e: Exception) -> JSONResponse:
        if isinstance(e, ClientGone):  # nobody reads this reply
            stats.disconnects += 1
            return JSONResponse({"error": "client disconnected"}, status_code=400)
        if isinstance(e, RequestError):
            stats.errors_4xx += 1
            return JSONResponse({"error": str(e)}, status_code=e.status)
        stats.errors_5xx += 1
        return JSONResponse({"error": f"retrieval failed: {type(e).__name__}: {e}"}, status_code=500)

    async def run(request: Request, kname: str) -> tuple[dict, list[str], int, list[list[Passage]]]:
        body = _parse_body(await _read_body(request, lim.max_body_bytes), lim)
        qs = _queries(body, lim)
        k = _k(body, kname, lim)
        stats.requests += 1
        stats.queries += len(qs)
        return body, qs, k, await batcher.search(qs, k)

    async def retrieve(request: Request):
        try:
            body, _qs, _k2, res = await run(request, "topk")
            scores = body.get("return_scores", False)
            if not isinstance(scores, bool):
                raise RequestError("'return_scores' must be true or false", 422)
        except Exception as e:
            return error(e)
        if scores:
            result = [[{"document": {"id": p.id, "contents": p.contents}, "score": p.score} for p in r] for r in res]
        else:
            result = [[{"id": p.id, "contents": p.contents} for p in r] for r in res]
        return JSONResponse({"result": result})

    async def queries(request: Request):
        try:
            _body, qs, _k2, res = await run(request, "k")
        except Exception as e:
            return error(e)
        return JSONResponse(
            {
                "queries": qs,
                "answers": [[_line(p, j) for j, p in enumerate(r)] for r in res],
                "ids": [[p.id for p in r] for r in res],
                "scores": [[p.score for p in r] for r in res],
            }
        )

    async def health(_request: Request):
        s = stats
        return JSONResponse({
            "status": "ok",
            "passages": len(index) if hasattr(index, "__len__") else None,  # type: ignore[arg-type]
            **(info or {}),
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

    # Plain Starlette routes: the handlers parse and validate the body themselves (clear 4xx
    # messages, no pydantic model), so FastAPI's per-request dependency solving is pure cost.
    app.add_route("/retrieve", retrieve, methods=["POST"])
    app.add_route("/queries", queries, methods=["POST"])
    app.add_route("/health", health, methods=["GET"])
    return app


def serve(index: Retriever, host: str = "127.0.0.1", port: int = 8000, limits: ServerLimits | None = None,
          info: dict | None = None, log_level: str = "warning") -> None:
    """Run the app under uvicorn until interrupted."""
    import uvicorn

    uvicorn.run(create_app(index, limits, info), host=host, port=port, log_level=log_level, access_log=False)
