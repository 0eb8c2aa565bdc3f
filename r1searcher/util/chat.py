"""A small client for OpenAI-compatible chat-completions endpoints: one user message in, the reply
text out, with retries and a connection limit.

    with ChatClient("http://localhost:8000/v1", "qwen2.5-7b-instruct") as chat:
        text = chat.complete("Say hello.")

It is the low-level part shared by the LLM judge (:mod:`r1searcher.eval.judge`) and the web summariser
(:mod:`r1searcher.retrieval.web.summarize`), so it imports neither. Endpoint, model and key come from the
arguments, else ``R1SEARCHER_JUDGE_BASE_URL`` / ``R1SEARCHER_JUDGE_MODEL`` /
``R1SEARCHER_JUDGE_API_KEY``, else ``OPENAI_BASE_URL`` / ``OPENAI_API_KEY``, else
``https://api.openai.com/v1`` and ``gpt-4o-mini`` (the paper's judge). Requests retry with
exponential backoff on 429, 5xx, timeouts and connection errors (a ``Retry-After`` header is
honoured); other HTTP errors and malformed replies fail at once. Every failure is a
:class:`ChatError` whose message starts with ``label`` and the URL (callers whose URL may hold
credentials redact it) and, when the retries are spent, ends with ``hint``.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import httpx

from r1searcher.util.http_retry import RetryPolicy

DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_MODEL = "gpt-4o-mini"
_sleep = time.sleep  # the retry wait; a seam for tests


class ChatError(RuntimeError):
    """The chat endpoint could not be used (unreachable, refused, malformed reply, retries spent)."""


def _env(*names: str) -> str | None:
    for n in names:
        v = os.environ.get(n)
        if v:
            return v
    return None


class ChatClient:
    """Chat completions over one ``httpx.Client``; thread-safe, at most ``concurrency`` connections.

    ``temperature`` None leaves it to the server. ``label`` names the endpoint in errors ("judge
    endpoint", "chat endpoint"); ``hint`` is appended to the error that ends the retries (what to
    check). ``n_requests`` counts HTTP requests sent, retries included.
    """

    def __init__(
        self,
        base_url: str | None = None,
        model: str | None = None,
        api_key: str | None = None,
        *,
        concurrency: int = 8,
        timeout_s: float = 60.0,
        max_retries: int = 4,
        backoff_s: float = 1.0,
        max_backoff_s: float = 30.0,
        max_retry_after_s: float = 120.0,
        max_tokens: int = 1024,
        temperature: float | None = 0.0,
        label: str = "chat endpoint",
        hint: str = "",
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be ≥ 1, got {concurrency}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be ≥ 0, got {max_retries}")
        url = (base_url or _env("R1SEARCHER_JUDGE_BASE_URL", "OPENAI_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        if url.endswith("/chat/completions"):
            url = url[: -len("/chat/completions")]
        self.base_url = url
        self.model = model or _env("R1SEARCHER_JUDGE_MODEL") or DEFAULT_MODEL
        self.api_key = api_key or _env("R1SEARCHER_JUDGE_API_KEY", "OPENAI_API_KEY")
        self.timeout_s, self.max_retries = timeout_s, max_retries
        self.retry = RetryPolicy(max_retries, backoff_s, max_backoff_s, max_retry_after_s)
        self.max_tokens, self.temperature = max_tokens, temperature
        self.label, self.hint = label, hint
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        self._http = httpx.Client(
            timeout=httpx.Timeout(timeout_s),
            headers=headers,
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        )
        self._count_lock = threading.Lock()
        self.n_requests = 0

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "ChatClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def url(self) -> str:
        return f"{self.base_url}/chat/completions"

    def request_body(self, prompt: str) -> dict[str, Any]:
        """The JSON body for one user message."""
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": self.max_tokens,
        }
        if self.temperature is not None:
            body["temperature"] = self.temperature
        return body

    def _content(self, resp: httpx.Response) -> str:
        try:
            content = resp.json()["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise ChatError(f"{self.label} {self.url} sent a reply without choices[0].message.content: "
                            f"{resp.text[:200]!r}") from None
        if not isinstance(content, str):
            raise ChatError(f"{self.label} {self.url} sent non-text content {content!r}")
        return content

    def complete(self, prompt: str) -> str:
        """Send one user message and return the reply text, retrying transient failures."""
        body = self.request_body(prompt)
        last = ""
        attempts = self.max_retries + 1
        for attempt in range(attempts):
            resp = None
            with self._count_lock:
                self.n_requests += 1
            try:
                resp = self._http.post(self.url, json=body)
            except httpx.TimeoutException:
                last = f"timed out after {self.timeout_s:g} s"
            except httpx.TransportError as e:
                last = f"cannot connect ({type(e).__name__}: {e})"
            else:
                code = resp.status_code
                if code == 200:
                    return self._content(resp)
                snippet = resp.text[:200]
                if code != 429 and code < 500:
                    raise ChatError(f"{self.label} {self.url} answered HTTP {code}: {snippet!r}")
                last = f"HTTP {code}: {snippet!r}"
            if attempt + 1 < attempts:
                _sleep(self.retry.delay(attempt, resp))
        raise ChatError(f"{self.label} {self.url} failed {attempts} time(s), last: {last}.{self.hint}")
