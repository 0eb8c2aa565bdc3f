"""The retrieval server's micro-batcher: concurrent requests become one ``index.search`` per batch,
each request cut into slices so that a small request never waits behind the whole of a big one
(see :mod:`~r1searcher.retrieval.server`'s module doc for why)."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from r1searcher.retrieval.base import Passage, Retriever
from r1searcher.retrieval.server_limits import ServerLimits


@dataclass
class ServerStats:
    """Counters ``/health`` shows: requests, queries, batches, errors by kind."""

    started: float = field(default_factory=time.time)
    requests: int = 0
    queries: int = 0
    batches: int = 0
    batched_queries: int = 0
    errors_4xx: int = 0
    errors_5xx: int = 0
    disconnects: int = 0
    timeouts: int = 0  # requests answered 503 because they ran past request_timeout_s


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

    def __init__(self, index: Retriever, limits: ServerLimits, stats: ServerStats):
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

