"""Fingerprints of a run's inputs, recorded so that a resumed run notices a changed input.

``file_sha256`` is the content hash of a file (a QA file, a corpus JSONL, a weights file). Which
index a retriever path holds is ``retrieval.manifest.index_fingerprint``.
"""

from __future__ import annotations

import hashlib
import os


def file_sha256(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """sha256 (hex) of the bytes of ``path``; OSError names the file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
