"""The ASGI app: ``POST /v1/chat/completions`` (JSON or Server-Sent Events), ``GET /v1/models``,
``GET /health``.

The completions endpoint is raw ASGI (as the retrieval server's search endpoints): it reads the
body under a size limit, validates it (``schema.py``), admits the request to the
:class:`~r1searcher.agent.batcher.Batcher` (429 with ``Retry-After`` when the queue is full, 503
while shutting down), then watches the connection while it waits: a client that hangs up (its
``http.disconnect``) releases its slot at once, and the engine ends its row at the next token.

Streaming (``"stream": true``) sends, as ``data: {chat.completion.chunk}`` lines::

    {"delta": {"role": "assistant", "content": ""}}                    at admission
    {"delta": {"r1searcher": {"event": "search", "index": i, "query": q}}}          as the model asks
    {"delta": {"r1searcher": {"event": "passages", "index": i, "query": q, "passages": [...]}}}
    {"delta": {"r1searcher": {"event": "done", "reasoning", "trajectory", "stop_reason", ...}}}
    {"delta": {"content": answer}}
    {"delta": {}, "finish_reason": "stop" | "length"}
    {"choices": [], "usage": {...}}                                    with stream_options.include_usage
    [DONE]

so every search event reaches the client before the answer. An error after the stream started is
one ``data: {"error": {...}}`` line (the ``openai`` client raises it).

Every request also has a deadline (``timeout_s``, at most the server's): past it the row ends at its
next token (``stop_reason`` ``timeout``); if the reply still has not come a little later (a
retriever that hangs), the request is released and answered 504.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

from r1searcher.agent.batcher import Batcher, Closed, Job, QueueFull
from r1searcher.util.asgi_body import ClientGone, read_body
from r1searcher.agent.schema import (
    ChatRequest,
    RequestError,
    ServeLimits,
    chunk,
    completion,
    completion_id,
    error_body,
    extension,
    finish_reason,
    now,
    parse_body,
    parse_request,
    usage,
)
from r1searcher.retrieval.server import memory

#: Extra seconds past a request's deadline before its handler gives up on the engine (504).
DEADLINE_GRACE_S = 10.0


def _dumps(obj) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


async def _send_json(send, status: int, obj: dict, headers: list | None = None) -> None:
    body = _dumps(obj)
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


async def _watch(receive) -> None:
    """Returns when the client disconnects (the body was read already, so nothing else arrives)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


class Completions:
    """``POST /v1/chat/completions`` as a raw ASGI app."""

    def __init__(self, batcher: Batcher, limits: ServeLimits, model_id: str, counters: dict):
        self.batcher, self.limits, self.model_id, self.counters = batcher, limits, model_id, counters

    async def __call__(self, scope, receive, send) -> None:
        try:
            req = parse_request(parse_body(await read_body(scope, receive, self.limits.max_body_bytes, RequestError), self.limits),
                                self.limits, self.model_id)
        except ClientGone:
            self.counters["disconnects"] += 1
            return
        except RequestError as e:
            self.counters["errors_4xx"] += 1
            await _send_json(send, e.status, error_body(str(e), e.status, e.param))
            return
        try:
            job = self.batcher.submit(req, asyncio.get_running_loop())
        except QueueFull as e:
            await _send_json(send, 429, error_body(str(e), 429), [(b"retry-after", str(e.retry_after).encode())])
            return
        except Closed as e:
            await _send_json(send, 503, error_body(str(e), 503), [(b"retry-after", b"5")])
            return
        watcher = asyncio.ensure_future(_watch(receive))
        try:
            if req.stream:
                await self._stream(job, req, send, watcher)
            else:
                await self._complete(job, req, send, watcher)
        except ClientGone:
            self.counters["disconnects"] += 1
        except OSError:  # writing to a socket the client closed
            self.counters["disconnects"] += 1
        finally:
            watcher.cancel()
            self.batcher.release(job)

    async def _next(self, job: Job, watcher: asyncio.Future) -> tuple[str, dict]:
        """The job's next event; ClientGone when the client hung up first; a 504 error event when the
        deadline passed while it still waited in the queue, or the engine has not answered
        ``DEADLINE_GRACE_S`` past it (its row ends at the deadline, so only a hung retriever does that)."""
        get = asyncio.ensure_future(job.events.get())
        try:
            while True:
                grace = 0.0 if job.state == "pending" else DEADLINE_GRACE_S
                timeout = max(0.0, job.deadline + grace - time.monotonic())
                done, _ = await asyncio.wait({get, watcher}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                if get in done:
                    return get.result()
                if watcher in done:
                    raise ClientGone()
                if job.state == "pending" or time.monotonic() >= job.deadline + DEADLINE_GRACE_S:
                    self.batcher.release(job, "timeout")
                    where = "waiting in the queue" if job.state == "pending" else "from the engine"
                    return "error", {"status": 504,
                                     "message": f"no answer within the request's {job.request.timeout_s:g} s ({where})"}
        finally:
            if not get.done():
                get.cancel()

    def _finished(self, payload: dict, job: Job) -> tuple:
        traj = payload["trajectory"]
        reason = job.end_reason
        if traj.stop_reason == "retriever_error":
            return None, {"status": 502, "message": "the retriever failed for this request's query (see the server log)"}
        timings = {"queue_s": payload["queue_s"], "batch_size": payload["batch_size"],
                   "seconds": round(time.monotonic() - job.submitted, 3)}
        return (traj, reason, timings), None

    async def _complete(self, job: Job, req: ChatRequest, send, watcher) -> None:
        cid, created = completion_id(), now()
        while True:
            kind, payload = await self._next(job, watcher)
            if kind == "done":
                done, err = self._finished(payload, job)
                if err is None:
                    traj, reason, timings = done
                    self.counters["answered"] += 1
                    await _send_json(send, 200, completion(cid, created, self.model_id, traj, reason, timings))
                    return
                payload = err
                kind = "error"
            if kind == "error":
                self.counters["errors_5xx"] += 1
                await _send_json(send, payload["status"], error_body(payload["message"], payload["status"]))
                return

    async def _stream(self, job: Job, req: ChatRequest, send, watcher) -> None:
        cid, created, model = completion_id(), now(), self.model_id

        async def emit(obj) -> None:
            await send({"type": "http.response.body", "body": b"data: " + _dumps(obj) + b"\n\n", "more_body": True})

        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache"),
                                (b"x-accel-buffering", b"no")]})
        await emit(chunk(cid, created, model, {"role": "assistant", "content": ""}))
        while True:
            kind, payload = await self._next(job, watcher)
            if kind in ("search", "passages"):
                await emit(chunk(cid, created, model, {"r1searcher": {"event": kind, **payload}}))
                continue
            if kind == "done":
                done, err = self._finished(payload, job)
                if err is None:
                    traj, reason, timings = done
                    ext = extension(traj, reason, timings)
                    ext.pop("searches")  # already streamed, one event each
                    await emit(chunk(cid, created, model, {"r1searcher": {"event": "done", **ext}}))
                    await emit(chunk(cid, created, model, {"content": traj.answer or ""}))
                    await emit(chunk(cid, created, model, {}, finish_reason(reason or traj.stop_reason)))
                    if req.include_usage:
                        await emit(chunk(cid, created, model, {}, usage_=usage(traj), choices=False))
                    self.counters["answered"] += 1
                    break
                payload = err
            self.counters["errors_5xx"] += 1
            await emit(error_body(payload["message"], payload["status"]))
            break
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})


def create_app(batcher: Batcher, limits: ServeLimits, model_id: str, info: dict | None = None):
    """The FastAPI app around a :class:`Batcher`; its lifespan starts and stops the worker thread."""
    from contextlib import asynccontextmanager

    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    counters = {"answered": 0, "errors_4xx": 0, "errors_5xx": 0, "disconnects": 0}
    created = now()

    @asynccontextmanager
    async def lifespan(_app):
        batcher.start()
        yield
        await asyncio.get_running_loop().run_in_executor(None, batcher.stop)

    app = FastAPI(title="r1searcher agent", lifespan=lifespan)
    app.state.batcher = batcher

    async def models(_request):
        return JSONResponse({"object": "list", "data": [
            {"id": model_id, "object": "model", "created": created, "owned_by": "r1searcher"}]})

    async def health(_request):
        s = batcher.stats
        counts = dict(batcher.engine.counts)
        return JSONResponse({
            "status": "ok",
            "model": model_id,
            **(info or {}),
            "queue_depth": batcher.queue_depth,
            "in_flight": batcher.in_flight,
            "running": batcher.running,
            "max_batch": batcher.max_batch,
            "max_wait_ms": batcher.max_wait_s * 1000.0,
            "max_queue": batcher.max_queue,
            "requests": s.requests,
            "rejected": s.rejected,
            "cancelled": s.cancelled,
            "failed": s.failed,
            **counts,  # rows, decode_steps, decode_rows, timeouts, retrieval_calls
            "mean_batch": round(counts["decode_rows"] / counts["decode_steps"], 2) if counts["decode_steps"] else 0.0,
            "sessions": s.batches,
            "busy_s": round(s.busy_s, 2),
            "uptime_s": round(time.time() - s.started, 1),
            **counters,
            "limits": limits.__dict__,
            "memory": memory(),
        })

    app.add_route("/v1/chat/completions", Completions(batcher, limits, model_id, counters), methods=["POST"])
    app.add_route("/v1/models", models, methods=["GET"])
    app.add_route("/health", health, methods=["GET"])
    return app


def serve(app, host: str = "127.0.0.1", port: int = 8001, log_level: str = "warning",
          announce: Callable[[str], None] | None = None) -> None:
    """Run the app until interrupted, as the retrieval server runs (``retrieval.server.run_app``: the
    bound port announced; request headers must arrive within its header timeout, idle keep-alive
    connections close), so a half-sent request cannot hold a connection forever."""
    from r1searcher.retrieval.server import run_app

    run_app(app, host, port, None, log_level, announce)
