"""Concurrent requests → rows of one running batch of the rollout engine, on one worker thread.

Requests wait in a bounded FIFO (``max_queue``; a full queue is refused at once: the server's 429).
When the engine is idle, the worker takes the oldest request, waits up to ``max_wait_ms`` for more
(unless ``max_batch`` are already waiting) and starts a :meth:`ServingEngine.session` with up to
``max_batch`` requests that share its sampling setting. While the session runs, the engine asks
for more between decode steps (:meth:`Batcher._admit`, without waiting) and requests join the
running batch as rows end (continuous batching). A session admits only while the oldest waiting
request has its sampling setting, so a request with another setting waits for the batch to drain,
never behind an endless stream of newer ones. Results and search events reach each request's
asyncio queue through its event loop (``call_soon_threadsafe``). Same shape as the retrieval
server's micro-batcher (``retrieval/server.py``), with a thread because one session runs long.

A request holds a slot from :meth:`Batcher.submit` until :meth:`Batcher.release`. Releasing one
that is not done cancels it: a waiting request leaves the queue, a running one ends at its next
token (``ServingEngine``) and its result is dropped. So a client that hangs up frees its slot.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from r1searcher.agent.schema import ChatRequest


class QueueFull(RuntimeError):
    """The queue holds ``max_queue`` requests; retry after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


class Closed(RuntimeError):
    """The batcher is stopped (the server is shutting down)."""


@dataclass(eq=False)
class Job:
    """One request in flight: its limits, where its events go, and whether it still matters."""

    request: ChatRequest
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue
    submitted: float  # time.monotonic()
    deadline: float  # time.monotonic() after which its row ends (queue wait included)
    cancelled: bool = False
    end_reason: str | None = None  # "timeout" / "cancelled" when a limit, not the model, ended it
    state: str = "pending"  # pending → running → done
    started: float | None = None

    @property
    def question(self) -> str:
        return self.request.question

    @property
    def max_tokens(self) -> int:
        return self.request.max_tokens

    @property
    def max_searches(self) -> int:
        return self.request.max_searches

    def finish(self, trajectory, batch_size: int) -> None:
        """Hand the request its trajectory (once): as soon as its row ends, not when its batch does."""
        if self.state == "done":
            return
        self.state = "done"
        queue_s = (self.started or self.submitted) - self.submitted
        self.emit("done", {"trajectory": trajectory, "batch_size": batch_size, "queue_s": round(queue_s, 3)})

    def emit(self, kind: str, payload: dict) -> None:
        """Hand an event to the request's coroutine (from any thread); dropped once it is cancelled."""
        if self.cancelled:
            return
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, (kind, payload))
        except RuntimeError:  # the event loop is closed: the server is gone
            pass


@dataclass
class BatchStats:
    started: float = field(default_factory=time.time)
    requests: int = 0  # admitted
    rejected: int = 0  # refused: queue full
    cancelled: int = 0  # released before done (client gone, or the handler's deadline)
    failed: int = 0  # engine errors
    batches: int = 0  # engine sessions (a session runs until no row is left)
    busy_s: float = 0.0
    recent_request_s: deque = field(default_factory=lambda: deque(maxlen=32))  # submit → done


class Batcher:
    """Runs admitted requests through ``engine`` (a :class:`ServingEngine`) in batches."""

    def __init__(self, engine, max_batch: int = 8, max_wait_ms: float = 10.0, max_queue: int = 64, seed: int = 0):
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if max_queue < 1:
            raise ValueError(f"max_queue must be >= 1, got {max_queue}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms}")
        self.engine = engine
        self.max_batch, self.max_wait_s, self.max_queue = max_batch, max_wait_ms / 1000.0, max_queue
        self.stats = BatchStats()
        self._cond = threading.Condition()
        self._pending: deque[Job] = deque()
        self._running: list[Job] = []
        self._live: set[Job] = set()
        self._closed = False
        self._seed = seed
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ state for /health
    @property
    def queue_depth(self) -> int:
        return len(self._pending)

    @property
    def in_flight(self) -> int:
        """Requests holding a slot: admitted and not yet released (waiting or running)."""
        return len(self._live)

    @property
    def running(self) -> int:
        """Requests whose rows are in the running batch."""
        return sum(j.state == "running" and not j.cancelled for j in self._running)

    def retry_after(self) -> int:
        """Seconds until a slot likely frees: recent requests' time × the queue ahead, in batches."""
        recent = self.stats.recent_request_s
        per_request = sum(recent) / len(recent) if recent else 1.0
        return max(1, min(60, math.ceil(per_request * len(self._pending) / self.max_batch)))

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="r1s-agent-batcher", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Refuse new requests, cancel every admitted one, and wait for the worker to end."""
        with self._cond:
            self._closed = True
            for job in [*self._pending, *self._running]:
                job.emit("error", {"status": 503, "message": "the server is shutting down"})
                job.cancelled = True
            self._pending.clear()
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    # ------------------------------------------------------------------ requests
    def submit(self, request: ChatRequest, loop: asyncio.AbstractEventLoop) -> Job:
        """Admit a request (raises :class:`QueueFull` or :class:`Closed`)."""
        with self._cond:
            if self._closed:
                raise Closed("the server is shutting down")
            if len(self._pending) >= self.max_queue:
                self.stats.rejected += 1
                raise QueueFull(f"the queue is full ({self.max_queue} requests waiting); retry later",
                                self.retry_after())
            now = time.monotonic()
            job = Job(request, loop, asyncio.Queue(), now, now + request.timeout_s)
            self._pending.append(job)
            self._live.add(job)
            self.stats.requests += 1
            self._cond.notify_all()
        return job

    def release(self, job: Job, reason: str = "cancelled") -> None:
        """Free the request's slot; if it is not done, cancel it (it leaves the queue, or its row ends)."""
        with self._cond:
            if job.state == "done" and not job.cancelled:
                self.stats.recent_request_s.append(time.monotonic() - job.submitted)
            if job.state != "done" and not job.cancelled:
                job.cancelled = True
                job.end_reason = job.end_reason or reason
                self.stats.cancelled += 1
                if job.state == "pending":
                    try:
                        self._pending.remove(job)
                    except ValueError:
                        pass
                    self._cond.notify_all()
            self._live.discard(job)

    # ------------------------------------------------------------------ the worker
    def _admit(self, free: int, key: tuple | None = None, wait: bool = False) -> list[Job] | None:
        """Up to ``free`` waiting requests, oldest first, with sampling setting ``key`` (None: the
        oldest's); stop at the first with another setting. ``wait``: block until one is waiting, then
        give the batch ``max_wait_ms`` to fill. None once stopped."""
        with self._cond:
            if wait:
                while not self._closed and not self._pending:
                    self._cond.wait()
                wait_until = time.monotonic() + self.max_wait_s
                while not self._closed and 0 < len(self._pending) < free:
                    remaining = wait_until - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
            if self._closed:
                return None
            key = key if key is not None or not self._pending else self._pending[0].request.sampling_key
            taken: list[Job] = []
            while self._pending and len(taken) < free and self._pending[0].request.sampling_key == key:
                taken.append(self._pending.popleft())
            now = time.monotonic()
            for job in taken:
                job.state, job.started = "running", now
            self._running = [j for j in self._running if j.state == "running"] + taken
            return taken

    def _loop(self) -> None:
        while True:
            first = self._admit(self.max_batch, wait=True)
            if first is None:
                return
            if first:
                self._session(first)

    def _session(self, first: list[Job]) -> None:
        req = first[0].request
        key = req.sampling_key
        self._seed += 1
        t0 = time.perf_counter()
        error = None
        try:
            self.engine.session(first, lambda free: self._admit(free, key) or [], greedy=req.greedy,
                                temperature=req.temperature, top_p=req.top_p, seed=self._seed)
        except Exception as e:  # noqa: BLE001 - every request still in the batch gets the error
            error = f"generation failed: {type(e).__name__}: {e}"
        with self._cond:
            s = self.stats
            s.batches += 1
            s.busy_s += time.perf_counter() - t0
            unfinished = [j for j in self._running if j.state != "done"]
            self._running = []
        for job in unfinished:  # only after an engine error: a session ends when every row has
            job.state = "done"
            s.failed += 1
            job.emit("error", {"status": 500, "message": error or "generation ended without an answer"})
