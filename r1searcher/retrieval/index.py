"""One entry point for every index kind: build by name, load by the manifest's ``kind``.

``build_index(passages, "bm25" | "dense" | "hybrid", **opts)`` forwards ``opts`` to the kind's
``build``; ``load_index(dir)`` reads ``manifest.json`` and returns the right class, so callers
(CLI, server, rollout) never branch on the kind. ``cached_index`` builds once per (corpus
sha256, kind, options) under a cache folder and reuses it afterwards: the dense build of the
shared corpus costs tens of minutes on 2 cores and must not be repeated per benchmark run.

``save_index`` is how a built index reaches its folder: saved beside it (``DIR.tmp``) and renamed
over ``DIR`` only when ``DIR`` is absent, empty or an index of ours (:mod:`r1searcher.util.outdir`).
``verify_index`` re-reads an index's files against the checksums its manifest records.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path

from r1searcher.util.outdir import fresh_tmp, remove_ours, replace_dir
from r1searcher.retrieval.base import Passage, Retriever
from r1searcher.retrieval.corpus import corpus_sha256
from r1searcher.retrieval.manifest import KINDS, MANIFEST, is_index_dir, read_manifest

_WHAT = "an r1searcher index"
_CHUNK = re.compile(r"emb_\d{10}_\d+(\.tmp)?\.npy")


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
    (:mod:`r1searcher.retrieval.tantivy.reader`); its other options are ``build_tantivy``'s
    (:mod:`r1searcher.retrieval.tantivy.build`).
    """
    engine = opts.pop("engine", "bm25s")
    if kind == "bm25" and engine == "tantivy":
        from r1searcher.retrieval.tantivy.reader import TantivyBM25

        return TantivyBM25.build(passages, **opts)
    if engine != "bm25s":
        raise ValueError(f"unknown BM25 engine {engine!r} (expected bm25s or tantivy)")
    return _cls(kind).build(list(passages), **opts)


def load_index(directory: str | Path, **opts) -> Retriever:
    """Load whatever index ``directory`` holds (dispatch on ``manifest.json``'s ``kind``/engine)."""
    m = read_manifest(directory)
    if m["kind"] == "bm25" and (m.get("params") or {}).get("engine") == "tantivy":
        from r1searcher.retrieval.tantivy.reader import TantivyBM25

        opts.pop("mmap", None)
        return TantivyBM25.load(directory, **opts)
    return _cls(m["kind"]).load(directory, **opts)


def save_index(index, directory: str | Path, label: str = "") -> dict:
    """Save ``index`` into ``directory`` through ``DIR.tmp``; return its manifest.

    ``directory`` must be absent, empty or an index of ours (else
    :class:`~r1searcher.util.outdir.NotOursError`, nothing touched); ``label`` names the flag it came from.
    """
    d = Path(directory)
    tmp = fresh_tmp(d, is_index_dir, _WHAT)
    m = index.save(tmp)
    replace_dir(tmp, d, is_index_dir, _WHAT, label)
    return m


def _is_chunk_cache(d: Path) -> bool:
    """A dense build's embedding chunks (``emb_<start>_<rows>.npy``) and nothing else."""
    return all(_CHUNK.fullmatch(e.name) for e in d.iterdir())


def verify_index(directory: str | Path) -> dict:
    """Check an index's files against its manifest's checksums, reading all of them; return the manifest.

    A tantivy index checks every shard file and its store (:class:`TantivyBM25` ``verify="full"``);
    every kind checks that its ``passages.jsonl`` hashes to the manifest's ``corpus_sha256``, and
    then loads. Raises ``ValueError`` naming the first damaged file.
    """
    from r1searcher.retrieval.store import PASSAGES_FILE

    d = Path(directory)
    m = read_manifest(d)
    if m["kind"] == "bm25" and (m.get("params") or {}).get("engine") == "tantivy":
        from r1searcher.retrieval.tantivy.reader import TantivyBM25

        TantivyBM25(d, verify="full")
        return m
    parts = [d / "bm25", d / "dense"] if m["kind"] == "hybrid" else [d]
    for part in parts:
        sha = read_manifest(part)["corpus_sha256"]
        h = hashlib.sha256()
        with open(part / PASSAGES_FILE, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
        if h.hexdigest() != sha:
            raise ValueError(f"{part / PASSAGES_FILE}: damaged index store (sha256 is not the manifest's "
                             f"corpus_sha256); rebuild the index")
    load_index(d)
    return m


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
    # Several processes (the ranks of one run, two runs) may build the same cached index at once:
    # each saves into a folder of its own and the first to finish wins; the others use its index.
    tmp = fresh_tmp(folder, is_index_dir, _WHAT, suffix=f".tmp-{os.getpid()}")
    index.save(tmp)
    try:
        if not _cached_ok(folder, kind, sha):
            replace_dir(tmp, folder, is_index_dir, _WHAT)
    except OSError:
        if not _cached_ok(folder, kind, sha):  # not a lost race: a real error
            raise
    remove_ours(tmp, is_index_dir, _WHAT)
    remove_ours(emb, _is_chunk_cache, "a dense build's embedding chunks")
    return load_index(folder), folder, False


def _cached_ok(folder: Path, kind: str, sha: str) -> bool:
    """Whether ``folder`` holds a finished index of these passages (another process's, maybe)."""
    try:
        return (folder / MANIFEST).is_file() and read_manifest(folder, kind)["corpus_sha256"] == sha
    except (OSError, ValueError, KeyError):
        return False


def open_retriever(cfg):
    """The retriever a config names: ``retrieval.server`` (HTTP), or ``retrieval.index``: an index
    folder, or a corpus file/name (BM25, built once and cached under ``<cache root>/indexes``).

    ``cfg`` is an :class:`r1searcher.config.Config`; training, evaluation and the CLI open their
    retriever here, so a corpus named the same way gives the same cached index everywhere.
    """
    r = cfg.retrieval
    if r.server:
        from r1searcher.retrieval.client import HttpRetriever

        return HttpRetriever(r.server, timeout=r.timeout_s, retries=r.retries)
    if not r.index:
        raise ValueError("no retriever: set retrieval.index (an index folder or a corpus .jsonl) or retrieval.server")
    p = Path(r.index).expanduser()
    if p.is_dir():
        return load_index(p)
    from r1searcher.data.qa import resolve_dataset
    from r1searcher.paths import cache_root
    from r1searcher.retrieval.corpus import read_passages

    passages = list(read_passages(resolve_dataset(r.index)))
    index, _, _ = cached_index(passages, "bm25", cache_root(cfg.model.cache_dir or None) / "indexes")
    return index
