"""Web search APIs behind one small interface: the request each provider expects and the reply it sends.

* ``serper``: ``POST {base}/search`` with ``{"q", "num"}``, header ``X-API-KEY``;
  hits in ``organic[].title/link/snippet``.
* ``bing`` (Web Search v7): ``GET {base}/v7.0/search?q=&count=``, header
  ``Ocp-Apim-Subscription-Key``; hits in ``webPages.value[].name/url/snippet``.
* ``brave``: ``GET {base}/res/v1/web/search?q=&count=``, header ``X-Subscription-Token``;
  hits in ``web.results[].title/url/description``.
* ``searxng`` (self-hosted, no key): ``GET {base}/search?q=&format=json``;
  hits in ``results[].title/url/content``.

Serper is the Google-style API the paper's online evaluation calls. A base URL that already ends
with the provider's path is used as is, so both ``https://google.serper.dev`` and
``https://google.serper.dev/search`` work; tests and self-hosted services point it at loopback.

:class:`SearchClient` sends the requests: a per-provider rate limit (requests per second, shared by
every client of the same endpoint in the process), retries with exponential backoff on 429, 5xx,
timeouts and connection errors (``Retry-After`` honoured), no retry on other 4xx, and a
:class:`~r1searcher.retrieval.base.RetrieverError` naming the provider and the URL when it gives up:
401/403 say the key was rejected, a missing key is refused before any request is sent.

Credentials never show: ``user:password@`` in a base URL is taken out of the URL and sent as HTTP
Basic auth, and every message (and :attr:`SearchClient.shown_url`, what ``/health`` and logs print)
has user info, key-like query parameters and the API key masked (:mod:`~r1searcher.util.redact`).
"""

from __future__ import annotations

import html
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from r1searcher.util.http_retry import RetryPolicy
from r1searcher.retrieval.base import RetrieverError
from r1searcher.util.redact import redact_text, redact_url, url_secrets

KEY_ENV = "R1SEARCHER_WEB_API_KEY"
_TAG = re.compile(r"<[^>]+>")


@dataclass(frozen=True)
class SearchResult:
    """One organic hit of a web search: what the engine shows (snippet is plain text)."""

    title: str
    url: str
    snippet: str


def clean_snippet(text: Any) -> str:
    """Plain text from a provider snippet: tags (Brave's ``<strong>``, Bing's highlights) and entities out."""
    if not isinstance(text, str):
        return ""
    return " ".join(html.unescape(_TAG.sub("", text)).replace("\ue000", "").replace("\ue001", "").split())


def _error_text(resp: httpx.Response) -> str:
    """A short description of an error reply (its JSON ``error``/``message`` when it has one)."""
    try:
        body = resp.json()
    except ValueError:
        return resp.text[:300]
    if isinstance(body, dict):
        for key in ("error", "message", "detail"):
            if body.get(key):
                return str(body[key])[:300]
    return str(body)[:300]


def _dig(reply: dict, path: tuple[str, ...]) -> Any:
    node: Any = reply
    for key in path:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node


@dataclass(frozen=True)
class Provider:
    """How to ask one search API and where the hits are in its reply.

    ``items`` is the key path to the list of hits; ``fields`` names (title, url, snippet) in a hit.
    ``count_param`` is the query parameter (or body field) for the number of hits, if the API has one.
    """

    name: str
    method: str
    path: str
    default_base_url: str | None
    key_header: str | None
    items: tuple[str, ...]
    fields: tuple[str, str, str]
    count_param: str | None
    max_count: int
    extra_params: tuple[tuple[str, str], ...] = ()
    forbidden_hint: str = f"check {KEY_ENV}"

    @property
    def needs_key(self) -> bool:
        return self.key_header is not None

    def endpoint(self, base_url: str | None) -> str:
        """The full request URL for ``base_url`` (or the provider's public default)."""
        base = (base_url or self.default_base_url or "").rstrip("/")
        if not base:
            raise RetrieverError(
                f"web search provider {self.name!r} has no public endpoint: set R1SEARCHER_WEB_BASE_URL "
                "to your instance (e.g. http://127.0.0.1:8888)"
            )
        if not re.match(r"^https?://", base):
            raise RetrieverError(f"web search provider {self.name!r}: base URL must start with http:// or https://, "
                                 f"got {redact_url(base)!r}")
        return base if base.endswith(self.path) else base + self.path

    def request(self, query: str, n: int) -> dict[str, Any]:
        """``httpx`` keyword arguments (``params`` or ``json``) for one query asking ``n`` hits."""
        args: dict[str, Any] = {"q": query, **dict(self.extra_params)}
        if self.count_param:
            args[self.count_param] = min(n, self.max_count)
        return {"json": args} if self.method == "POST" else {"params": args}

    def parse(self, reply: Any, url: str) -> list[SearchResult]:
        """Hits from a reply. A reply without the hit list is "no hits" unless it carries an error."""
        if not isinstance(reply, dict):
            raise RetrieverError(f"web search provider {self.name!r} at {url} sent a reply that is not a JSON object: {str(reply)[:200]!r}")
        items = _dig(reply, self.items)
        if items is None:
            for key in ("error", "errors", "message", "detail"):
                if reply.get(key):
                    raise RetrieverError(f"web search provider {self.name!r} at {url} answered with an error: {str(reply[key])[:300]}")
            if reply.get("_type") == "ErrorResponse" or reply.get("type") == "ErrorResponse":
                raise RetrieverError(f"web search provider {self.name!r} at {url} answered with an error: {str(reply)[:300]}")
            return []
        if not isinstance(items, list):
            raise RetrieverError(f"web search provider {self.name!r} at {url}: {'.'.join(self.items)} is not a list: {str(items)[:200]}")
        t, u, s = self.fields
        out = []
        for it in items:
            if not isinstance(it, dict) or not isinstance(it.get(u), str) or not it.get(u):
                continue  # ads, widgets, malformed rows: nothing to fetch
            out.append(SearchResult(title=clean_snippet(it.get(t)), url=it[u], snippet=clean_snippet(it.get(s))))
        return out


PROVIDERS: dict[str, Provider] = {
    "serper": Provider(
        "serper", "POST", "/search", "https://google.serper.dev", "X-API-KEY",
        ("organic",), ("title", "link", "snippet"), "num", 100,
    ),
    "bing": Provider(
        "bing", "GET", "/v7.0/search", "https://api.bing.microsoft.com", "Ocp-Apim-Subscription-Key",
        ("webPages", "value"), ("name", "url", "snippet"), "count", 50,
    ),
    "brave": Provider(
        "brave", "GET", "/res/v1/web/search", "https://api.search.brave.com", "X-Subscription-Token",
        ("web", "results"), ("title", "url", "description"), "count", 20,
    ),
    "searxng": Provider(
        "searxng", "GET", "/search", None, None,
        ("results",), ("title", "url", "content"), None, 100, (("format", "json"),),
        forbidden_hint="enable the json format (search: formats: [html, json]) in the instance's settings.yml",
    ),
}


def get_provider(name: str) -> Provider:
    """The provider called ``name`` (case-insensitive), or a ValueError listing the known ones."""
    p = PROVIDERS.get(name.strip().lower())
    if p is None:
        raise ValueError(f"unknown web search provider {name!r}; choose one of {', '.join(PROVIDERS)}")
    return p


class RateLimiter:
    """At most ``rate`` request starts per second (``rate`` ≤ 0: no limit); thread-safe.

    Each caller reserves the next free slot under the lock and sleeps outside it, so callers are
    spaced ``1/rate`` apart in arrival order. ``clock`` and ``sleep`` are injectable for tests.
    """

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep):
        self.rate = rate
        self._clock, self._sleep = clock, sleep
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> float:
        """Block until the next slot; return the seconds waited."""
        if self.rate <= 0:
            return 0.0
        with self._lock:
            now = self._clock()
            slot = max(now, self._next)
            self._next = slot + 1.0 / self.rate
        delay = slot - now
        if delay > 0:
            self._sleep(delay)
        return delay


_LIMITERS: dict[tuple[str, str, float], RateLimiter] = {}
_LIMITERS_LOCK = threading.Lock()


def shared_limiter(provider: str, endpoint: str, rate: float) -> RateLimiter:
    """One limiter per (provider, endpoint, rate) in this process, shared by all clients."""
    with _LIMITERS_LOCK:
        return _LIMITERS.setdefault((provider, endpoint, rate), RateLimiter(rate))


class SearchClient:
    """Sends one provider's search requests: key, rate limit, retries, clear errors, hit parsing."""

    def __init__(
        self,
        provider: Provider | str,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        rps: float = 5.0,
        retry: RetryPolicy | None = None,
        timeout_s: float = 20.0,
        user_agent: str = "r1searcher",
    ) -> None:
        self.provider = get_provider(provider) if isinstance(provider, str) else provider
        self._secrets = [api_key, *url_secrets(base_url)]
        url = self.provider.endpoint(base_url)
        parsed = httpx.URL(url)
        auth = None
        if parsed.userinfo:  # user:password@ goes as Basic auth, never inside the URL (logs, errors)
            auth = httpx.BasicAuth(parsed.username, parsed.password)
            url = str(parsed.copy_with(username=None, password=None))
        self.url = url
        self.shown_url = redact_url(url)  # for messages, /health and logs: key-like query values masked
        if self.provider.needs_key and not api_key:
            raise RetrieverError(
                f"web search provider {self.provider.name!r} at {self.shown_url} needs an API key: set {KEY_ENV} "
                f"(or pick another provider with R1SEARCHER_WEB_PROVIDER={'|'.join(PROVIDERS)})"
            )
        headers = {"Accept": "application/json", "User-Agent": user_agent}
        if self.provider.key_header and api_key:
            headers[self.provider.key_header] = api_key
        self.retry = retry or RetryPolicy()
        self.limiter = shared_limiter(self.provider.name, self.url, rps)
        self._http = httpx.Client(timeout=httpx.Timeout(timeout_s), headers=headers, auth=auth)
        self._count_lock = threading.Lock()
        self.n_requests = 0  # HTTP attempts, retries included

    def close(self) -> None:
        self._http.close()

    def _what(self) -> str:
        return f"web search provider {self.provider.name!r} at {self.shown_url}"

    def _error(self, message: str) -> RetrieverError:
        """A RetrieverError whose message shows no credential (a reply may echo the key or URL)."""
        return RetrieverError(redact_text(message, self._secrets))

    def search(self, query: str, n: int) -> list[SearchResult]:
        """The top ``n`` hits for ``query``, best first."""
        try:
            return self._search(query, n)
        except RetrieverError as e:
            raise self._error(str(e)) from None

    def _search(self, query: str, n: int) -> list[SearchResult]:
        kwargs = self.provider.request(query, n)
        attempts = self.retry.retries + 1
        last = ""
        for attempt in range(attempts):
            resp: httpx.Response | None = None
            self.limiter.wait()
            with self._count_lock:
                self.n_requests += 1
            try:
                resp = self._http.request(self.provider.method, self.url, **kwargs)
            except httpx.TimeoutException as e:
                last = f"timed out ({type(e).__name__})"
            except httpx.TransportError as e:
                last = f"cannot connect ({type(e).__name__}: {e})"
            else:
                code = resp.status_code
                if code == 200:
                    try:
                        reply = resp.json()
                    except ValueError:
                        raise RetrieverError(f"{self._what()} sent a reply that is not JSON: {resp.text[:200]!r}") from None
                    return self.provider.parse(reply, self.shown_url)[:n]
                if code in (401, 403):
                    raise RetrieverError(
                        f"{self._what()} rejected the request (HTTP {code}: {_error_text(resp)}); {self.provider.forbidden_hint}"
                    )
                if code != 429 and code < 500:
                    raise RetrieverError(f"{self._what()} refused the request: HTTP {code}: {_error_text(resp)}")
                last = f"HTTP {code}: {_error_text(resp)}"
            if attempt + 1 < attempts:
                time.sleep(self.retry.delay(attempt, resp))
        raise RetrieverError(f"{self._what()} failed after {attempts} attempt(s): {last}")
