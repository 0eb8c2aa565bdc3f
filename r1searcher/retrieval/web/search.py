"""``WebRetriever``: the Retriever protocol over live web search, as in the paper's online evaluation.

For every query (a batch runs concurrently, each stage under its own limit):

1. ask the search API (:mod:`~r1searcher.retrieval.web.providers`) for the top ``max(k, pages)`` hits;
2. fetch those pages concurrently (one GET per distinct URL in the batch; httpx, timeouts, a byte
   cap, a User-Agent naming r1searcher), turn HTML into main text (trafilatura), cut the text at
   "References"/"Notes" (as the paper does for Wikipedia) and at ``max_page_chars`` (the paper's
   35,000 characters): :mod:`~r1searcher.retrieval.web.pages`;
3. either **summarise** each page against the query with an OpenAI-compatible chat endpoint (the
   paper's extract-relevant-content prompt; "None" answers dropped; see
   :mod:`~r1searcher.retrieval.web.summarize`), one passage per page in search rank order, or, with no
   summariser configured, return the **best-matching passages**: BM25 over the pages' ~100-word
   chunks (paragraphs packed up to ``chunk_words``), topped up with each page's first chunk when
   fewer than ``k`` chunks match.

A page that cannot be fetched (error status, timeout, not HTML/text, no text, or a host that is
not a public address, see below) is replaced by the search snippet. Passage ``id`` is the page URL; ``score`` is the BM25 score (0.0 for a top-up
chunk) or, for summaries and snippets, ``1/rank`` of the hit.

Everything paid for is cached on disk (:class:`~r1searcher.retrieval.web.cache.WebCache`): search
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
  is or resolves to such an address is not fetched (an SSRF guard, :mod:`~r1searcher.retrieval.web.urlguard`);
  the search API and summariser endpoints, which you configure, are not affected.
* Credentials in the base URLs (``https://user:password@host``) and the API keys never show in
  :meth:`WebRetriever.describe` (``/health``, ``serve``'s log), error messages or ``repr(WebConfig)``.
* Summariser: on when ``R1SEARCHER_SUMMARY_BASE_URL`` or ``R1SEARCHER_SUMMARY_MODEL`` is set (or
  ``summarize=True``). It uses the chat client the judge uses (:class:`r1searcher.util.chat.ChatClient`), so
  what is not set falls back as the judge's does: base URL ``R1SEARCHER_SUMMARY_BASE_URL`` →
  ``R1SEARCHER_JUDGE_BASE_URL`` → ``OPENAI_BASE_URL`` → ``https://api.openai.com/v1``; model
  ``R1SEARCHER_SUMMARY_MODEL`` → ``R1SEARCHER_JUDGE_MODEL`` → ``gpt-4o-mini`` (the paper's);
  key ``R1SEARCHER_SUMMARY_API_KEY`` → ``R1SEARCHER_JUDGE_API_KEY`` → ``OPENAI_API_KEY``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import asdict, replace
from typing import Any, TypeVar

from r1searcher.util.http_retry import RetryPolicy
from r1searcher.retrieval.base import Passage, check_batch
from r1searcher.retrieval.web.providers import SearchClient, SearchResult
from r1searcher.util.redact import redact_text, redact_url
from r1searcher.retrieval.web.summarize import Summarizer
from r1searcher.retrieval.web.cache import FILENAME as CACHE_FILE
from r1searcher.retrieval.web.cache import WebCache, make_key
from r1searcher.retrieval.web.pages import (EXTRACT_VERSION, Page, PageFetcher, chunk_text, cut_chars, cut_tail,
                                           html_title, html_to_text)
from r1searcher.settings.web import PAPER_MAX_PAGE_CHARS, USER_AGENT, WebConfig  # the config tree's web section

__all__ = ["EXTRACT_VERSION", "PAPER_MAX_PAGE_CHARS", "USER_AGENT", "Page", "PageFetcher", "WebConfig", "WebRetriever",
           "chunk_text", "cut_chars", "cut_tail", "html_title", "html_to_text"]

T = TypeVar("T")
R = TypeVar("R")


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
