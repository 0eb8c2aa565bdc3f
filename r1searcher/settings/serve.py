"""The ``serve`` section: the retrieval server's request limits (``r1searcher serve``'s flags).

Anything beyond a limit is refused with a 4xx naming it. The work and time limits keep one request
from stalling the others (see ``r1searcher.retrieval.server``). This module imports no asyncio or
FastAPI, so ``r1searcher serve --help`` shows the defaults cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from r1searcher.settings.fields import Section, knob


@dataclass(frozen=True)
class ServerLimits(Section):
    """Request limits of the retrieval server."""

    SECTION: ClassVar[str] = "serve"
    max_body_bytes: int = knob(4 << 20, "bytes of one request body", ge=1)
    max_queries: int = knob(1024, "queries per request", ge=1)
    max_query_chars: int = knob(4096, "characters per query", ge=1)
    max_query_words: int = knob(256, "words per query (BM25 cost grows with them: one posting list each)", ge=1)
    max_k: int = knob(100, "largest k / topk", ge=1)
    max_results: int = knob(10_000, "queries × k in one request", ge=1)
    default_k: int = knob(3, "k when a request gives none (R1-Searcher's /queries default; /retrieve the same)", ge=1)
    batch_wait_ms: float = knob(0.0, "wait for more requests to batch (0: take what is ready now; batches still "
                                "form while the index is busy)", ge=0)
    max_batch_queries: int = knob(1024, "queries searched in one batch", ge=1)
    slice_results: int = knob(1024, "a request is searched max(1, slice_results // k) queries at a time", ge=1)
    request_timeout_s: float = knob(20.0, "queue + search time of one request (0: none); over it: 503", ge=0)
    header_timeout_s: float = knob(10.0, "a request's headers must arrive within this (else: closed)", gt=0)
    body_timeout_s: float = knob(30.0, "a request's body must arrive within this (else: 408, closed)", gt=0)
    keep_alive_s: float = knob(5.0, "an idle keep-alive connection is closed after this (uvicorn's)", gt=0)
