"""LLM-as-judge (the paper's ACC_L) through any OpenAI-compatible chat-completions endpoint.

    with Judge(base_url="http://localhost:8000/v1", model="qwen2.5-7b-instruct") as judge:
        results = judge.judge_many([(question, gold, pred), ...])
        acc_l = sum(r.correct for r in results) / len(results)

Endpoint, model and key come from the arguments, else ``R1SEARCHER_JUDGE_BASE_URL`` /
``R1SEARCHER_JUDGE_MODEL`` / ``R1SEARCHER_JUDGE_API_KEY``, else ``OPENAI_BASE_URL`` /
``OPENAI_API_KEY``, else ``https://api.openai.com/v1`` and ``gpt-4o-mini`` (the paper's judge).
Requests retry with exponential backoff on 429, 5xx, timeouts and connection errors (a
``Retry-After`` header is honoured); at most ``concurrency`` requests are in flight; every answer is
cached in SQLite keyed by (model, prompt version, question, gold, prediction), so a rerun pays only
for what it has not judged yet.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from r1searcher import paths
from r1searcher.http_retry import RetryPolicy

#: The released judge prompt (``evaluation/metric_calc_gpt_as_judge.py``, notes §5). The blank line
#: and the four-space indent of the last lines come from the triple-quoted string in that script.
JUDGE_PROMPT = (
    "Given a Question and its Golden Answer, verify whether the Predicted Answer is correct. "
    "The prediction is correct if it fully aligns with the meaning and key information of the "
    "Golden Answer. Respond with True if the prediction is correct and False otherwise.\n"
    "\n"
    "    Question: {question}\n"
    "    Golden Answer: {reference}\n"
    "    Predicted Answer: {prediction}\n"
    "    "
)
#: Part of every cache key: bump it when the prompt or the request changes.
PROMPT_VERSION = "r1searcher-judge-v1"

DEFAULT_BASE_URL = "https://api.openai.com/v1"
_sleep = time.sleep  # the retry wait; a seam for tests
DEFAULT_MODEL = "gpt-4o-mini"
PAPER_MAX_TOKENS = 1024


class JudgeError(RuntimeError):
    """The judge endpoint could not be used (unreachable, refused, malformed reply, retries spent)."""


@dataclass(frozen=True)
class JudgeResult:
    """One judgment: the model's raw reply, whether it counts as correct, and whether it was cached."""

    output: str
    correct: bool
    cached: bool


def format_gold(gold: Any) -> str:
    """The gold answer as the released script puts it in the prompt: bool False → "no", True → "yes"."""
    if isinstance(gold, bool):
        return "yes" if gold else "no"
    return str(gold)


def build_prompt(question: str, gold: Any, pred: Any) -> str:
    """The judge's single user message."""
    return JUDGE_PROMPT.format(question=question, reference=format_gold(gold), prediction="" if pred is None else pred)


def parse_verdict(output: str | None, strict: bool = False) -> bool:
    """Whether a judge reply means "correct".

    ``strict`` is the paper's rule (``gpt4o_output == "True"``). The default also accepts surrounding
    whitespace, quotes, a trailing full stop and any letter case ("true.", " True"), which local
    models often add; on replies that are exactly "True"/"False" both rules agree.
    """
    if output is None:
        return False
    if strict:
        return output == "True"
    return output.strip().strip("\"'`*").rstrip(".!").strip().lower() == "true"


def _env(*names: str) -> str | None:
    for n in names:
        v = os.environ.get(n)
        if v:
            return v
    return None


def default_cache_path() -> Path:
    """``$R1SEARCHER_JUDGE_CACHE`` (a file), else ``judge.sqlite`` under the cache root
    (``$R1SEARCHER_CACHE_DIR``, see :mod:`r1searcher.paths`)."""
    env = os.environ.get("R1SEARCHER_JUDGE_CACHE")
    return Path(env).expanduser() if env else paths.cache_path("judge.sqlite")


class JudgeCache:
    """A small thread-safe SQLite map from a judgment key to the judge's raw reply."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), timeout=30, check_same_thread=False)
        with self._lock, self._db:
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS judgments (key TEXT PRIMARY KEY, model TEXT, question TEXT,"
                " gold TEXT, pred TEXT, output TEXT NOT NULL, created REAL)"
            )

    @staticmethod
    def key(model: str, question: str, gold: str, pred: str) -> str:
        """sha256 of (prompt version, model, question, gold, prediction)."""
        blob = json.dumps([PROMPT_VERSION, model, question, gold, pred], ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def get(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT output FROM judgments WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def put(self, key: str, model: str, question: str, gold: str, pred: str, output: str) -> None:
        with self._lock, self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO judgments VALUES (?, ?, ?, ?, ?, ?, ?)",
                (key, model, question, gold, pred, output, time.time()),
            )

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM judgments").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()


class Judge:
    """A chat-completions judge client with retries, a concurrency limit and an on-disk cache.

    ``cache_path`` None means :func:`default_cache_path`; ``use_cache=False`` disables caching.
    ``temperature`` None leaves it to the server (the released script did not set it); the default 0
    makes reruns reproducible. ``strict`` selects the paper's exact verdict rule (see
    :func:`parse_verdict`). Counters ``n_requests`` (HTTP requests sent, retries included) and
    ``n_cached`` (answers served from the cache) help check what a run paid for.
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
        max_tokens: int = PAPER_MAX_TOKENS,
        temperature: float | None = 0.0,
        strict: bool = False,
        cache_path: str | os.PathLike[str] | None = None,
        use_cache: bool = True,
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
        self.concurrency = concurrency
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.retry = RetryPolicy(max_retries, backoff_s, max_backoff_s, max_retry_after_s)
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.strict = strict
        self.cache = JudgeCache(cache_path or default_cache_path()) if use_cache else None
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
        self.n_cached = 0

    # -- lifecycle -------------------------------------------------------------------------------
    def close(self) -> None:
        self._http.close()
        if self.cache is not None:
            self.cache.close()

    def __enter__(self) -> "Judge":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- one HTTP call with retries --------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"{self.base_url}/chat/completions"

    def _request_body(self, prompt: str) -> dict[str, Any]:
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
            raise JudgeError(f"judge endpoint {self.url} sent a reply without choices[0].message.content: "
                             f"{resp.text[:200]!r}") from None
        if not isinstance(content, str):
            raise JudgeError(f"judge endpoint {self.url} sent non-text content {content!r}")
        return content

    def complete(self, prompt: str) -> str:
        """Send one user message and return the reply text, retrying transient failures."""
        body = self._request_body(prompt)
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
                    raise JudgeError(f"judge endpoint {self.url} answered HTTP {code}: {snippet!r}")
                last = f"HTTP {code}: {snippet!r}"
            if attempt + 1 < attempts:
                _sleep(self.retry.delay(attempt, resp))
        raise JudgeError(
            f"judge endpoint {self.url} failed {attempts} time(s), last: {last}. Is the server up? "
            "Set R1SEARCHER_JUDGE_BASE_URL (or pass --judge-base-url) to an OpenAI-compatible /v1 URL."
        )

    # -- judgments -------------------------------------------------------------------------------
    def _key(self, question: str, gold: str, pred: str) -> str:
        return JudgeCache.key(self.model, question, gold, pred)

    def judge_one(self, question: str, gold: Any, pred: Any) -> JudgeResult:
        """Judge one prediction against one gold answer (cache first)."""
        g, p = format_gold(gold), "" if pred is None else str(pred)
        key = self._key(question, g, p)
        if self.cache is not None:
            hit = self.cache.get(key)
            if hit is not None:
                with self._count_lock:
                    self.n_cached += 1
                return JudgeResult(hit, parse_verdict(hit, self.strict), cached=True)
        output = self.complete(build_prompt(question, g, p))
        if self.cache is not None:
            self.cache.put(key, self.model, question, g, p, output)
        return JudgeResult(output, parse_verdict(output, self.strict), cached=False)

    def judge_many(self, items: Sequence[tuple[str, Any, Any]]) -> list[JudgeResult]:
        """Judge ``(question, gold, prediction)`` triples, at most ``concurrency`` at a time.

        Identical triples are judged once. On the first failure the pending work is cancelled and the
        JudgeError raised; answers already received stay cached, so a rerun resumes.
        """
        norm = [(q, format_gold(g), "" if p is None else str(p)) for q, g, p in items]
        unique: dict[str, tuple[str, str, str]] = {}
        for t in norm:
            unique.setdefault(self._key(*t), t)
        results: dict[str, JudgeResult] = {}
        pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="judge")
        try:
            futures = {pool.submit(self.judge_one, *t): k for k, t in unique.items()}
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            for f in done:
                err = f.exception()
                if err is not None:
                    raise err
            for f, k in futures.items():
                results[k] = f.result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        return [results[self._key(*t)] for t in norm]
