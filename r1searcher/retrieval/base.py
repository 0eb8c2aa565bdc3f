"""The retrieval protocol every backend speaks, and the document-block format of the paper."""

from __future__ import annotations

import numbers
from dataclasses import asdict, dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class Passage:
    """One retrievable passage (≤100 words, title kept)."""

    id: str
    title: str
    text: str
    score: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def contents(self) -> str:
        """Search-R1 ``contents``: title, a newline, then the text."""
        return f"{self.title}\n{self.text}"


class RetrieverError(RuntimeError):
    """The retriever could not answer (server down, timeout, bad reply). Never a silent empty list."""


@runtime_checkable
class Retriever(Protocol):
    """Batch search: one call answers every query of a rollout round."""

    def search(self, queries: list[str], k: int) -> list[list[Passage]]:
        """Return, for each query, up to ``k`` passages, best first."""
        ...


def check_batch(queries: list[str], k: int) -> None:
    """The arguments every ``search`` / ``search_rows`` takes: a list of query strings (a bare string
    is a caller's slip, not a batch of characters) and an integer ``k >= 1``
    (:mod:`r1searcher.retrieval.check` holds every retriever to this)."""
    if isinstance(queries, str):
        raise TypeError("search takes a list of queries, not one string")
    for q in queries:
        if not isinstance(q, str):
            raise TypeError(f"queries must be strings, got {type(q).__name__}")
    if isinstance(k, bool) or not isinstance(k, numbers.Integral):
        raise TypeError(f"k must be an integer, got {type(k).__name__}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")


def format_documents(passages: list[Passage], max_words: int | None = None) -> str:
    """The paper's numbered document lines: ``(1) Title: text\\n(2) …`` (``None`` when empty).

    The system wraps this as ``<|begin_of_documents|>\\n`` + lines + ``<|end_of_documents|>\\n\\n``.
    ``max_words`` caps each passage's text (the title is always kept).
    """
    if not passages:
        return "None\n"
    lines = []
    for i, p in enumerate(passages, 1):
        words = p.text.split()
        if max_words is not None and len(words) > max_words:
            words = words[:max_words]
        lines.append(f"({i}) {p.title}: {' '.join(words)}\n")
    return "".join(lines)
