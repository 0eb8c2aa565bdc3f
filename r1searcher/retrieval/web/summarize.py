"""Summarise one fetched web page against one query, as the paper's online evaluation does: page
text and query in, the "extracted content" paragraph out (or None when the page has nothing relevant).

It sends the paper's summary prompt (:data:`SUMMARY_PROMPT`) to an OpenAI-compatible chat endpoint
through the shared chat client (:class:`r1searcher.util.chat.ChatClient`), caches the raw reply in the web
cache, and applies the "None" rule (:func:`parse_summary`). Searching, fetching and choosing which pages to
summarise is :class:`~r1searcher.retrieval.web.search.WebRetriever`'s job; its module doc lists the
``R1SEARCHER_SUMMARY_*`` settings.
"""

from __future__ import annotations

import hashlib
import re
from typing import Protocol

from r1searcher.util.chat import ChatClient, ChatError
from r1searcher.retrieval.base import RetrieverError
from r1searcher.util.redact import redact_text
from r1searcher.retrieval.web.cache import WebCache, make_key

#: The released online-evaluation summary prompt (``evaluation/eval_search_online.py``), filled with
#: ``str.replace`` as there (page text may contain braces). "Exacted" is the original's spelling.
SUMMARY_PROMPT = """## Task Description:
Given the search query and the content of the searched webpage.
Your task is to extract information from the webpage content that is relevant to the search query and return a summary paragraph.

## **Guidelines**:
(1) The extracted content should be relevant to the query.
(2) The form of the extracted content **must be a summary paragraph** rather than a direct answer to the query.
(3) You **must extract content according to this webpage**. If the webpage content is unrelated to the query, no extraction is required.

## Output Format:
[Exacted Content]: If the webpage content contains information related to the query, output the relevant summary paragraph (not a direct answer to the query); if not, output "None".

## Inputs:
[Search Query]
{search_query}

[Webpage Content]
{document}

## Output:
"""
#: Part of every summary cache key: bump it when the prompt or the request changes.
SUMMARY_VERSION = "r1searcher-web-summary-v1"
PAPER_SUMMARY_MAX_TOKENS = 2048

_NONE_START = re.compile(r"^none(?:$|[.,;:!)\]\n])")


def build_summary_prompt(query: str, document: str) -> str:
    """The paper's summary prompt for one (query, page text)."""
    return SUMMARY_PROMPT.replace("{search_query}", query).replace("{document}", document)


def parse_summary(output: str, strict_none: bool = False) -> str | None:
    """The extracted content of a summary reply, or None when the model said there is none.

    The text after the last ``[Exacted Content]`` marker, with the leading colon (and markdown
    bold) stripped. ``strict_none`` is the released code's rule: drop the reply when "none" occurs
    anywhere in it, which also drops summaries that say "nonetheless" or "none of". The default
    drops only replies that are empty, "None", or start with "None" and a punctuation mark.
    """
    content = output.split("[Exacted Content]")[-1]
    if strict_none:
        return None if "none" in content.lower() else content.lstrip(":").strip() or None
    content = content.lstrip("*: \t\r\n").strip()
    bare = content.strip("\"'`*_ .").lower()
    if not bare or _NONE_START.match(bare):
        return None
    return content


class SummarySettings(Protocol):
    """The settings a :class:`Summarizer` reads: the summary fields of
    :class:`~r1searcher.retrieval.web.search.WebConfig`, which has them all. Named here as a protocol so
    that this module does not import the web retriever's (which imports this one)."""

    summary_base_url: str | None
    summary_model: str | None
    summary_api_key: str | None
    summary_concurrency: int
    summary_timeout_s: float
    summary_max_tokens: int
    retries: int
    backoff_s: float
    max_backoff_s: float
    max_retry_after_s: float
    strict_none: bool
    cache_max_age_s: float | None

    def secrets(self) -> list[str]:
        """Secret values to mask in any message (keys, URL credentials)."""
        ...


class Summarizer:
    """The paper's per-page summary through the OpenAI-compatible chat client (retries,
    ``Retry-After``, connection limit); raw replies are cached, so the None rule can change freely."""

    def __init__(self, cfg: SummarySettings, cache: WebCache | None):
        self.cfg, self.cache = cfg, cache
        self._chat = ChatClient(
            base_url=cfg.summary_base_url,
            model=cfg.summary_model,
            api_key=cfg.summary_api_key,
            concurrency=cfg.summary_concurrency,
            timeout_s=cfg.summary_timeout_s,
            max_retries=cfg.retries,
            backoff_s=cfg.backoff_s,
            max_backoff_s=cfg.max_backoff_s,
            max_retry_after_s=cfg.max_retry_after_s,
            max_tokens=cfg.summary_max_tokens,
            temperature=0.0,
        )
        self.model, self.url = self._chat.model, self._chat.url

    @property
    def n_requests(self) -> int:
        return self._chat.n_requests

    def close(self) -> None:
        self._chat.close()

    def raw(self, query: str, document: str) -> str:
        """The model's reply for (query, page text), cache first."""
        key = make_key(SUMMARY_VERSION, self._chat.base_url, self.model, self.cfg.summary_max_tokens, query,
                       hashlib.sha256(document.encode("utf-8")).hexdigest())
        if self.cache is not None:
            hit = self.cache.get("summary", key, self.cfg.cache_max_age_s)
            if hit is not None:
                return str(hit)
        try:
            out = self._chat.complete(build_summary_prompt(query, document))
        except ChatError as e:
            cause = redact_text(str(e), self.cfg.secrets())  # the URL's user:password, the key
            raise RetrieverError(
                f"web summariser (model {self.model!r}) failed: {cause}. Check R1SEARCHER_SUMMARY_BASE_URL, "
                "R1SEARCHER_SUMMARY_MODEL and R1SEARCHER_SUMMARY_API_KEY"
            ) from None
        if self.cache is not None:
            self.cache.put("summary", key, out)
        return out

    def summarize(self, query: str, document: str) -> str | None:
        """The extracted content, or None when the model found nothing relevant."""
        return parse_summary(self.raw(query, document), self.cfg.strict_none)
