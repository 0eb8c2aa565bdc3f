"""LLM-as-judge (the paper's ACC_L) through any OpenAI-compatible chat-completions endpoint.

    with Judge(base_url="http://localhost:8000/v1", model="qwen2.5-7b-instruct") as judge:
        results = judge.judge_many([(question, gold, pred), ...])
        acc_l = sum(r.correct for r in results) / len(results)

Endpoint, model and key come from the arguments, else ``R1SEARCHER_JUDGE_BASE_URL`` /
``R1SEARCHER_JUDGE_MODEL`` / ``R1SEARCHER_JUDGE_API_KEY``, else ``OPENAI_BASE_URL`` /
``OPENAI_API_KEY``, else ``https://api.openai.com/v1`` and ``gpt-4o-mini`` (the paper's judge).
Requests go through :class:`r1searcher.util.chat.ChatClient`: they retry with exponential backoff on 429,
5xx, timeouts and connection errors (a ``Retry-After`` header is honoured); at most ``concurrency``
requests are in flight. Every answer is cached in SQLite keyed by (model, prompt version, question,
gold, prediction), so a rerun pays only for what it has not judged yet.
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

from r1searcher import paths
from r1searcher.settings.judge import PAPER_MAX_TOKENS
from r1searcher.util.chat import ChatClient, ChatError

#: The released judge prompt (``evaluation/metric_calc_gpt_as_judge.py``). The blank line
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

#: What the error that ends the retries tells the user to check.
_HINT = (" Is the server up? "
         "Set R1SEARCHER_JUDGE_BASE_URL (or pass --judge-base-url) to an OpenAI-compatible /v1 URL.")


class JudgeError(ChatError):
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


def default_cache_path() -> Path:
    """``$R1SEARCHER_JUDGE_CACHE`` (a file), else ``judge.sqlite`` under the cache root
    (``$R1SEARCHER_CACHE_DIR``, see :mod:`r1searcher.paths`)."""
    return paths.judge_cache_file()


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
    """A chat-completions judge (:class:`r1searcher.util.chat.ChatClient`: retries, a concurrency limit)
    with an on-disk cache.

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
        self.chat = ChatClient(base_url, model, api_key, concurrency=concurrency, timeout_s=timeout_s,
                               max_retries=max_retries, backoff_s=backoff_s, max_backoff_s=max_backoff_s,
                               max_retry_after_s=max_retry_after_s, max_tokens=max_tokens,
                               temperature=temperature, label="judge endpoint", hint=_HINT)
        self.concurrency = concurrency
        self.strict = strict
        self.cache = JudgeCache(cache_path or default_cache_path()) if use_cache else None
        self._count_lock = threading.Lock()
        self.n_cached = 0

    @property
    def base_url(self) -> str:
        return self.chat.base_url

    @property
    def model(self) -> str:
        return self.chat.model

    @property
    def api_key(self) -> str | None:
        return self.chat.api_key

    @property
    def url(self) -> str:
        return self.chat.url

    @property
    def n_requests(self) -> int:
        return self.chat.n_requests

    def close(self) -> None:
        self.chat.close()
        if self.cache is not None:
            self.cache.close()

    def __enter__(self) -> "Judge":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def complete(self, prompt: str) -> str:
        """Send one user message and return the reply text, retrying transient failures."""
        try:
            return self.chat.complete(prompt)
        except ChatError as e:
            raise JudgeError(str(e)) from None

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
