"""One entry point for every index kind: build by name, load by the manifest's ``kind``.

``build_index(passages, "bm25" | "dense" | "hybrid", **opts)`` forwards ``opts`` to the kind's
``build``; ``load_index(dir)`` reads ``manifest.json`` and returns the right class, so callers
(CLI, server, rollout) never branch on the kind. ``cached_index`` builds once per (corpus
sha256, kind, options) under a cache folder and reuses it afterwards: the dense build of the
shared corpus costs tens of minutes on 2 cores and must not be repeated per benchmark run.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Sequence
from pathlib import Path

from r1searcher.retrieval.base import Passage, Retriever
from r1searcher.retrieval.corpus import corpus_sha256
from r1searcher.retrieval.manifest import MANIFEST, read_manifest

KINDS = ("bm25", "dense", "hybrid")


def _cls(kind: str):
    if kind == "bm25":
        from r1searcher.retrieval.bm25 import BM25Index

        return BM25Index
    if kind == "dense":
        from r1searcher.retrieval.dense import DenseIndex

        return DenseIndex
    if kind == "hybrid":
        from r1searcher.retrieval.hybrid import HybridIndex

        return HybridIndex
    raise ValueError(f"unknown index kind {kind!r} (expected one of {', '.join(KINDS)})")


def build_index(passages: Sequence[Passage], kind: str, **opts):
    """Build an index of ``kind`` over ``passages``; ``opts`` go to that kind's ``build``.

    ``kind="bm25", engine="tantivy"`` builds the sharded, bounded-memory engine
    (:mod:`r1searcher.retrieval.bm25_tantivy`); its other options are ``build_tantivy``'s
    (:mod:`r1searcher.retrieval.bm25_tantivy_build`).
    """
    engine = opts.pop("engine", "bm25s")
    if kind == "bm25" and engine == "tantivy":
        from r1searcher.retrieval.bm25_tantivy import TantivyBM25

        return TantivyBM25.build(passages, **opts)
    if engine != "bm25s":
        raise ValueError(f"unknown BM25 engine {engine!r} (expected bm25s or tantivy)")
    return _cls(kind).build(list(passages), **opts)


def load_index(directory: str | Path, **opts) -> Retriever:
    """Load whatever index ``directory`` holds (dispatch on ``manifest.json``'s ``kind``/engine)."""
    m = read_manifest(directory)
    if m["kind"] == "bm25" and (m.get("params") or {}).get("engine") == "tantivy":
        from r1searcher.retrieval.bm25_tantivy import TantivyBM25

        opts.pop("mmap", None)
        return TantivyBM25.load(directory, **opts)
    return _cls(m["kind"]).load(directory, **opts)


def cache_key(sha: str, kind: str, opts: dict) -> str:
    """Folder name for a cached index: kind, corpus hash prefix, hash of the build options."""
    o = hashlib.sha256(json.dumps(opts, sort_keys=True, default=str).encode()).hexdigest()[:8]
    return f"{kind}-{sha[:16]}-{o}"


def cached_index(
    passages: Sequence[Passage],
    kind: str,
    cache_root: str | Path,
    *,
    show_progress: bool = False,
    **opts,
) -> tuple[Retriever, Path, bool]:
    """Load the index of (these passages, kind, opts) from ``cache_root``, building it if absent.

    Returns (index, its folder, whether it came from the cache). Dense builds keep per-chunk
    embeddings in ``<folder>.emb/`` while running, so an interrupted build resumes.
    """
    sha, _ = corpus_sha256(passages)
    folder = Path(cache_root) / cache_key(sha, kind, opts)
    if (folder / MANIFEST).is_file():
        m = read_manifest(folder, kind)
        if m["corpus_sha256"] == sha:
            return load_index(folder), folder, True
    build_opts = dict(opts)
    emb = folder.with_name(folder.name + ".emb")
    if kind in ("dense", "hybrid"):
        build_opts["cache_dir"] = emb
    index = _cls(kind).build(list(passages), show_progress=show_progress, **build_opts)
    tmp = folder.with_name(folder.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    index.save(tmp)
    if folder.exists():
        shutil.rmtree(folder)
    tmp.rename(folder)
    if emb.exists():
        shutil.rmtree(emb)
    return load_index(folder), folder, False
