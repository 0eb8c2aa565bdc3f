"""When a training stage has done its job: conditions on the logged metrics, e.g. move from stage 1 to
stage 2 once the format holds instead of at a fixed share of the clock.

    train.stop_when: "frac_with_search>=0.8, reward_format>=0.4"    # all must hold
    train.stop_window: 2                                              # on the mean of the last 2 steps

Pure functions of the log records, so the rule is tested without a model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_OPS = {
    ">=": lambda a, b: a >= b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    "<": lambda a, b: a < b,
}
_COND = re.compile(r"^\s*([A-Za-z_][\w:.]*)\s*(>=|<=|>|<)\s*(-?[\d.]+(?:e-?\d+)?)\s*$")


@dataclass(frozen=True)
class Condition:
    key: str
    op: str
    value: float

    def holds(self, x: float) -> bool:
        return _OPS[self.op](x, self.value)

    def __str__(self) -> str:
        return f"{self.key}{self.op}{self.value:g}"


def parse_conditions(spec: str) -> list[Condition]:
    """``"a>=0.8, b<2"`` → conditions (all must hold); ``""`` → none. A malformed part is an error."""
    out = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        m = _COND.match(part)
        if not m:
            raise ValueError(f"train.stop_when: cannot read {part!r}; write e.g. 'frac_with_search>=0.8, reward_format>=0.4'")
        out.append(Condition(m.group(1), m.group(2), float(m.group(3))))
    return out


def window_means(records: list[dict], keys: list[str], window: int) -> dict[str, float] | None:
    """Mean of each key over the last ``window`` records (None until there are that many)."""
    if window < 1:
        raise ValueError(f"train.stop_window must be >= 1, got {window}")
    if len(records) < window:
        return None
    last = records[-window:]
    means = {}
    for k in keys:
        vals = [r.get(k) for r in last]
        if any(v is None for v in vals):
            if all(k not in r for r in last):
                known = sorted(x for x in last[-1] if isinstance(last[-1][x], (int, float)))
                raise ValueError(f"train.stop_when names {k!r}, which is not in the log; logged: {', '.join(known)}")
            return None  # logged but empty at some step (e.g. no update): not yet
        means[k] = sum(float(v) for v in vals) / window
    return means


def should_stop(records: list[dict], conditions: list[Condition], window: int) -> tuple[bool, dict[str, float]]:
    """Whether every condition holds on the window means of ``records``; also the means."""
    if not conditions:
        return False, {}
    means = window_means(records, [c.key for c in conditions], window)
    if means is None:
        return False, {}
    return all(c.holds(means[c.key]) for c in conditions), means
