"""``ServerLimits``: the retrieval server's request limits, in a module of its own so that
``r1searcher serve --help`` can show their defaults without importing the server (asyncio, FastAPI)."""

from dataclasses import dataclass


@dataclass
class ServerLimits:
    """Request limits; anything beyond them is refused with a 4xx naming the limit. The work and
    time limits keep one request from stalling the others (see the module doc)."""

    max_body_bytes: int = 4 << 20
    max_queries: int = 1024
    max_query_chars: int = 4096
    max_query_words: int = 256  # BM25 cost grows with the words of a query (one posting list each)
    max_k: int = 100
    max_results: int = 10_000  # queries × k in one request
    default_k: int = 3  # R1-Searcher's /queries default; /retrieve defaults to the same
    batch_wait_ms: float = 0.0  # 0: take what is ready now (batches still form while the index is busy)
    max_batch_queries: int = 1024
    slice_results: int = 1024  # a request is searched max(1, slice_results // k) queries at a time
    request_timeout_s: float = 20.0  # queue + search time of one request (0: none); over it: 503
    header_timeout_s: float = 10.0  # a request's headers must arrive within this (else: closed)
    body_timeout_s: float = 30.0  # a request's body must arrive within this (else: 408, closed)
    keep_alive_s: float = 5.0  # an idle keep-alive connection is closed after this (uvicorn's)

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "max_queries", "max_query_chars", "max_query_words", "max_k", "max_results",
                     "default_k", "max_batch_queries", "slice_results"):
            if getattr(self, name) < 1:
                raise ValueError(f"server limit {name} must be >= 1, got {getattr(self, name)}")
        for name in ("batch_wait_ms", "request_timeout_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"server limit {name} must be >= 0, got {getattr(self, name)}")
        for name in ("header_timeout_s", "body_timeout_s", "keep_alive_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"server limit {name} must be > 0, got {getattr(self, name)}")
