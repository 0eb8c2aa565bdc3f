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
request (see BENCHMARKS.md, "Server overhead, one query per request").
``/health`` and everything else take FastAPI's normal path.

Client faults never become 5xx: a body over the limit is refused from its Content-Length before a
byte is read, and a chunked body is read only up to the limit; JSON too deep or a number too long
for Python's parser, and a query that is not valid Unicode (a lone surrogate), are 4xx. A client
that hangs up before its body arrived is counted in ``disconnects``, not in ``errors_5xx``.

Its parts: the micro-batcher (:mod:`~r1searcher.retrieval.server_batcher`), the search endpoints'
request checks and replies (:mod:`~r1searcher.retrieval.server_requests`), running under uvicorn
(:mod:`~r1searcher.retrieval.server_run`); this module puts them together into the app.
"""

import time
from collections.abc import Callable

from r1searcher.retrieval.base import Retriever
from r1searcher.retrieval.server_batcher import MicroBatcher, RequestTimeout, ServerStats
from r1searcher.retrieval.server_limits import ServerLimits
from r1searcher.retrieval.server_requests import RequestError, SearchHandlers, fast_app_class
from r1searcher.retrieval.server_run import bind_socket, check_port, run_app, socket_url, uvicorn_config

__all__ = ["MicroBatcher", "RequestError", "RequestTimeout", "ServerLimits", "bind_socket", "check_port", "create_app",
           "memory", "run_app", "serve", "socket_url", "uvicorn_config"]


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


def health_reply(index: Retriever, info: dict | None, stats: ServerStats, limits: ServerLimits) -> dict:
    """What ``GET /health`` answers: the index, memory, uptime, counters and limits."""
    s = stats
    return {
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
        "limits": limits.__dict__,
    }


def create_app(index: Retriever, limits: ServerLimits | None = None, info: dict | None = None):
    """The FastAPI app serving ``index``; ``info`` (e.g. the manifest) is echoed by ``/health``."""
    from contextlib import asynccontextmanager

    from fastapi import Request
    from fastapi.responses import JSONResponse

    lim = limits or ServerLimits()
    stats = ServerStats()
    batcher = MicroBatcher(index, lim, stats)
    handlers = SearchHandlers(batcher, lim, stats)

    @asynccontextmanager
    async def lifespan(_app):
        batcher.start()
        yield
        await batcher.stop()

    app = fast_app_class()(title="r1searcher retrieval", lifespan=lifespan)
    app.state.batcher, app.state.stats, app.state.limits = batcher, stats, lim

    async def health(_request: Request):
        return JSONResponse(health_reply(index, info, stats, lim))

    # Raw ASGI endpoints: they parse and validate the body themselves (clear 4xx messages, no
    # pydantic model, no Request/Response objects); the app dispatches to them directly.
    app.add_route("/retrieve", handlers.endpoint(handlers.retrieve), methods=["POST"])
    app.add_route("/queries", handlers.endpoint(handlers.queries), methods=["POST"])
    app.add_route("/health", health, methods=["GET"])
    return app


def serve(index: Retriever, host: str = "127.0.0.1", port: int = 8000, limits: ServerLimits | None = None,
          info: dict | None = None, log_level: str = "warning", announce: Callable[[str], None] | None = None) -> None:
    """Serve ``index`` until interrupted (:func:`~r1searcher.retrieval.server_run.run_app`)."""
    run_app(create_app(index, limits, info), host, port, limits, log_level, announce)
