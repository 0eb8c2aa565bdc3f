"""Environment variables as documented fallbacks, read in this one place.

A field declared with ``knob(..., env="NAME")`` takes ``$NAME`` when the config file and the overrides
leave it unset; the field's help names the variable (``r1searcher config`` shows it). The cache and
data roots are resolved by :mod:`r1searcher.paths`.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from typing import Any

from r1searcher.settings.fields import ConfigError

_TRUE, _FALSE = frozenset({"1", "true", "yes", "on"}), frozenset({"0", "false", "no", "off"})


def parse_env(name: str, raw: str, typ: Any) -> Any:
    """``raw`` (the value of ``$name``) as a value of the field type ``typ`` (str, float, int or bool)."""
    args = [a for a in typing.get_args(typ) if a is not type(None)] or [typ]
    base = args[0]
    if base is bool:
        flag = raw.strip().lower()
        if flag not in _TRUE | _FALSE:
            raise ConfigError(f"{name} must be 1/true/yes/on or 0/false/no/off, got {raw!r}")
        return flag in _TRUE
    if base in (int, float):
        try:
            return base(raw)
        except ValueError:
            what = " (requests per second)" if name.endswith("_RPS") else ""
            raise ConfigError(f"{name} must be a number{what}, got {raw!r}") from None
    return raw


def section_env(cls: type, present: dict[str, Any]) -> dict[str, Any]:
    """Values from the environment for the fields of section ``cls`` that ``present`` does not set."""
    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        name = f.metadata.get("env")
        raw = os.environ.get(name) if name else None
        if raw and f.name not in present:
            out[f.name] = parse_env(name, raw, hints[f.name])
    return out


#: The variables that are not fallbacks of a field: where things live, and how errors print.
#: ``r1searcher config`` lists them after the keys; a test keeps every ``R1SEARCHER_*`` name the package
#: reads either here or as a field's ``env``.
PROCESS_ENV: dict[str, str] = {
    "R1SEARCHER_CACHE_DIR": "the cache root: converted models, built indexes, web.sqlite, judge.sqlite "
                            "(else $XDG_CACHE_HOME/r1searcher, else ~/.cache/r1searcher; r1searcher.paths)",
    "R1SEARCHER_CACHE": "deprecated name of R1SEARCHER_CACHE_DIR (read with a warning)",
    "R1SEARCHER_DATA": "the data root holding downloaded datasets (else <cache root>/data)",
    "R1SEARCHER_DATA_MIRROR": "a mirror URL prefix that `r1searcher data get` fetches every file through",
    "R1SEARCHER_DEBUG": "1: print the full traceback of an error (the --debug flag)",
}
