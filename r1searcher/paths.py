"""Where r1searcher keeps things: one cache root and the data folders, resolved in one place.

- **Cache root**: ``$R1SEARCHER_CACHE_DIR``, else the deprecated ``$R1SEARCHER_CACHE`` (a warning
  once), else ``$XDG_CACHE_HOME/r1searcher``, else ``~/.cache/r1searcher``. Every cache lives under
  it: converted models (``models/``… as ``models.py`` lays them out), the web cache
  (``web.sqlite``), the judge cache (``judge.sqlite``).
- **Data root**: ``$R1SEARCHER_DATA``, else ``<cache root>/data`` (where ``r1searcher data get``
  writes). Dataset names are looked up there and in ``../shared/data`` beside the current folder.
- **Judge cache**: ``$R1SEARCHER_JUDGE_CACHE`` (a file), else ``<cache root>/judge.sqlite``.

Every other setting is a field of the config tree (``r1searcher config``); the environment variables
it falls back to are named in each field's help and read in :mod:`r1searcher.settings.env`.

No module finds files relative to the source tree: an installed wheel has no ``configs/`` or
``../shared`` beside it.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

CACHE_ENV = "R1SEARCHER_CACHE_DIR"
CACHE_ENV_DEPRECATED = "R1SEARCHER_CACHE"
DATA_ENV = "R1SEARCHER_DATA"
JUDGE_CACHE_ENV = "R1SEARCHER_JUDGE_CACHE"

_warned = False


def cache_root(override: str | os.PathLike[str] | None = None) -> Path:
    """The one cache root (see the module docstring); ``override`` (a CLI flag) wins when set."""
    global _warned
    if override:
        return Path(override).expanduser()
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    old = os.environ.get(CACHE_ENV_DEPRECATED)
    if old:
        if not _warned:
            warnings.warn(f"${CACHE_ENV_DEPRECATED} is deprecated; set ${CACHE_ENV}", FutureWarning, stacklevel=2)
            _warned = True
        return Path(old).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "r1searcher"


def cache_path(*parts: str) -> Path:
    """A path under the cache root (not created)."""
    return cache_root().joinpath(*parts)


def data_env_root() -> Path | None:
    """``$R1SEARCHER_DATA`` when it is set (data set lookup searches it first), else None."""
    env = os.environ.get(DATA_ENV)
    return Path(env).expanduser() if env else None


def data_root() -> Path:
    """Where downloaded data sets live: ``$R1SEARCHER_DATA`` or ``<cache root>/data``."""
    return data_env_root() or cache_root() / "data"


def judge_cache_file() -> Path:
    """The judge's reply cache: ``$R1SEARCHER_JUDGE_CACHE`` (a file), else ``<cache root>/judge.sqlite``."""
    env = os.environ.get(JUDGE_CACHE_ENV)
    return Path(env).expanduser() if env else cache_path("judge.sqlite")
