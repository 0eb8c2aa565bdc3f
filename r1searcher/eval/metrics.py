"""Answer metrics exactly as the paper's released code computes them.

R1-Searcher's ``evaluation/metric_calc_rule.py`` (HotpotQA / TriviaQA style), reproduced here:

* ``normalize_answer``: ``_`` → space, lower-case, punctuation (plus ``‘ ’ ´ `````) → space,
  articles ``a|an|the`` → space, whitespace collapsed.
* ``bool_mapping`` runs first on each side: the exact strings ``"True"``/``"False"`` become
  ``"yes"``/``"no"`` (no stripping, case-sensitive, as released).
* EM: normalised strings equal.
* Cover-EM (the paper's ACC_R / CEM): every normalised gold token occurs among the normalised
  predicted tokens; order and contiguity ignored. Tokens come from ``.split(" ")`` as released, so an
  empty normalised gold is covered only by an empty normalised prediction.
* F1: token-overlap F1; 0 when either side normalises to yes/no/noanswer and the two differ.
* Every metric is the max over the gold aliases (for F1 the first alias with the highest F1).
* Aggregates: mean over rows × 100, rounded to one decimal with Python's ``round`` (:func:`percent`,
  the one rounding of every aggregated metric: ``eval``'s metrics.json, ``metrics``, the held-out
  slice during training).

One extension: gold answers that are JSON booleans (not strings) map to "yes"/"no", as the
released judge script does; numbers become their ``str``. The released script only scores the first
2000 rows of a file; :func:`aggregate` scores every row it is given.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

_PUNCT = frozenset(string.punctuation + "‘’´`")
_ARTICLES_RE = re.compile(r"\b(a|an|the)\b")
_YES_NO = ("yes", "no", "noanswer")

Answer = str | bool | int | float


def _as_text(s: Answer) -> str:
    """A gold or predicted answer as text: bools become yes/no, numbers their ``str``."""
    if isinstance(s, bool):
        return "yes" if s else "no"
    if isinstance(s, (int, float)):
        return str(s)
    if not isinstance(s, str):
        raise TypeError(f"an answer must be a string, got {type(s).__name__} {s!r}")
    return s


def bool_mapping(s: str) -> str:
    """The released ``bool_mapping``: exactly ``"True"`` → ``"yes"``, ``"False"`` → ``"no"``."""
    if s == "True":
        return "yes"
    if s == "False":
        return "no"
    return s


def normalize_answer(s: str) -> str:
    """Underscores to spaces, lower-case, punctuation to spaces, drop articles, squeeze spaces."""
    s = s.replace("_", " ").lower()
    s = "".join(" " if ch in _PUNCT else ch for ch in s)
    s = _ARTICLES_RE.sub(" ", s)
    return " ".join(s.split())


def _norm(s: Answer) -> str:
    return normalize_answer(bool_mapping(_as_text(s)))


def exact_match(pred: Answer, gold: Answer) -> bool:
    """Normalised strings are equal."""
    return _norm(pred) == _norm(gold)


def cover_exact_match(pred: Answer, gold: Answer) -> bool:
    """Every normalised gold token appears among the normalised predicted tokens (order-free)."""
    pred_tokens = _norm(pred).split(" ")
    return all(tok in pred_tokens for tok in _norm(gold).split(" "))


def answer_in_text(text: str, golds: Answer | Sequence[Answer]) -> bool:
    """Whether a gold alias, normalised, appears as whole words in normalised ``text`` (answer
    recall of retrieved passages). Yes/no golds never count: they appear in any text."""
    aliases = [golds] if isinstance(golds, (str, bool, int, float)) else list(golds)  # none: nothing to find
    keys = [g for g in (_norm(x) for x in aliases) if g and g not in _YES_NO]
    if not keys:
        return False
    seen = f" {normalize_answer(text)} "
    return any(f" {k} " in seen for k in keys)


def f1_precision_recall(pred: Answer, gold: Answer) -> tuple[float, float, float]:
    """HotpotQA token F1, precision and recall with the yes/no/noanswer rule."""
    p, g = _norm(pred), _norm(gold)
    if (p in _YES_NO or g in _YES_NO) and p != g:
        return 0.0, 0.0, 0.0
    p_tokens, g_tokens = p.split(), g.split()
    same = sum((Counter(p_tokens) & Counter(g_tokens)).values())
    if same == 0:
        return 0.0, 0.0, 0.0
    precision = same / len(p_tokens)
    recall = same / len(g_tokens)
    return 2 * precision * recall / (precision + recall), precision, recall


def f1_score(pred: Answer, gold: Answer) -> float:
    """Token-overlap F1 (see :func:`f1_precision_recall`)."""
    return f1_precision_recall(pred, gold)[0]


def _golds(golds: Answer | Sequence[Answer]) -> list[Answer]:
    out = [golds] if isinstance(golds, (str, bool, int, float)) else list(golds)
    if not out:
        raise ValueError("no gold answers to score against")
    return out


def max_exact_match(pred: Answer, golds: Answer | Sequence[Answer]) -> bool:
    """EM against the best gold alias."""
    return max(exact_match(pred, g) for g in _golds(golds))


def max_cover_exact_match(pred: Answer, golds: Answer | Sequence[Answer]) -> bool:
    """Cover-EM against the best gold alias."""
    return max(cover_exact_match(pred, g) for g in _golds(golds))


def max_f1_score(pred: Answer, golds: Answer | Sequence[Answer]) -> float:
    """F1 against the best gold alias."""
    return max(f1_score(pred, g) for g in _golds(golds))


def score_prediction(pred: Answer, golds: Answer | Sequence[Answer]) -> dict[str, float]:
    """``{"em", "cover_em", "f1"}`` for one prediction, each maxed over the gold aliases.

    ``golds`` is one answer or a list of aliases; EM and cover-EM are 0.0/1.0.
    """
    gs = _golds(golds)
    return {
        "em": float(max_exact_match(pred, gs)),
        "cover_em": float(max_cover_exact_match(pred, gs)),
        "f1": max_f1_score(pred, gs),
    }


#: The answer metrics, one name each: ``em`` (exact match), ``cover_em`` (the paper's ACC_R / CEM:
#: every gold token in the prediction) and ``f1`` (token F1); per row 0/1 (F1 in [0, 1]), aggregated
#: as percentages. The LLM judge's verdicts aggregate as ``judge`` (the paper's ACC_L). (Training's
#: per-step log, ``rl/trainer.rollout_sums``, is the exception: means in [0, 1], cover-EM as ``acc``.)
SCORES = ("em", "cover_em", "f1")


def percent(total: float, n: int) -> float:
    """The one rounding rule for an aggregated metric: the mean over ``n`` rows as a percentage
    with one decimal, as released (``round(total / n * 100, 1)``)."""
    return round(total / n * 100, 1)


def per_question(total: float, n: int) -> float:
    """A count or share per question (searches, answered), three decimals."""
    return round(total / n, 3)


def score_sums(rows: Iterable[Mapping[str, object]]) -> dict[str, float]:
    """``{"n", "em", "cover_em", "f1"}``: the row count and each score's sum over rows of
    :func:`score_prediction` output. Sums add up (across batches, hop groups, ranks) before
    :func:`aggregate_sums` turns them into percentages."""
    out = {"n": 0.0, **{key: 0.0 for key in SCORES}}
    for r in rows:
        out["n"] += 1
        for key in SCORES:
            out[key] += float(r[key])  # type: ignore[arg-type]
    return out


def aggregate_sums(sums: Mapping[str, float]) -> dict[str, float | int | None]:
    """``{"n", "em", "cover_em", "f1"}`` as percentages (:func:`percent`) from :func:`score_sums`
    output; with ``n`` 0 every metric is None."""
    n = int(sums.get("n", 0))
    return {"n": n, **{key: percent(sums[key], n) if n else None for key in SCORES}}


def aggregate(rows: Iterable[Mapping[str, object]]) -> dict[str, float | int | None]:
    """The aggregator of every evaluation: percentages over rows of :func:`score_prediction` output.

    Returns ``{"n", "em", "cover_em", "f1", "judge"}``. A row may carry ``"judge"`` (bool, or None
    when not judged); ``judge`` is the percentage judged correct when every row has a verdict, else
    None. With no rows every metric is None.
    """
    rows = list(rows)
    out = aggregate_sums(score_sums(rows))
    verdicts = [r.get("judge") for r in rows]
    judged = bool(rows) and all(v is not None for v in verdicts)
    out["judge"] = percent(float(sum(bool(v) for v in verdicts)), len(rows)) if judged else None
    return out
