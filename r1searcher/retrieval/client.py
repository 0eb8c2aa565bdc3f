"""``HttpRetriever``: the Retriever protocol over HTTP, for our server or any Search-R1 / R1-Searcher one.

* ``api="retrieve"`` posts Search-R1's ``/retrieve`` (ids and scores come back);
  ``api="queries"`` posts R1-Searcher's ``/queries`` (answer lines are corpus lines,
  ``{row}\\t{title}   {text}`` as R1-Searcher's own server and ours send them, or ``Title\\ntext``;
  ids and scores when the server adds them, as ours does); ``api="auto"`` tries ``/retrieve`` first and
  switches to ``/queries`` for good if the server does not have it (404/405).
* The URL must name its scheme (``http://`` or ``https://``): ``localhost:8000`` is refused at once.
* One ``httpx.Client`` (keep-alive connection pool) per retriever; thread-safe.
* Connection errors, timeouts, 429 and 5xx are retried ``retries`` times with exponential backoff
  (``backoff · 2^attempt`` seconds); 4xx replies are not retried. When it gives up it raises
  :class:`RetrieverError` naming the URL and the last cause: never an empty result that a
  rollout would mistake for "nothing found".
* An LRU cache of (query, k) → passages: GRPO groups sample the same question many times, and
  their first queries repeat; hits never touch the network.
"""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from urllib.parse import urlsplit

from r1searcher.retrieval.base import Passage, RetrieverError, check_batch

APIS = ("auto", "retrieve", "queries")


class _LRU:
    def __init__(self, size: int):
        self.size = size
        self._d: OrderedDict[tuple[str, int], list[Passage]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple[str, int]) -> list[Passage] | None:
        if self.size <= 0:
            self.misses += 1
            return None
        with self._lock:
            v = self._d.get(key)
            if v is None:
                self.misses += 1
                return None
            self._d.move_to_end(key)
            self.hits += 1
            return v

    def put(self, key: tuple[str, int], value: list[Passage]) -> None:
        if self.size <= 0:
            return
        with self._lock:
            self._d[key] = value
            self._d.move_to_end(key)
            while len(self._d) > self.size:
                self._d.popitem(last=False)

    def __len__(self) -> int:
        return len(self._d)


def split_contents(contents: str) -> tuple[str, str]:
    """Search-R1 ``contents`` → (title, text); a quoted title (wiki-18 style) is unquoted."""
    title, sep, text = contents.partition("\n")
    if not sep:
        return "", contents
    title = title.strip()
    if len(title) >= 2 and title[0] == '"' and title[-1] == '"':
        title = title[1:-1]
    return title, text


_ROW_PREFIX = re.compile(r"^\d+\t")


def _split_line(line: str) -> tuple[str, str]:
    """An R1-Searcher answer line → (title, text): ``{row}\\t{title}   {text}`` or ``Title\\ntext``."""
    if _ROW_PREFIX.match(line):
        title, sep, text = _ROW_PREFIX.sub("", line, count=1).partition("   ")
        return (title.strip(), text) if sep else ("", title)
    return split_contents(line)


def check_url(url: str) -> str:
    """``url`` without a trailing slash; ValueError at once when it has no http(s) scheme or host."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        hint = f" (did you mean http://{url.strip()}?)" if "://" not in url else ""
        raise ValueError(f"retrieval server URL {url!r} must start with http:// or https:// and name a host{hint}")
    return url.strip().rstrip("/")


class HttpRetriever:
    """A :class:`~r1searcher.retrieval.base.Retriever` backed by a retrieval server."""

    def __init__(
        self,
        url: str,
        api: str = "auto",
        timeout: float = 30.0,
        retries: int = 3,
        backoff: float = 0.25,
        cache_size: int = 4096,
        max_batch: int = 512,
    ):
        if api not in APIS:
            raise ValueError(f"api must be one of {APIS}, got {api!r}")
        if retries < 0 or backoff < 0 or timeout <= 0 or max_batch < 1:
            raise ValueError("retries and backoff must be >= 0, timeout and max_batch > 0")
        import httpx

        self.url = check_url(url)
        self.api = api
        self.retries, self.backoff, self.max_batch = retries, backoff, max_batch
        self.cache = _LRU(cache_size)
        self._http = httpx.Client(timeout=timeout, limits=httpx.Limits(max_keepalive_connections=64, max_connections=128))
        self._httpx = httpx
        self.requests = 0  # HTTP attempts made (retries included), for tests and logs

    def __enter__(self) -> HttpRetriever:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # ------------------------------------------------------------------ HTTP
    def _post(self, path: str, payload: dict) -> dict | None:
        """POST with retries; ``None`` means 404/405 (endpoint absent: lets ``auto`` fall back)."""
        url = f"{self.url}{path}"
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * (2 ** (attempt - 1)))
            self.requests += 1
            try:
                r = self._http.post(url, json=payload)
            except self._httpx.TimeoutException as e:
                last = f"timed out ({type(e).__name__})"
                continue
            except self._httpx.TransportError as e:
                last = f"cannot connect ({type(e).__name__}: {e})"
                continue
            if r.status_code in (404, 405):
                return None
            if r.status_code == 429 or r.status_code >= 500:
                last = f"HTTP {r.status_code}: {_error_text(r)}"
                continue
            if r.status_code >= 400:
                raise RetrieverError(f"retrieval server {url} refused the request: HTTP {r.status_code}: {_error_text(r)}")
            try:
                return r.json()
            except ValueError:
                raise RetrieverError(f"retrieval server {url} sent a reply that is not JSON: {r.text[:200]!r}") from None
        raise RetrieverError(f"retrieval server {url} failed after {self.retries + 1} attempts: {last}")

    def _via_retrieve(self, queries: list[str], k: int) -> list[list[Passage]] | None:
        reply = self._post("/retrieve", {"queries": queries, "topk": k, "return_scores": True})
        if reply is None:
            return None
        result = reply.get("result") if isinstance(reply, dict) else None
        if not isinstance(result, list) or len(result) != len(queries):
            raise RetrieverError(f"{self.url}/retrieve: expected 'result' with {len(queries)} lists, got {str(reply)[:200]}")
        out = []
        for items in result:
            ps = []
            for it in items:
                doc, score = (it.get("document"), it.get("score")) if "document" in it else (it, None)
                title, text = split_contents(str(doc.get("contents", "")))
                ps.append(Passage(id=str(doc.get("id", "")), title=title, text=text, score=score))
            out.append(ps)
        return out

    def _via_queries(self, queries: list[str], k: int) -> list[list[Passage]] | None:
        reply = self._post("/queries", {"queries": queries, "k": k})
        if reply is None:
            return None
        answers = reply.get("answers") if isinstance(reply, dict) else None
        if not isinstance(answers, list) or len(answers) != len(queries):
            raise RetrieverError(f"{self.url}/queries: expected 'answers' with {len(queries)} lists, got {str(reply)[:200]}")
        ids = reply.get("ids") or [[None] * len(a) for a in answers]
        scores = reply.get("scores") or [[None] * len(a) for a in answers]
        out = []
        for lines, qids, qscores in zip(answers, ids, scores):
            ps = []
            for j, line in enumerate(lines):
                title, text = _split_line(str(line))
                pid = qids[j] if j < len(qids) and qids[j] is not None else ""
                ps.append(Passage(id=str(pid), title=title, text=text, score=qscores[j] if j < len(qscores) else None))
            out.append(ps)
        return out

    def _fetch(self, queries: list[str], k: int) -> list[list[Passage]]:
        if self.api in ("auto", "retrieve"):
            res = self._via_retrieve(queries, k)
            if res is not None:
                return res
            if self.api == "retrieve":
                raise RetrieverError(f"retrieval server {self.url} has no /retrieve endpoint (try api='queries')")
            self.api = "queries"
        res = self._via_queries(queries, k)
        if res is None:
            raise RetrieverError(f"retrieval server {self.url} has no /queries endpoint (try api='retrieve')")
        return res

    # ------------------------------------------------------------------ protocol
    def search(self, queries: list[str], k: int) -> list[list[Passage]]:
        """Top-``k`` passages per query; cached queries are answered locally, the rest in one request."""
        check_batch(queries, k)
        out: list[list[Passage] | None] = [self.cache.get((q, k)) for q in queries]
        todo: dict[str, list[int]] = {}
        for i, (q, hit) in enumerate(zip(queries, out)):
            if hit is None:
                todo.setdefault(q, []).append(i)
        uniq = list(todo)
        for start in range(0, len(uniq), self.max_batch):
            chunk = uniq[start : start + self.max_batch]
            for q, res in zip(chunk, self._fetch(chunk, k)):
                self.cache.put((q, k), res)
                for i in todo[q]:
                    out[i] = res
        return [list(r) for r in out]  # type: ignore[arg-type]

    def health(self) -> dict:
        """``GET /health`` (raises RetrieverError when the server is unreachable)."""
        try:
            r = self._http.get(f"{self.url}/health")
            r.raise_for_status()
            return r.json()
        except (self._httpx.HTTPError, ValueError) as e:
            raise RetrieverError(f"retrieval server {self.url}/health: {type(e).__name__}: {e}") from None


def _error_text(r) -> str:
    try:
        j = r.json()
        if isinstance(j, dict) and "error" in j:
            return str(j["error"])
        return str(j)[:300]
    except ValueError:
        return r.text[:300]
