"""``knob``: a dataclass field with one help string and its own checks; ``check_fields`` runs them."""

from __future__ import annotations

import dataclasses
from dataclasses import field
from typing import Any, ClassVar


class ConfigError(ValueError):
    """A config that cannot be used: one line naming the key (``train.lr: expected float, got str 'x'``)."""


_UNSET: Any = dataclasses.MISSING


def knob(default: Any = _UNSET, help: str = "", *, factory: Any = _UNSET, choices: tuple | None = None,
         ge: float | None = None, gt: float | None = None, le: float | None = None, env: str | None = None) -> Any:
    """A config field: ``default`` (or ``factory`` for a list), ``help`` (one string, shown by ``r1searcher
    config``), and checks on its value alone: one of ``choices``, ``>= ge``, ``> gt``, ``<= le``. ``env``
    names an environment variable read as a fallback when the config file and overrides leave it unset."""
    meta = {"help": help, "choices": choices, "ge": ge, "gt": gt, "le": le, "env": env}
    if factory is not _UNSET:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def field_help(f: dataclasses.Field) -> str:
    """The field's help, with its checks and its environment fallback appended (as ``r1searcher config`` shows)."""
    m = f.metadata
    extra = []
    if m.get("choices"):
        extra.append("one of " + " | ".join(str(c) for c in m["choices"]))
    for key, op in (("ge", ">="), ("gt", ">"), ("le", "<=")):
        if m.get(key) is not None:
            extra.append(f"{op} {m[key]:g}")
    if m.get("env"):
        extra.append(f"unset: ${m['env']}")
    text = m.get("help", "")
    return f"{text} [{'; '.join(extra)}]" if extra else text


def check_fields(obj: Any, section: str) -> None:
    """Raise :class:`ConfigError` (``section.name: must be …``) for the first field whose value breaks
    its own checks (``None``, an unset optional, passes)."""
    for f in dataclasses.fields(obj):
        v, m, key = getattr(obj, f.name), f.metadata, f"{section}.{f.name}" if section else f.name
        if v is None or isinstance(v, bool) and not m.get("choices"):
            continue
        if m.get("choices") and v not in m["choices"]:
            raise ConfigError(f"{key}: must be one of {', '.join(map(repr, m['choices']))}, got {v!r}")
        if not isinstance(v, (int, float)):
            continue
        if m.get("ge") is not None and v < m["ge"]:
            raise ConfigError(f"{key}: must be >= {m['ge']:g}, got {v!r}")
        if m.get("gt") is not None and v <= m["gt"]:
            raise ConfigError(f"{key}: must be > {m['gt']:g}, got {v!r}")
        if m.get("le") is not None and v > m["le"]:
            raise ConfigError(f"{key}: must be <= {m['le']:g}, got {v!r}")


class Section:
    """A config section: its fields' own checks run whenever it is made (from YAML, overrides or code).
    ``SECTION`` is its name in the tree, so an error names the dotted key."""

    SECTION: ClassVar[str] = ""

    def __post_init__(self) -> None:
        check_fields(self, self.SECTION)
