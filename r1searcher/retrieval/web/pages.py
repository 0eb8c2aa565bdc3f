"""Web pages for :class:`~r1searcher.retrieval.web.search.WebRetriever`: fetch a search hit's page and turn
it into text, then into ~100-word passages.

:class:`PageFetcher` GETs a page with a byte cap, a total deadline, retries on transient failures
and the disk cache (:class:`~r1searcher.retrieval.web.cache.WebCache`), only from public addresses
unless allowed (:mod:`~r1searcher.retrieval.web.urlguard`); a page that cannot be had comes back as a
:class:`Page` with ``error`` set. :func:`html_to_text` (trafilatura) keeps the main text,
:func:`cut_tail` drops "References"/"Notes" (the paper's Wikipedia cut), :func:`chunk_text` packs
paragraphs into passages. The settings it reads are :class:`~r1searcher.retrieval.web.search.WebConfig`'s.
"""

from __future__ import annotations

import html
import logging
import re
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from r1searcher.util.http_retry import RetryPolicy
from r1searcher.retrieval.web import urlguard
from r1searcher.retrieval.corpus import split_words
from r1searcher.retrieval.web.cache import WebCache, make_key

#: Part of every page cache key: bump it when extraction changes.
EXTRACT_VERSION = "trafilatura-2-recall-v1"

_TEXT_TYPES = frozenset({"text/html", "application/xhtml+xml", "text/plain", ""})
_TITLE = re.compile(rb"<title[^>]*>(.*?)</title\s*>", re.I | re.S)
_TAIL = re.compile(r"^\s*(?:=+\s*)?(References|Notes)(?:\s*=+)?\s*$", re.M)

# trafilatura logs an ERROR for every empty or unparsable page; a failed page is reported as a
# Page.error (and replaced by its snippet) instead, so its logger only speaks on critical errors.
logging.getLogger("trafilatura").setLevel(logging.CRITICAL)


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


class PageSettings(Protocol):
    """The settings a :class:`PageFetcher` reads: fields of :class:`~r1searcher.retrieval.web.search.WebConfig`
    (named here as a protocol so that this module does not import the retriever's)."""

    fetch_concurrency: int
    page_timeout_s: float
    page_retries: int
    max_page_bytes: int
    user_agent: str
    allow_private_urls: bool
    backoff_s: float
    max_backoff_s: float
    max_retry_after_s: float
    failure_ttl_s: float
    cache_max_age_s: float | None


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
    only from public addresses unless ``cfg.allow_private_urls`` (:mod:`~r1searcher.retrieval.web.urlguard`)."""

    def __init__(self, cfg: PageSettings, cache: WebCache | None):
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
