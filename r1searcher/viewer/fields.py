"""Read one JSONL record's fields into the types the viewer's rows promise, whatever the file holds.

``samples.jsonl`` and ``predictions.jsonl`` are files on disk: hand-edited, truncated, or written by
another tool. A field of the wrong type must neither break the page nor reach it as markup, so each
field is checked here: numbers must be finite numbers (a numeric string such as ``"3"`` is taken as
the number), counts whole and non-negative, texts strings. A value that fails is left out of the row
(None, or the field's default) and kept, as text, in :attr:`Fields.bad` under the record's own key,
so the page can say which values were bad and show them escaped.
"""

from __future__ import annotations

import json
import math

SHOWN = 200  # characters of a bad value kept to show


def _shown(value) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= SHOWN else text[:SHOWN] + "…"


class Fields:
    """One record's fields, read with a type each; ``bad`` maps a field to its rejected value (as text)."""

    def __init__(self, record: dict):
        self.d = record
        self.bad: dict[str, str] = {}

    def has(self, key: str) -> bool:
        return key in self.d

    def _reject(self, key: str, default=None):
        self.bad[key] = _shown(self.d[key])
        return default

    def number(self, key: str, digits: int = 4) -> float | None:
        """A finite number rounded to ``digits``; None when absent, null or not a number."""
        x = self.d.get(key)
        if x is None:
            return None
        value = _as_float(x)
        return self._reject(key) if value is None else round(value, digits)

    def count(self, key: str, default: int | None = None) -> int | None:
        """A whole number >= 0 (a step, a number of searches); ``default`` when absent, None when bad."""
        x = self.d.get(key)
        if x is None:
            return default
        value = _as_float(x)
        if value is None or value < 0 or value != int(value):
            return self._reject(key)
        return int(value)

    def text(self, key: str, default: str | None = "") -> str | None:
        """A string; a number is written out, anything else (list, object, bool) is bad."""
        x = self.d.get(key)
        if x is None:
            return default
        return str(x) if _plain(x) else self._reject(key, _shown(x))

    def texts(self, key: str) -> list[str]:
        """A list of strings (one string or number is a list of one; numbers are written out); else bad."""
        x = self.d.get(key)
        if x is None:
            return []
        items = x if isinstance(x, list) else [x]
        if all(_plain(v) for v in items):
            return [str(v) for v in items]
        return self._reject(key, [_shown(x)])

    def parts(self, key: str) -> dict[str, float | str]:
        """``{name: number or text}`` (the reward's components); not an object: bad, empty."""
        x = self.d.get(key)
        if x is None:
            return {}
        if not isinstance(x, dict):
            return self._reject(key, {})
        out: dict[str, float | str] = {}
        for k, v in x.items():
            num = _as_float(v) if not isinstance(v, str) else None
            out[str(k)] = round(num, 4) if num is not None else _shown(v)
        return out

    def spans(self, key: str, length: int) -> list[list[int]] | None:
        """Sorted, disjoint ``[start, end)`` pairs inside ``length`` characters; None when absent or bad."""
        x = self.d.get(key)
        if x is None:
            return None
        ok = isinstance(x, list) and all(
            isinstance(s, list) and len(s) == 2 and all(isinstance(v, int) and not isinstance(v, bool) for v in s) for s in x)
        if ok:
            edges = [v for s in x for v in s]
            ok = all(a <= b for a, b in zip(edges, edges[1:])) and (not edges or (edges[0] >= 0 and edges[-1] <= length))
        return x if ok else self._reject(key)


def _plain(x) -> bool:
    """A string, or a number that reads as one."""
    return isinstance(x, str) or (isinstance(x, (int, float)) and not isinstance(x, bool))


def _as_float(x) -> float | None:
    """``x`` as a finite float: numbers and numeric strings; None for anything else (bools, NaN, ±inf)."""
    if isinstance(x, bool):
        return None
    if not isinstance(x, (int, float, str)):
        return None
    try:
        value = float(x)
    except (ValueError, OverflowError):  # "abc"; an int too large for a float
        return None
    return value if math.isfinite(value) else None
