"""``manifest.json``: what every saved index says about itself.

Written by each index's ``save`` and read by ``load_index`` to pick the class. Fields: ``kind``
(bm25 / dense / hybrid), ``format`` (bumped on incompatible layout changes), ``corpus_sha256``
and ``passages`` (which corpus it indexes: caches key on this), ``model`` (encoder, or null),
``params`` (everything that changes the scores) and ``created``.

:func:`is_index_dir` says whether a folder is an index r1searcher wrote (or an unfinished build
of one): the only non-empty folders that ``index build --out`` may replace (:mod:`r1searcher.util.outdir`).
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

from r1searcher.util.fingerprint import file_sha256

MANIFEST = "manifest.json"
FORMAT = 1
#: The resumable tantivy build's state file (in ``OUT.tmp/`` until the build finishes).
BUILD_STATE = "build.json"
KINDS = ("bm25", "dense", "hybrid")
#: Manifest fields that identify an index build (:func:`index_fingerprint`).
INDEX_FIELDS = ("kind", "format", "corpus_sha256", "passages", "model", "params", "created")
#: Every name an index folder (any kind, or a build in progress) holds at its top level.
_INDEX_NAMES = re.compile(
    r"(manifest\.json|passages\.jsonl|offsets\.(npy|bin)|build\.json(\.tmp)?|bm25s|bm25|dense|shard-\d+"
    r"|faiss\.index(\.tmp)?|vectors\.f16\.npy(\.tmp)?)")


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


def is_index_dir(directory: str | Path) -> bool:
    """True when ``directory`` is an index r1searcher wrote, or an unfinished build of one.

    That is: its ``manifest.json`` names an index kind and the r1searcher version that wrote it
    (every manifest has since the first), or it holds a build's ``build.json``; and every entry
    is a name an index holds, so a folder that also holds someone's other files is not one.
    """
    d = Path(directory)
    try:
        names = [e.name for e in d.iterdir()]
    except OSError:
        return False
    if not all(_INDEX_NAMES.fullmatch(n) for n in names):
        return False
    if (d / BUILD_STATE).is_file():
        return True
    try:
        m = json.loads((d / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(m, dict) and m.get("kind") in KINDS and "r1searcher" in m


def index_fingerprint(path: str | os.PathLike[str]) -> dict:
    """What the index at ``path`` holds, as a dict, recorded so that a resumed run notices a changed index.

    For a saved index folder: the fields of its ``manifest.json`` that define its contents (kind,
    format, corpus sha256, passage count, encoder, scoring params) and its build time ``created`` (a
    rebuild at the same path is a new index); for a corpus JSONL: the file's sha256 (BM25 over it is
    built, and cached, from exactly those bytes).
    """
    p = Path(path).expanduser()
    if p.is_file():
        return {"corpus_file_sha256": file_sha256(p)}
    m = read_manifest(p)
    return {k: m.get(k) for k in INDEX_FIELDS}
