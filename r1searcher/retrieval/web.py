"""``WebRetriever``: the Retriever protocol over live web search, as in the paper's online evaluation.

For every query (a batch runs concurrently, each stage under its own limit):

1. ask the search API (:mod:`~r1searcher.retrieval.providers`) for the top ``max(k, pages)`` hits;
2. fetch those pages concurrently (one GET per distinct URL in the batch; httpx, timeouts, a byte
   cap, a User-Agent naming r1searcher), turn HTML into main text (trafilatura), cut the text at
   "References"/"Notes" (as the paper does for Wikipedia) and at ``max_page_chars`` (the paper's
   35,000 characters);
3. either **summarise** each page against the query with an OpenAI-compatible chat endpoint (the
   paper's extract-relevant-content prompt; "None" answers dropped; see
   :mod:`~r1searcher.retrieval.summarize`), one passage per page in search rank order, or, with no
   summariser configured, return the **best-matching passages**: BM25 over the pages' ~100-word
   chunks (paragraphs packed up to ``chunk_words``), topped up with each page's first chunk when
   fewer than ``k`` chunks match.

A page that cannot be fetched (error status, timeout, not HTML/text, no text, or a host that is
not a public address, see below) is replaced by the search snippet. Passage ``id`` is the page URL; ``score`` is the BM25 score (0.0 for a top-up
chunk) or, for summaries and snippets, ``1/rank`` of the hit.

Everything paid for is cached on disk (:class:`~r1searcher.retrieval.webcache.WebCache`): search
replies, extracted pages (permanent failures too; transient ones for ``failure_ttl_s``) and raw
summaries, so a rerun of the same queries makes no HTTP request at all.

Configuration (arguments win over the environment; see :meth:`WebConfig.from_env`):

* ``R1SEARCHER_WEB_PROVIDER`` (``serper`` default, ``bing``, ``brave``, ``searxng``),
  ``R1SEARCHER_WEB_BASE_URL`` (default: the provider's public endpoint; required for searxng),
  ``R1SEARCHER_WEB_API_KEY``, ``R1SEARCHER_WEB_QUERY_SUFFIX`` (the paper used
  ``" site:en.wikipedia.org"``), ``R1SEARCHER_WEB_RPS`` (search requests per second),
  ``R1SEARCHER_CACHE_DIR`` (the cache root, see :mod:`r1searcher.paths`; the file is ``web.sqlite``).
* ``R1SEARCHER_WEB_ALLOW_PRIVATE_URLS`` (``allow_private_urls``, default off): fetch pages from
  loopback, private and link-local addresses too. Off, a search result (or a redirect) whose host
  is or resolves to such an address is not fetched (an SSRF guard, :mod:`~r1searcher.retrieval.urlguard`);
  the search API and summariser endpoints, which you configure, are not affected.
* Credentials in the base URLs (``https://user:password@host``) and the API keys never show in
  :meth:`WebRetriever.describe` (``/health``, ``serve``'s log), error messages or ``repr(WebConfig)``.
* Summariser: on when ``R1SEARCHER_SUMMARY_BASE_URL`` or ``R1SEARCHER_SUMMARY_MODEL`` is set (or
  ``summarize=True``). It is the judge's chat client (:class:`r1searcher.judge.Judge`), so what is
  not set falls back as the judge's does: base URL ``R1SEARCHER_SUMMARY_BASE_URL`` →
  ``R1SEARCHER_JUDGE_BASE_URL`` → ``OPENAI_BASE_URL`` → ``https://api.openai.com/v1``; model
  ``R1SEARCHER_SUMMARY_MODEL`` → ``R1SEARCHER_JUDGE_MODEL`` → ``gpt-4o-mini`` (the paper's);
  key ``R1SEARCHER_SUMMARY_API_KEY`` → ``R1SEARCHER_JUDGE_API_KEY`` → ``OPENAI_API_KEY``.
"""

from __future__ import annotations

import html
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, TypeVar

import httpx

from r1searcher import __version__
from r1searcher.retrieval.base import Passage, check_batch
from r1searcher.retrieval.corpus import split_words
from r1searcher.http_retry import RetryPolicy
from r1searcher.retrieval import urlguard
from r1searcher.retrieval.providers import SearchClient, SearchResult, get_provider
from r1searcher.retrieval.redact import MASK, redact_text, redact_url, url_secrets
from r1searcher.retrieval.summarize import PAPER_SUMMARY_MAX_TOKENS, Summarizer
from r1searcher.retrieval.webcache import FILENAME as CACHE_FILE
from r1searcher.retrieval.webcache import WebCache, make_key

USER_AGENT = f"Mozilla/5.0 (compatible; r1searcher/{__version__}; research search agent)"

#: Part of every page cache key: bump it when extraction changes.
EXTRACT_VERSION = "trafilatura-2-recall-v1"
PAPER_MAX_PAGE_CHARS = 35_000

_TEXT_TYPES = frozenset({"text/html", "application/xhtml+xml", "text/plain", ""})
_TITLE = re.compile(rb"<title[^>]*>(.*?)</title\s*>", re.I | re.S)
_TAIL = re.compile(r"^\s*(?:=+\s*)?(References|Notes)(?:\s*=+)?\s*$", re.M)

# trafilatura logs an ERROR for every empty or unparsable page; a failed page is reported as a
# Page.error (and replaced by its snippet) instead, so its logger only speaks on critical errors.
logging.getLogger("trafilatura").setLevel(logging.CRITICAL)

T = TypeVar("T")
R = TypeVar("R")


# ---------------------------------------------------------------------------------------------- text
def html_to_text(data: bytes | str) -> str:
    """Main text of an HTML page (boilerplate, menus, scripts out), one paragraph per line; "" if none."""
    try:
        import trafilatura
    except ImportError:
        raise RuntimeError("web page extraction needs trafilatura: pip install 'trafilatura>=2.3'") from None
    doc = trafilatura.bare_extraction(data, favor_recall=True, include_comments=False, include_tables=True)
    return (doc.text or "") if doc is not None else ""


def html_title(data: bytes) -> str:
    """The ``<title>`` of an HTML page (first 64 KiB), unescaped; "" if none."""
    m = _TITLE.search(data[: 64 << 10])
    if not m:
        return ""
    return " ".join(html.unescape(m.group(1).decode("utf-8", "replace")).split())


def cut_tail(text: str) -> str:
    """Drop everything from the first "References" or "Notes" heading line on (the paper's Wikipedia cut)."""
    m = _TAIL.search(text)
    return text[: m.start()].rstrip() if m and m.start() > 0 else text


def cut_chars(text: str, budget: int) -> str:
    """At most ``budget`` characters, cut at a word boundary when one is near."""
    if len(text) <= budget:
        return text
    cut = text[:budget]
    space = cut.rfind(" ", max(0, budget - 200))
    return cut[:space] if space > 0 else cut


def chunk_text(text: str, max_words: int = 100) -> list[str]:
    """~``max_words``-word passages: paragraphs (lines) packed together, long ones split in windows."""
    chunks: list[str] = []
    cur: list[str] = []
    for line in text.splitlines():
        words = line.split()
        if not words:
            continue
        if cur and len(cur) + len(words) > max_words:
            chunks.append(" ".join(cur))
            cur = []
        if len(words) > max_words:
            pieces = split_words(" ".join(words), max_words)
            chunks.extend(pieces[:-1])
            cur = pieces[-1].split()
        else:
            cur.extend(words)
    if cur:
        chunks.append(" ".join(cur))
    return chunks


# ---------------------------------------------------------------------------------------------- config
_ENV: dict[str, str] = {
    "provider": "R1SEARCHER_WEB_PROVIDER",
    "base_url": "R1SEARCHER_WEB_BASE_URL",
    "api_key": "R1SEARCHER_WEB_API_KEY",
    "query_suffix": "R1SEARCHER_WEB_QUERY_SUFFIX",
    "rps": "R1SEARCHER_WEB_RPS",
    "cache_dir": "R1SEARCHER_CACHE_DIR",
    "allow_private_urls": "R1SEARCHER_WEB_ALLOW_PRIVATE_URLS",
    "summary_base_url": "R1SEARCHER_SUMMARY_BASE_URL",
    "summary_model": "R1SEARCHER_SUMMARY_MODEL",
    "summary_api_key": "R1SEARCHER_SUMMARY_API_KEY",
}


_TRUE, _FALSE = frozenset({"1", "true", "yes", "on"}), frozenset({"0", "false", "no", "off"})
_SECRET_FIELDS = ("api_key", "summary_api_key")
_URL_FIELDS = ("base_url", "summary_base_url")


@dataclass(frozen=True, repr=False)
class WebConfig:
    """Every knob of :class:`WebRetriever`; defaults follow the paper where it has one. Its repr
    and :meth:`shown` mask the API keys and URL credentials."""

    provider: str = "serper"
    base_url: str | None = None
    api_key: str | None = None
    query_suffix: str = ""
    pages: int = 3  # hits whose pages are fetched per query (at least k): the paper's top 3
    # search API
    rps: float = 5.0
    retries: int = 3
    backoff_s: float = 0.5
    max_backoff_s: float = 20.0
    max_retry_after_s: float = 60.0
    search_timeout_s: float = 20.0
    concurrency: int = 8  # searches in flight
    # pages
    fetch_concurrency: int = 16
    page_timeout_s: float = 10.0  # per request, and the whole download of one page
    page_retries: int = 1
    max_page_bytes: int = 2 << 20
    max_page_chars: int = PAPER_MAX_PAGE_CHARS
    chunk_words: int = 100
    failure_ttl_s: float = 3600.0  # how long a timeout / 5xx page stays cached as failed
    user_agent: str = USER_AGENT
    allow_private_urls: bool = False  # fetch pages on loopback/private/link-local addresses (SSRF guard off)
    # summariser
    summarize: bool | None = None
    summary_base_url: str | None = None
    summary_model: str | None = None
    summary_api_key: str | None = None
    summary_concurrency: int = 8
    summary_max_tokens: int = PAPER_SUMMARY_MAX_TOKENS
    summary_timeout_s: float = 60.0
    summary_first_only: bool = False  # the paper: pages in rank order, stop at the first summary
    strict_none: bool = False  # the paper's "none anywhere" drop rule (see summarize.parse_summary)
    # cache
    cache_dir: str | None = None
    use_cache: bool = True
    cache_max_age_s: float | None = None

    def __post_init__(self) -> None:
        get_provider(self.provider)
        for name in ("pages", "concurrency", "fetch_concurrency", "summary_concurrency", "max_page_bytes",
                     "max_page_chars", "chunk_words", "summary_max_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"web config: {name} must be >= 1, got {getattr(self, name)}")
        for name in ("retries", "page_retries", "backoff_s", "rps", "failure_ttl_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"web config: {name} must be >= 0, got {getattr(self, name)}")
        for name in ("search_timeout_s", "page_timeout_s", "summary_timeout_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"web config: {name} must be > 0, got {getattr(self, name)}")

    def shown(self) -> dict[str, Any]:
        """The settings as a dict fit to print or write (keys masked, URL credentials masked)."""
        out = asdict(self)
        for name in _SECRET_FIELDS:
            if out[name]:
                out[name] = MASK
        for name in _URL_FIELDS:
            out[name] = redact_url(out[name])
        return out

    def secrets(self) -> list[str]:
        """Secret values to mask in any message: the keys and what the URLs carry."""
        return [v for v in (self.api_key, self.summary_api_key, *url_secrets(self.base_url),
                            *url_secrets(self.summary_base_url)) if v]

    def __repr__(self) -> str:
        return f"WebConfig({', '.join(f'{k}={v!r}' for k, v in self.shown().items())})"

    @property
    def summarizer_on(self) -> bool:
        return self.summarize if self.summarize is not None else bool(self.summary_base_url or self.summary_model)

    @classmethod
    def from_env(cls, **overrides: Any) -> WebConfig:
        """Arguments (not None) first, then the ``R1SEARCHER_*`` variables of the module doc, then defaults."""
        known = {f.name for f in fields(cls)}
        unknown = set(overrides) - known
        if unknown:
            raise TypeError(f"unknown web config option(s): {', '.join(sorted(unknown))}")
        values = {k: v for k, v in overrides.items() if v is not None}
        for name, env in _ENV.items():
            raw = os.environ.get(env)
            if name in values or not raw:
                continue
            if name == "rps":
                try:
                    values[name] = float(raw)
                except ValueError:
                    raise ValueError(f"{env} must be a number (requests per second), got {raw!r}") from None
            elif name == "allow_private_urls":
                flag = raw.strip().lower()
                if flag not in _TRUE | _FALSE:
                    raise ValueError(f"{env} must be 1/true/yes/on or 0/false/no/off, got {raw!r}")
                values[name] = flag in _TRUE
            else:
                values[name] = raw
        return cls(**values)


# ---------------------------------------------------------------------------------------------- pages
@dataclass(frozen=True)
class Page:
    """A fetched page's main text (untruncated), or why it could not be had."""

    url: str
    title: str = ""
    text: str = ""
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.text.strip())


def _decode(body: bytes, charset: str) -> str:
    try:
        return body.decode(charset, errors="replace")
    except LookupError:  # an unknown charset name
        return body.decode("utf-8", errors="replace")


class _PageFailure(Exception):
    def __init__(self, message: str, transient: bool, blocked: bool = False):
        super().__init__(message)
        self.transient, self.blocked = transient, blocked


class PageFetcher:
    """GET pages with a byte cap, a total deadline, retries on transient failures, and the disk cache;
    only from public addresses unless ``cfg.allow_private_urls`` (:mod:`~r1searcher.retrieval.urlguard`)."""

    def __init__(self, cfg: WebConfig, cache: WebCache | None):
        self.cfg, self.cache = cfg, cache
        limits = httpx.Limits(max_connections=cfg.fetch_concurrency, max_keepalive_connections=cfg.fetch_concurrency)
        guard: dict[str, Any] = {"limits": limits}
        if not cfg.allow_private_urls:  # every request (redirects too) checked; connections made to vetted addresses
            guard = {"event_hooks": {"request": [urlguard.guard_request]}, "transport": urlguard.public_only_transport(limits)}
        self._http = httpx.Client(
            timeout=httpx.Timeout(cfg.page_timeout_s, connect=min(5.0, cfg.page_timeout_s)),
            follow_redirects=True,
            max_redirects=5,
            headers={
                "User-Agent": cfg.user_agent,
                "Accept": "text/html,application/xhtml+xml;q=0.9,text/plain;q=0.8",
                "Accept-Language": "en",
            },
            **guard,
        )
        self.retry = RetryPolicy(cfg.page_retries, cfg.backoff_s, cfg.max_backoff_s, cfg.max_retry_after_s)
        self._lock = threading.Lock()
        self.n_requests = 0

    def close(self) -> None:
        self._http.close()

    def _download(self, url: str) -> tuple[bytes, str, str | None]:
        """(body up to the byte cap, content type, declared charset)."""
        deadline = time.monotonic() + self.cfg.page_timeout_s
        cap = self.cfg.max_page_bytes
        with self._lock:
            self.n_requests += 1
        try:
            with self._http.stream("GET", url) as r:
                code = r.status_code
                if code != 200:
                    raise _PageFailure(f"HTTP {code}", transient=code == 429 or code >= 500)
                ctype = r.headers.get("content-type", "").split(";")[0].strip().lower()
                if ctype not in _TEXT_TYPES:
                    raise _PageFailure(f"unsupported content type {ctype!r}", transient=False)
                buf = bytearray()
                for part in r.iter_bytes():
                    buf += part
                    if len(buf) >= cap or time.monotonic() > deadline:
                        break
                return bytes(buf[:cap]), ctype, r.charset_encoding
        except urlguard.BlockedURL as e:
            raise _PageFailure(f"not fetched: {e}", transient=False, blocked=True) from None
        except httpx.TimeoutException as e:
            raise _PageFailure(f"timed out ({type(e).__name__})", transient=True) from None
        except httpx.TransportError as e:
            if str(e).startswith(urlguard.BLOCKED_MARK):  # refused at connect time (e.g. DNS rebinding)
                raise _PageFailure(f"not fetched: {str(e)[len(urlguard.BLOCKED_MARK):]}", transient=False,
                                   blocked=True) from None
            raise _PageFailure(f"cannot connect ({type(e).__name__}: {e})", transient=True) from None
        except httpx.HTTPError as e:  # too many redirects, bad URL, …
            raise _PageFailure(f"{type(e).__name__}: {e}", transient=False) from None

    def _fetch(self, url: str) -> Page:
        last: _PageFailure | None = None
        for attempt in range(self.retry.retries + 1):
            if attempt:
                time.sleep(self.retry.delay(attempt - 1, None))
            try:
                body, ctype, charset = self._download(url)
            except _PageFailure as e:
                last = e
                if not e.transient:
                    break
                continue
            if ctype == "text/plain":
                text, title = _decode(body, charset or "utf-8"), ""
            else:  # a declared charset decodes here (robust to a cut mid-character); else trafilatura sniffs
                text, title = html_to_text(_decode(body, charset) if charset else body), html_title(body)
            text = cut_tail(text)
            if not text.strip():
                return Page(url, title, "", "no text in the page")
            return Page(url, title, text)
        assert last is not None
        raise last

    def fetch(self, url: str) -> Page:
        """The page at ``url`` (cache first); failures come back as a Page with ``error`` set."""
        if not re.match(r"^https?://", url, re.I):
            return Page(url, error="not an http(s) URL")
        if not self.cfg.allow_private_urls:
            try:  # literal addresses and localhost, before the cache (no DNS: a rerun stays offline)
                urlguard.check_url(url, resolve=False)
            except urlguard.BlockedURL as e:
                return Page(url, error=f"not fetched: {e}")
        key = make_key(EXTRACT_VERSION, url, self.cfg.max_page_bytes)
        if self.cache is not None:
            hit = self.cache.get("page", key, self.cfg.cache_max_age_s)
            if hit is not None and not (hit.get("transient") and time.time() - hit.get("at", 0) > self.cfg.failure_ttl_s):
                return Page(url, hit.get("title", ""), hit.get("text", ""), hit.get("error"))
        try:
            page = self._fetch(url)
            value: dict[str, Any] = {"title": page.title, "text": page.text, "error": page.error}
        except _PageFailure as e:
            page = Page(url, error=str(e))
            if e.blocked:  # a setting, not the page: never cached (allow_private_urls may change)
                return page
            value = {"error": str(e), "transient": e.transient, "at": time.time()}
        if self.cache is not None:
            self.cache.put("page", key, value)
        return page


# ---------------------------------------------------------------------------------------------- retriever
def _run_all(fn: Callable[[T], R], items: Iterable[T], workers: int, name: str) -> list[R]:
    """``fn`` over ``items`` with at most ``workers`` threads; the first exception cancels the rest."""
    items = list(items)
    if not items:
        return []
    if len(items) == 1 or workers == 1:
        return [fn(x) for x in items]
    pool = ThreadPoolExecutor(max_workers=min(workers, len(items)), thread_name_prefix=name)
    try:
        futures = [pool.submit(fn, x) for x in items]
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        for f in done:
            err = f.exception()
            if err is not None:
                raise err
        return [f.result() for f in futures]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


class WebRetriever:
    """A :class:`~r1searcher.retrieval.base.Retriever` over a live web search API (see the module doc).

    ``WebRetriever()`` reads everything from the environment; keyword arguments are
    :class:`WebConfig` fields and win over it; ``config=`` passes a ready config (then the keyword
    arguments replace its fields). A provider that needs a key and has none raises
    :class:`~r1searcher.retrieval.base.RetrieverError` here, before any request.
    """

    def __init__(self, config: WebConfig | None = None, **overrides: Any) -> None:
        self.cfg = WebConfig.from_env(**overrides) if config is None else replace(config, **overrides)
        cfg = self.cfg
        self.search_client = SearchClient(  # first: a missing key fails before anything is opened
            cfg.provider, cfg.base_url, cfg.api_key, rps=cfg.rps,
            retry=RetryPolicy(cfg.retries, cfg.backoff_s, cfg.max_backoff_s, cfg.max_retry_after_s),
            timeout_s=cfg.search_timeout_s, user_agent=cfg.user_agent,
        )
        self.cache: WebCache | None = None
        if cfg.use_cache:
            self.cache = WebCache(None if cfg.cache_dir is None else os.path.join(os.path.expanduser(cfg.cache_dir), CACHE_FILE))
        self.pages = PageFetcher(cfg, self.cache)
        self.summarizer = Summarizer(cfg, self.cache) if cfg.summarizer_on else None

    # -- lifecycle -------------------------------------------------------------------------------
    def close(self) -> None:
        self.search_client.close()
        self.pages.close()
        if self.summarizer is not None:
            self.summarizer.close()
        if self.cache is not None:
            self.cache.close()

    def __enter__(self) -> WebRetriever:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def describe(self) -> dict[str, Any]:
        """What backs this retriever (for ``/health`` and logs; no keys, no URL credentials)."""
        return {
            "kind": "web",
            "provider": self.search_client.provider.name,
            "endpoint": self.search_client.shown_url,
            "summarizer": None if self.summarizer is None else {
                "model": self.summarizer.model, "url": redact_text(redact_url(self.summarizer.url) or "", self.cfg.secrets())},
            "cache": None if self.cache is None else str(self.cache.path),
            "allow_private_urls": self.cfg.allow_private_urls,
        }

    def stats(self) -> dict[str, int]:
        """HTTP requests sent so far (retries included) and cache hits/misses."""
        return {
            "search_requests": self.search_client.n_requests,
            "page_requests": self.pages.n_requests,
            "summary_requests": 0 if self.summarizer is None else self.summarizer.n_requests,
            "cache_hits": 0 if self.cache is None else self.cache.hits,
            "cache_misses": 0 if self.cache is None else self.cache.misses,
        }

    # -- stages ----------------------------------------------------------------------------------
    def hits(self, query: str, n: int) -> list[SearchResult]:
        """The search API's top ``n`` hits for ``query`` (query suffix appended; cache first; URLs deduped)."""
        if not query.strip():
            return []  # nothing to search for: no request
        q = query + self.cfg.query_suffix
        key = make_key("search", self.search_client.provider.name, self.search_client.url, q, n)
        if self.cache is not None:
            hit = self.cache.get("search", key, self.cfg.cache_max_age_s)
            if hit is not None:
                return [SearchResult(**h) for h in hit]
        found = self.search_client.search(q, n)
        seen: set[str] = set()
        out = []
        for h in found:
            if h.url not in seen:
                seen.add(h.url)
                out.append(h)
        if self.cache is not None:
            self.cache.put("search", key, [asdict(h) for h in out])
        return out

    def _document(self, hit: SearchResult, page: Page) -> tuple[str, str] | None:
        """(title, text within the length budget) of a hit's page, else of its snippet; None if neither."""
        if page.ok:
            return hit.title or page.title, cut_chars(page.text, self.cfg.max_page_chars)
        return (hit.title, hit.snippet) if hit.snippet else None

    def _best_passages(self, query: str, hits: list[SearchResult], pages: dict[str, Page], k: int) -> list[Passage]:
        from r1searcher.retrieval.bm25 import BM25Index

        chunks: list[Passage] = []
        leads: list[Passage] = []
        for hit in hits:
            doc = self._document(hit, pages[hit.url])
            if doc is None:
                continue
            texts = chunk_text(doc[1], self.cfg.chunk_words) if pages[hit.url].ok else [doc[1]]
            ps = [Passage(id=hit.url, title=doc[0], text=t) for t in texts]
            chunks.extend(ps)
            leads.extend(ps[:1])
        if not chunks:
            return []
        try:
            found = BM25Index.build(chunks).search([query], k)[0]
        except ValueError:  # no indexable word anywhere (all stop words, empty)
            found = []
        have = {(p.id, p.text) for p in found}
        for p in leads:
            if len(found) >= k:
                break
            if (p.id, p.text) not in have:
                found.append(replace(p, score=0.0))
        return found

    def _summary_passage(self, query: str, rank: int, hit: SearchResult, page: Page) -> Passage | None:
        doc = self._document(hit, page)
        if doc is None:
            return None
        assert self.summarizer is not None
        text = self.summarizer.summarize(query, doc[1]) if page.ok else doc[1]  # snippets go in as they are
        return None if text is None else Passage(id=hit.url, title=doc[0], text=text, score=1.0 / rank)

    def _first_summary(self, query: str, hits: list[SearchResult], pages: dict[str, Page]) -> list[Passage]:
        for rank, hit in enumerate(hits, 1):
            p = self._summary_passage(query, rank, hit, pages[hit.url])
            if p is not None:
                return [p]
        return []

    # -- protocol --------------------------------------------------------------------------------
    def search(self, queries: list[str], k: int) -> list[list[Passage]]:
        """Up to ``k`` passages per query, best first (see the module doc for how they are made)."""
        check_batch(queries, k)
        if not all(isinstance(q, str) for q in queries):
            raise TypeError("queries must be strings")
        uniq = list(dict.fromkeys(queries))
        n = max(k, self.cfg.pages)
        hit_lists = _run_all(lambda q: self.hits(q, n)[:n], uniq, self.cfg.concurrency, "web-search")
        hits = dict(zip(uniq, hit_lists))
        urls = list(dict.fromkeys(h.url for hs in hit_lists for h in hs))
        pages = dict(zip(urls, _run_all(self.pages.fetch, urls, self.cfg.fetch_concurrency, "web-page")))

        results: dict[str, list[Passage]] = {}
        if self.summarizer is None:
            for q in uniq:
                results[q] = self._best_passages(q, hits[q], pages, k)
        elif self.cfg.summary_first_only:
            firsts = _run_all(lambda q: self._first_summary(q, hits[q], pages), uniq, self.cfg.summary_concurrency, "web-sum")
            results = dict(zip(uniq, firsts))
        else:
            jobs = [(q, rank, h) for q in uniq for rank, h in enumerate(hits[q], 1)]
            done = _run_all(lambda j: self._summary_passage(j[0], j[1], j[2], pages[j[2].url]), jobs,
                            self.cfg.summary_concurrency, "web-sum")
            for q in uniq:
                results[q] = []
            for (q, _, _), p in zip(jobs, done):
                if p is not None and len(results[q]) < k:
                    results[q].append(p)
        return [list(results[q]) for q in queries]
