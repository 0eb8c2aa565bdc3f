"""``manifest.json``: what every saved index says about itself.

Written by each index's ``save`` and read by ``load_index`` to pick the class. Fields: ``kind``
(bm25 / dense / hybrid), ``format`` (bumped on incompatible layout changes), ``corpus_sha256``
and ``passages`` (which corpus it indexes: caches key on this), ``model`` (encoder, or null),
``params`` (everything that changes the scores) and ``created``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

MANIFEST = "manifest.json"
FORMAT = 1


def write_manifest(
    directory: str | Path,
    kind: str,
    corpus_sha256: str,
    passages: int,
    params: dict,
    model: str | None = None,
    **extra: object,
) -> dict:
    """Write ``manifest.json`` into ``directory`` and return it."""
    import r1searcher

    m = {
        "kind": kind,
        "format": FORMAT,
        "corpus_sha256": corpus_sha256,
        "passages": passages,
        "model": model,
        "params": params,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "r1searcher": r1searcher.__version__,
        **extra,
    }
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    (d / MANIFEST).write_text(json.dumps(m, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return m


def read_manifest(directory: str | Path, kind: str | None = None) -> dict:
    """Read ``manifest.json``; check ``kind`` when given. Errors name the directory."""
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{directory} is not an index directory (no {MANIFEST})")
    try:
        m = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(m, dict) or "kind" not in m:
        raise ValueError(f"{path}: no 'kind' field")
    if m.get("format", FORMAT) > FORMAT:
        raise ValueError(f"{path}: index format {m['format']} is newer than this r1searcher reads ({FORMAT})")
    if kind is not None and m["kind"] != kind:
        raise ValueError(f"{directory} holds a {m['kind']!r} index, not {kind!r}")
    return m
