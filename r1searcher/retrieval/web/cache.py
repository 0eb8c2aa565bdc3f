"""A persistent key → JSON cache in SQLite for web search results, fetched pages and summaries.

One file (``web.sqlite`` under the cache root ``$R1SEARCHER_CACHE_DIR``, see :mod:`r1searcher.paths`)
is shared by training, evaluation and ``ask``: a query any of them paid for is never paid for again. The
database runs in WAL mode with a busy timeout, so several processes (rollout workers, an eval run,
a ``serve --web`` process) can read and write it at once; within a process one connection is
shared by all threads behind a lock.

Entries live in namespaces (``search``, ``page``, ``summary``); a key is the sha256 of the JSON of
everything that determines the answer (see :func:`make_key`). ``max_age_s`` on :meth:`WebCache.get`
ignores entries older than that, for users who want fresh results; by default entries never expire,
which keeps reruns reproducible.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from r1searcher import paths

CACHE_DIR_ENV = paths.CACHE_ENV
FILENAME = "web.sqlite"


def default_cache_dir() -> Path:
    """The cache root (``$R1SEARCHER_CACHE_DIR``, …: :func:`r1searcher.paths.cache_root`)."""
    return paths.cache_root()


def make_key(*parts: Any) -> str:
    """sha256 of the JSON of ``parts`` (order matters; anything JSON-serialisable)."""
    blob = json.dumps(parts, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class WebCache:
    """Thread- and process-safe ``(namespace, key) → JSON value`` store on disk."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path is not None else default_cache_dir() / FILENAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), timeout=60, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA busy_timeout = 60000")
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS entries (ns TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,"
            " created REAL NOT NULL, PRIMARY KEY (ns, key))"
        )
        self.hits = 0
        self.misses = 0

    def get(self, ns: str, key: str, max_age_s: float | None = None) -> Any | None:
        """The stored value, or None when absent (or older than ``max_age_s``)."""
        with self._lock:
            row = self._db.execute("SELECT value, created FROM entries WHERE ns = ? AND key = ?", (ns, key)).fetchone()
            if row is None or (max_age_s is not None and time.time() - row[1] > max_age_s):
                self.misses += 1
                return None
            self.hits += 1
        return json.loads(row[0])

    def put(self, ns: str, key: str, value: Any) -> None:
        """Store ``value`` (JSON-serialisable) under ``(ns, key)``, replacing any older one."""
        blob = json.dumps(value, ensure_ascii=False)
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?)", (ns, key, blob, time.time()))

    def count(self, ns: str | None = None) -> int:
        """Entries in one namespace, or in all."""
        with self._lock:
            if ns is None:
                return int(self._db.execute("SELECT COUNT(*) FROM entries").fetchone()[0])
            return int(self._db.execute("SELECT COUNT(*) FROM entries WHERE ns = ?", (ns,)).fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> WebCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
