"""Fingerprints of a run's inputs, recorded so that a resumed run notices a changed input.

``file_sha256`` is the content hash of a file (a QA file, a corpus JSONL); ``index_fingerprint`` says
which index a retriever path holds: for a saved index folder the fields of its ``manifest.json``
that define its contents (kind, format, corpus sha256, passage count, encoder, scoring params) and
its build time ``created`` (a rebuild at the same path is a new index), for a corpus JSONL the
file's sha256 (BM25 over it is built, and cached, from exactly those bytes).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

#: Manifest fields that identify an index build (``retrieval/manifest.py``).
INDEX_FIELDS = ("kind", "format", "corpus_sha256", "passages", "model", "params", "created")


def file_sha256(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """sha256 (hex) of the bytes of ``path``; OSError names the file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def index_fingerprint(path: str | os.PathLike[str]) -> dict:
    """What the index at ``path`` (a saved index folder, or a corpus JSONL) holds, as a dict."""
    p = Path(path).expanduser()
    if p.is_file():
        return {"corpus_file_sha256": file_sha256(p)}
    from r1searcher.retrieval.manifest import read_manifest

    m = read_manifest(p)
    return {k: m.get(k) for k in INDEX_FIELDS}
