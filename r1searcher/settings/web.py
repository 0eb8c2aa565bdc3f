"""The ``web`` section: every knob of the live web retriever (``--web``; ``r1searcher.retrieval.web.search``).

Defaults follow the paper where it has one. The fields marked with an environment variable read it
when the config file and the overrides leave them unset (:mod:`r1searcher.settings.env`);
``WebConfig.from_env`` is the same resolution for code that has no config tree. Its repr and
:meth:`WebConfig.shown` mask the API keys and URL credentials, and a saved config holds them masked.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

from r1searcher import __version__
from r1searcher.settings.fields import ConfigError, Section, knob

USER_AGENT = f"Mozilla/5.0 (compatible; r1searcher/{__version__}; research search agent)"
PAPER_MAX_PAGE_CHARS = 35_000
PAPER_SUMMARY_MAX_TOKENS = 2048
#: The search APIs ``r1searcher.retrieval.web.providers`` knows (a test keeps the two lists equal).
PROVIDERS = ("serper", "bing", "brave", "searxng")
SECRET_FIELDS = ("api_key", "summary_api_key")
URL_FIELDS = ("base_url", "summary_base_url")


@dataclass(frozen=True, repr=False)
class WebConfig(Section):
    """Every knob of :class:`~r1searcher.retrieval.web.search.WebRetriever`."""

    SECTION: ClassVar[str] = "web"
    provider: str = knob("serper", "search API", choices=PROVIDERS, env="R1SEARCHER_WEB_PROVIDER")
    base_url: str | None = knob(None, "search endpoint (default: the provider's public one; required for searxng)",
                                env="R1SEARCHER_WEB_BASE_URL")
    api_key: str | None = knob(None, "search API key (never shown or saved)", env="R1SEARCHER_WEB_API_KEY")
    query_suffix: str = knob("", "appended to every query (the paper: ' site:en.wikipedia.org')",
                             env="R1SEARCHER_WEB_QUERY_SUFFIX")
    pages: int = knob(3, "hits whose pages are fetched per query (at least k): the paper's top 3", ge=1)
    rps: float = knob(5.0, "search requests per second", ge=0, env="R1SEARCHER_WEB_RPS")
    retries: int = knob(3, "retries of a failed search request", ge=0)
    backoff_s: float = knob(0.5, "first retry wait, doubled each retry", ge=0)
    max_backoff_s: float = knob(20.0, "longest retry wait")
    max_retry_after_s: float = knob(60.0, "longest Retry-After honoured")
    search_timeout_s: float = knob(20.0, "seconds per search request", gt=0)
    concurrency: int = knob(8, "searches in flight", ge=1)
    fetch_concurrency: int = knob(16, "page downloads in flight", ge=1)
    page_timeout_s: float = knob(10.0, "per request, and the whole download of one page", gt=0)
    page_retries: int = knob(1, "retries of a failed page download", ge=0)
    max_page_bytes: int = knob(2 << 20, "bytes read of one page", ge=1)
    max_page_chars: int = knob(PAPER_MAX_PAGE_CHARS, "characters kept of a page's text (the paper's 35,000)", ge=1)
    chunk_words: int = knob(100, "words per passage when pages are chunked (no summariser)", ge=1)
    failure_ttl_s: float = knob(3600.0, "how long a timeout / 5xx page stays cached as failed", ge=0)
    user_agent: str = knob(USER_AGENT, "User-Agent of page downloads")
    allow_private_urls: bool = knob(False, "fetch pages on loopback/private/link-local addresses (SSRF guard off)",
                                    env="R1SEARCHER_WEB_ALLOW_PRIVATE_URLS")
    summarize: bool | None = knob(None, "summarise pages against the query (unset: on when summary_base_url or "
                                  "summary_model is set)")
    summary_base_url: str | None = knob(None, "OpenAI-compatible endpoint of the summariser (unset: the judge's, "
                                        "$R1SEARCHER_JUDGE_BASE_URL, $OPENAI_BASE_URL)",
                                        env="R1SEARCHER_SUMMARY_BASE_URL")
    summary_model: str | None = knob(None, "summariser model (unset: $R1SEARCHER_JUDGE_MODEL, else gpt-4o-mini)",
                                     env="R1SEARCHER_SUMMARY_MODEL")
    summary_api_key: str | None = knob(None, "summariser key (unset: $R1SEARCHER_JUDGE_API_KEY, $OPENAI_API_KEY; "
                                       "never shown or saved)", env="R1SEARCHER_SUMMARY_API_KEY")
    summary_concurrency: int = knob(8, "summaries in flight", ge=1)
    summary_max_tokens: int = knob(PAPER_SUMMARY_MAX_TOKENS, "tokens per summary", ge=1)
    summary_timeout_s: float = knob(60.0, "seconds per summary request", gt=0)
    summary_first_only: bool = knob(False, "the paper: pages in rank order, stop at the first summary")
    strict_none: bool = knob(False, "the paper's 'none anywhere' drop rule (see summarize.parse_summary)")
    cache_dir: str | None = knob(None, "cache root holding web.sqlite (unset: r1searcher.paths.cache_root())",
                                 env="R1SEARCHER_CACHE_DIR")
    use_cache: bool = knob(True, "cache search replies, pages and summaries on disk")
    cache_max_age_s: float | None = knob(None, "ignore cached search replies older than this (unset: no limit)")

    def __post_init__(self) -> None:
        if isinstance(self.provider, str) and self.provider.strip().lower() not in PROVIDERS:
            raise ConfigError(f"web.provider: unknown web search provider {self.provider!r}; choose one of "
                              f"{', '.join(PROVIDERS)}")
        super().__post_init__()

    def shown(self) -> dict[str, Any]:
        """The settings as a dict fit to print or write (keys masked, URL credentials masked)."""
        from r1searcher.util.redact import MASK, redact_url

        out = asdict(self)
        for name in SECRET_FIELDS:
            if out[name]:
                out[name] = MASK
        for name in URL_FIELDS:
            out[name] = redact_url(out[name])
        return out

    def secrets(self) -> list[str]:
        """Secret values to mask in any message: the keys and what the URLs carry."""
        from r1searcher.util.redact import url_secrets

        return [v for v in (self.api_key, self.summary_api_key, *url_secrets(self.base_url),
                            *url_secrets(self.summary_base_url)) if v]

    def __repr__(self) -> str:
        return f"WebConfig({', '.join(f'{k}={v!r}' for k, v in self.shown().items())})"

    @property
    def summarizer_on(self) -> bool:
        return self.summarize if self.summarize is not None else bool(self.summary_base_url or self.summary_model)

    @classmethod
    def from_env(cls, **overrides: Any) -> WebConfig:
        """Arguments (not None) first, then the ``R1SEARCHER_*`` variables of the fields' help, then defaults."""
        from r1searcher.settings.env import section_env

        known = {f.name for f in fields(cls)}
        unknown = set(overrides) - known
        if unknown:
            raise TypeError(f"unknown web config option(s): {', '.join(sorted(unknown))}")
        values = {k: v for k, v in overrides.items() if v is not None}
        return cls(**{**section_env(cls, values), **values})
