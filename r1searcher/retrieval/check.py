"""Check that a retriever keeps the :class:`~r1searcher.retrieval.base.Retriever` contract, as
Gymnasium's ``env_checker`` does for environments: run it on your own retriever before a rollout
engine, the server or an evaluation relies on it.

    from r1searcher.retrieval.check import check_retriever

    check_retriever(my_retriever, ["capital of France", "who wrote Hamlet"], k=3)

The contract, one rule per check (the first broken one raises :class:`RetrieverCheckError` naming it):

* **batch shape**: ``search(queries, k)`` returns a list with one list per query, in the order of
  the queries; each holds at most ``k`` :class:`~r1searcher.retrieval.base.Passage` objects (string
  ``id``/``title``/``text``; ``score`` a finite number or None), best first (scores never rise),
  with no passage twice; an empty batch gives ``[]``; a query repeated in a batch gets the same list.
* **k**: a ``k`` larger than the corpus gives at most the corpus (``len(retriever)`` when it has
  one); ``k < 1`` is a ``ValueError`` and a ``k`` that is not an integer a ``TypeError`` or
  ``ValueError``, never a silent empty list.
* **empty query**: ``""`` and a blank query find nothing (an empty list), without an error.
* **wrong types**: one string instead of a list of strings, and a list holding something other
  than strings, are a ``TypeError`` or ``ValueError`` (not a server round trip or a search over the
  characters of the string).
* **deterministic**: the same call twice gives the same passages in the same order, and a query
  searched alone gets the passages it gets inside a batch.
* **same index, same passages**: with ``twin`` (the same index loaded a second time, another client
  of the same server), the twin answers every query with the same passages, scores within 1e-5.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from r1searcher.retrieval.base import Passage

#: Relative tolerance on scores between a retriever and its twin (float32 index arithmetic).
SCORE_RTOL = 1e-5


class RetrieverCheckError(AssertionError):
    """A retriever broke a rule of the contract (the message names the rule and what it returned)."""


def check_retriever(retriever: Any, queries: Sequence[str], k: int = 3, *, twin: Any = None,
                    big_k: int | None = None) -> None:
    """Run every check of the module doc on ``retriever`` with ``queries`` (strings that find
    something) and ``k``; raise :class:`RetrieverCheckError` at the first broken rule.

    ``twin``: a second retriever over the same index, which must answer alike. ``big_k``: the
    ``k`` for the "larger than the corpus" check (default ``len(retriever) + 5`` for a retriever
    with a length, else 50; a server may refuse more than its own maximum, 100 by default).
    """
    queries = list(queries)
    if not queries or not all(isinstance(q, str) and q.strip() for q in queries):
        raise ValueError("check_retriever needs at least one non-blank query string")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"check_retriever needs k >= 1, got {k!r}")
    if not callable(getattr(retriever, "search", None)):
        raise RetrieverCheckError(f"{type(retriever).__name__} has no search(queries, k) method")
    first = check_batch_shape(retriever, queries, k)
    check_k(retriever, queries, big_k)
    check_empty_queries(retriever, k)
    check_wrong_types(retriever, queries[0], k)
    check_deterministic(retriever, queries, k, first)
    if twin is not None:
        check_twin(retriever, twin, queries, k)


def _search(retriever: Any, queries: list[str], k: int, rule: str) -> list[list[Passage]]:
    try:
        return retriever.search(queries, k)
    except Exception as e:  # noqa: BLE001  (any failure of a valid call breaks the contract)
        raise RetrieverCheckError(f"{rule}: search({_short(queries)}, k={k}) raised {type(e).__name__}: {e}") from e


def _short(queries: list[str]) -> str:
    text = repr(queries)
    return text if len(text) <= 80 else text[:77] + "...]"


def _key(p: Passage) -> tuple[str, str, str]:
    return p.id, p.title, p.text


def _check_result(result: object, n: int, k: int, call: str) -> list[list[Passage]]:
    """One reply's shape: a list of ``n`` lists of at most ``k`` passages, best first, no repeats."""
    if not isinstance(result, list) or len(result) != n:
        got = f"{type(result).__name__} of {len(result)}" if isinstance(result, Sequence) else type(result).__name__
        raise RetrieverCheckError(f"batch shape: {call} must return a list of {n} lists (one per query), got {got}")
    for i, hits in enumerate(result):
        if not isinstance(hits, list):
            raise RetrieverCheckError(f"batch shape: {call}[{i}] must be a list of passages, got {type(hits).__name__}")
        if len(hits) > k:
            raise RetrieverCheckError(f"k: {call}[{i}] has {len(hits)} passages, more than k={k}")
        for j, p in enumerate(hits):
            _check_passage(p, f"{call}[{i}][{j}]")
        scores = [p.score for p in hits]
        if all(s is not None for s in scores) and any(b > a for a, b in zip(scores, scores[1:])):
            raise RetrieverCheckError(f"best first: {call}[{i}]'s scores rise: {scores}")
        keys = [_key(p) for p in hits]
        if len(set(keys)) != len(keys):
            raise RetrieverCheckError(f"batch shape: {call}[{i}] holds a passage twice: {[p.id for p in hits]}")
    return result  # type: ignore[return-value]


def _check_passage(p: object, where: str) -> None:
    if not isinstance(p, Passage):
        raise RetrieverCheckError(f"batch shape: {where} must be a Passage, got {type(p).__name__}")
    for name in ("id", "title", "text"):
        if not isinstance(getattr(p, name), str):
            raise RetrieverCheckError(f"batch shape: {where}.{name} must be a string, got {type(getattr(p, name)).__name__}")
    s = p.score
    if s is not None and (isinstance(s, bool) or not isinstance(s, (int, float)) or not math.isfinite(s)):
        raise RetrieverCheckError(f"batch shape: {where}.score must be a finite number or None, got {s!r}")


def check_batch_shape(retriever: Any, queries: list[str], k: int) -> list[list[Passage]]:
    """One list per query, at most ``k`` passages each, best first; ``[]`` for an empty batch; a
    query repeated in the batch gets the same list. Returns the reply to ``queries``."""
    first = _check_result(_search(retriever, queries, k, "batch shape"), len(queries), k, f"search(queries, k={k})")
    empty = _search(retriever, [], k, "batch shape")
    if empty != []:
        raise RetrieverCheckError(f"batch shape: search([], k={k}) must return [], got {empty!r:.200}")
    q = queries[0]
    twice = _check_result(_search(retriever, [q, q], k, "batch shape"), 2, k, "search([q, q])")
    if [_key(p) for p in twice[0]] != [_key(p) for p in twice[1]]:
        raise RetrieverCheckError(f"batch shape: the query {q!r} repeated in one batch got two different lists")
    return first


def check_k(retriever: Any, queries: list[str], big_k: int | None = None) -> None:
    """A ``k`` past the corpus is clamped to it; ``k`` of 0, -1 and 1.5 are refused with an error."""
    size = len(retriever) if hasattr(retriever, "__len__") else None
    big = big_k if big_k is not None else (size + 5 if size is not None else 50)
    res = _check_result(_search(retriever, queries, big, "k"), len(queries), big, f"search(queries, k={big})")
    if size is not None:
        over = [len(r) for r in res if len(r) > size]
        if over:
            raise RetrieverCheckError(f"k: k={big} gave {over[0]} passages from a corpus of {size}")
    for bad, errors in ((0, (ValueError,)), (-1, (ValueError,)), (1.5, (TypeError, ValueError))):
        _expect_error(retriever, queries[:1], bad, errors, f"k: search(queries, k={bad!r})")


def _expect_error(retriever: Any, queries: object, k: object, errors: tuple[type[Exception], ...], call: str) -> None:
    names = " or ".join(e.__name__ for e in errors)
    try:
        got = retriever.search(queries, k)
    except errors:
        return
    except Exception as e:  # noqa: BLE001
        raise RetrieverCheckError(f"{call} must raise {names}, raised {type(e).__name__}: {e}") from e
    raise RetrieverCheckError(f"{call} must raise {names}, returned {got!r:.200}")


def check_empty_queries(retriever: Any, k: int) -> None:
    """``""`` and a blank query find nothing, without an error."""
    res = _check_result(_search(retriever, ["", "   "], k, "empty query"), 2, k, 'search(["", "   "])')
    if res != [[], []]:
        raise RetrieverCheckError(f"empty query: an empty or blank query must find nothing, got "
                                  f"{[[p.id for p in r] for r in res]}")


def check_wrong_types(retriever: Any, query: str, k: int) -> None:
    """A bare string for the batch, or a batch holding a non-string, is a TypeError/ValueError."""
    _expect_error(retriever, query, k, (TypeError, ValueError), f"wrong types: search({query!r}, k={k}) (a string, not a list)")
    _expect_error(retriever, [query, 7], k, (TypeError, ValueError), f"wrong types: search([{query!r}, 7], k={k})")
    _expect_error(retriever, [None], k, (TypeError, ValueError), f"wrong types: search([None], k={k})")


def _same(a: list[list[Passage]], b: list[list[Passage]], scores: bool) -> str | None:
    """Where two replies differ (passages, order, scores within :data:`SCORE_RTOL`), else None."""
    for i, (x, y) in enumerate(zip(a, b)):
        if [_key(p) for p in x] != [_key(p) for p in y]:
            return f"query {i}: {[p.id for p in x]} vs {[p.id for p in y]}"
        if scores:
            for p, q in zip(x, y):
                if (p.score is None) != (q.score is None) or (
                        p.score is not None and not math.isclose(p.score, q.score, rel_tol=SCORE_RTOL, abs_tol=1e-7)):
                    return f"query {i}: passage {p.id!r} scored {p.score} vs {q.score}"
    return None


def check_deterministic(retriever: Any, queries: list[str], k: int, first: list[list[Passage]] | None = None) -> None:
    """The same call twice gives the same passages in the same order; each query alone gets what
    it got in the batch."""
    first = first if first is not None else _search(retriever, queries, k, "deterministic")
    again = _search(retriever, queries, k, "deterministic")
    diff = _same(first, again, scores=True)
    if diff:
        raise RetrieverCheckError(f"deterministic: the same search twice gave different passages ({diff})")
    for i, q in enumerate(queries):
        alone = _check_result(_search(retriever, [q], k, "deterministic"), 1, k, f"search([{q!r}])")
        if [_key(p) for p in alone[0]] != [_key(p) for p in first[i]]:
            raise RetrieverCheckError(f"deterministic: {q!r} alone found {[p.id for p in alone[0]]}, in the batch "
                                      f"{[p.id for p in first[i]]}")


def check_twin(retriever: Any, twin: Any, queries: list[str], k: int) -> None:
    """Two retrievers over the same index (loaded twice, two clients of one server) answer alike."""
    a = _search(retriever, queries, k, "same index")
    b = _check_result(_search(twin, queries, k, "same index"), len(queries), k, "twin.search(queries)")
    diff = _same(a, b, scores=True)
    if diff:
        raise RetrieverCheckError(f"same index: the index loaded twice gave different passages ({diff})")
