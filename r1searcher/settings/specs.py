"""The two training knobs written as small strings, parsed here so a config fails at load, not at the
first step: ``train.stop_when`` (conditions on logged metrics) and ``train.report_to`` (trackers).
``r1searcher.rl.stopping`` and ``r1searcher.rl.trackers`` use these parsers."""

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
TRACKERS = ("tensorboard", "wandb", "trackio")


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
        try:
            value = float(m.group(3))
        except ValueError:  # '1.2.3' matches the pattern's digits and dots
            raise ValueError(f"train.stop_when: {m.group(3)!r} in {part!r} is not a number") from None
        out.append(Condition(m.group(1), m.group(2), value))
    return out


def parse_report_to(value) -> list[str]:
    """``"tensorboard,trackio"`` or ``["wandb"]`` → names in order, without repeats; ``none``/empty → []."""
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else list(value)
    names = [str(x).strip().lower() for x in items if str(x).strip()]
    if "none" in names:
        if len(names) > 1:
            raise ValueError(f"train.report_to: 'none' cannot be combined with other trackers (got {value!r})")
        return []
    bad = [n for n in names if n not in TRACKERS]
    if bad:
        raise ValueError(f"train.report_to: unknown tracker {bad[0]!r}; choose from {', '.join(TRACKERS)} or none")
    return list(dict.fromkeys(names))
