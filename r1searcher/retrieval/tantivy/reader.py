"""BM25 at Wikipedia scale: tantivy shards built in bounded memory, exact BM25 re-scoring on top.

Why tantivy (BENCHMARKS.md "BM25 at scale" has the measurements): bm25s builds its sparse score
matrix from Python lists (its build RAM grows per passage, past one machine at KILT's 29M) and
scores a query by touching every posting of its terms (slower as the corpus grows). tantivy (Rust, a
Lucene-like engine, ``pip install tantivy``) indexes into a fixed memory arena and flushes
segments to disk, and answers top-k with block-max WAND, skipping most postings.

Exactness: tantivy's BM25 has fixed k1=1.2, b=0.75; our BM25 uses k1=0.9, b=0.4 (Anserini's, the
better setting on this project's questions, and the recall floor the benchmarks hold us to). So
tantivy only *proposes*: each shard returns its top ``depth`` passages (``max(MIN_DEPTH, 4k)``),
and those are re-scored with the exact BM25 of the whole corpus (global document frequencies,
global average length, the same analyzer), which decides the final top-k. A passage outside every
shard's proposals can be missed; on the shared corpus the re-scored top-5 gives exactly bm25s's
answer recall (MIN_DEPTH chosen by that measurement), and shards give the same top-k as one index
because every number in the final score is global.

Analyzer (``simple``): split on non-alphanumeric characters, lower-case, drop English stop words
(bm25s's list) and single ASCII letters/digits, Snowball-stem. On ordinary text this yields the
same terms as :class:`~r1searcher.retrieval.bm25.Analyzer` (``\\w\\w+`` words), without the cost
of a regex tokenizer (much slower in tantivy); it differs on ``_`` (a separator here) and on
single non-ASCII letters (kept here).

Layout of an index folder::

    manifest.json            kind "bm25", params.engine "tantivy", shards, avgdl, file sizes and sha256s
    passages.jsonl, offsets.npy   the passage store (:class:`~r1searcher.retrieval.store.DiskTable`)
    shard-000/ … shard-NNN/  one tantivy index per ``shard_size`` passages (rows in order)

Integrity: the manifest records every shard file's size and sha256 (and the offset table's;
``passages.jsonl``'s is the corpus sha256). Loading checks the sizes always and the contents
(``verify="auto"``) when the index's files total at most :data:`AUTO_VERIFY_BYTES`, where reading
them all costs well under a second; a bigger index is checked by content with ``verify="full"``,
which ``r1searcher index verify DIR`` runs. Tantivy does not check its own files' contents on
open, so a flipped byte of equal size would otherwise change answers silently.

Building (streamed, bounded memory, resumable) is :mod:`r1searcher.retrieval.tantivy.build`; the
schema, analyzer and file listing both sides share are :mod:`r1searcher.retrieval.tantivy.schema`.
"""

from __future__ import annotations

import math
import os
import shutil
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from r1searcher.util.fingerprint import file_sha256 as _sha256
from r1searcher.util.outdir import fresh_tmp, replace_dir
from r1searcher.retrieval.base import Passage, RetrieverError, check_batch
from r1searcher.retrieval.manifest import is_index_dir, read_manifest
from r1searcher.retrieval.store import OFFSETS_FILE, PASSAGES_FILE, DiskTable, scored_passages
from r1searcher.retrieval.tantivy.schema import ENGINE, KIND, TOKENIZER, file_sha256s, make_analyzer, passage_body

__all__ = ["AUTO_VERIFY_BYTES", "ENGINE", "KIND", "MIN_DEPTH", "TantivyBM25", "VERIFY_MODES", "file_sha256s",
           "make_analyzer"]

MIN_DEPTH = 30
MAX_QUERY_CHARS = 4096
MAX_QUERY_TERMS = 256
#: ``verify="auto"`` reads every file of an index up to this size (shards + passage store) to check
#: its sha256 at load: ~0.4-0.8 s (a 26 MiB index took 75 ms on 2 busy cores). Bigger indexes are
#: checked by size at load, by content on request (``verify="full"``, ``r1searcher index verify``).
AUTO_VERIFY_BYTES = 256 * 1024**2
VERIFY_MODES = ("auto", "full", "size", "none")


# --------------------------------------------------------------------------------------- search
class TantivyBM25:
    """A sharded tantivy BM25 index with exact re-scoring; the :class:`Retriever` protocol."""

    kind = KIND

    def __init__(self, directory: str | Path, threads: int | None = None, verify: bool | str = "auto"):
        """Open the index in ``directory``. ``verify``: ``"auto"`` (sizes; contents too when the index
        is at most :data:`AUTO_VERIFY_BYTES`), ``"full"`` (sizes and every file's sha256),
        ``"size"``, or ``"none"``; ``True``/``False`` mean ``"auto"``/``"none"``."""
        import tantivy

        d = Path(directory)
        m = read_manifest(d, KIND)
        p = m["params"]
        if p.get("engine") != ENGINE:
            raise ValueError(f"{d} is a {p.get('engine', 'bm25s')} BM25 index, not a tantivy one")
        mode = ("auto" if verify else "none") if isinstance(verify, bool) else verify
        if mode not in VERIFY_MODES:
            raise ValueError(f"verify must be one of {', '.join(VERIFY_MODES)}, got {verify!r}")
        if mode == "auto":
            total = sum(sum(s["files"].values()) for s in m["shards"]) + sum((m.get("store_files") or {}).values())
            mode = "full" if total <= AUTO_VERIFY_BYTES else "size"
        self.directory, self.manifest, self.params = d, m, p
        self.corpus_sha256 = m["corpus_sha256"]
        self._analyzer = make_analyzer(p["stemmer"], p["stopwords"])
        self._k1, self._b = float(p["k1"]), float(p["b"])
        self._avgdl = float(m["avgdl"])
        self._index_title = bool(p["index_title"])
        for name, size in (m.get("store_files") or {}).items():
            f = d / name
            if not f.is_file() or f.stat().st_size != size:
                raise ValueError(f"{f}: damaged index store ({'missing' if not f.is_file() else f'{f.stat().st_size} bytes, manifest says {size}'}); rebuild the index")
        if mode == "full":
            _check_store(d, m)
        self._table = DiskTable(d)
        if len(self._table) != m["passages"]:
            raise ValueError(f"{d}: manifest says {m['passages']} passages, store holds {len(self._table)}")
        self._shards, self._bases = [], []
        base = 0
        for s in m["shards"]:
            sd = d / s["name"]
            if mode != "none":
                _check_shard(sd, s["files"], s.get("sha256") if mode == "full" else None)
            try:
                idx = tantivy.Index.open(str(sd))
                idx.register_tokenizer(TOKENIZER, make_analyzer(p["stemmer"], p["stopwords"]))
                searcher = idx.searcher()
            except BaseException as e:  # noqa: BLE001  (a Rust panic surfaces as a BaseException)
                if isinstance(e, (KeyboardInterrupt, SystemExit)):
                    raise
                raise ValueError(f"{sd}: damaged shard ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); rebuild the index") from None
            if searcher.num_docs != s["passages"]:
                raise ValueError(f"{sd}: damaged shard (holds {searcher.num_docs} passages, manifest says {s['passages']}); rebuild the index")
            self._shards.append((idx, searcher))
            self._bases.append(base)
            base += s["passages"]
        self._n = base
        self._schema = self._shards[0][0].schema
        self._df: dict[str, int] = {}
        self.threads = threads or min(max(len(self._shards), 2), os.cpu_count() or 1)
        self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="bm25")

    def __len__(self) -> int:
        return self._n

    @classmethod
    def load(cls, directory: str | Path, mmap: bool = True, threads: int | None = None,
             verify: bool | str = "auto") -> TantivyBM25:
        """Open a saved index; shards are always memory-mapped (``mmap`` is accepted for symmetry)."""
        return cls(directory, threads=threads, verify=verify)

    @classmethod
    def build(cls, passages: Iterable[Passage], directory: str | Path | None = None, **opts) -> TantivyBM25:
        """Build over ``passages`` into ``directory`` (a temporary folder when None: :meth:`save` moves it)."""
        import tempfile

        from r1searcher.retrieval.tantivy.build import build_tantivy

        opts.pop("show_progress", None)
        d = Path(directory) if directory is not None else Path(tempfile.mkdtemp(prefix="r1-tantivy-")) / "index"
        build_tantivy(passages, d, **opts)
        return cls(d)

    def save(self, directory: str | Path) -> dict:
        """Copy the index into ``directory`` (nothing to do when it is already there).

        Copied beside it first; ``directory`` is replaced only when it is empty or an index of
        ours (:mod:`r1searcher.util.outdir`), anything else raises :class:`~r1searcher.util.outdir.NotOursError`."""
        d = Path(directory)
        if d.resolve() == self.directory.resolve():
            return self.manifest
        what = "an r1searcher index"
        tmp = fresh_tmp(d, is_index_dir, what)
        shutil.copytree(self.directory, tmp, dirs_exist_ok=True)
        replace_dir(tmp, d, is_index_dir, what)
        return read_manifest(d)

    # ------------------------------------------------------------------ scoring
    def _doc_freq(self, term: str) -> int:
        v = self._df.get(term)
        if v is None:
            v = sum(s.doc_freq("body", term) for _, s in self._shards)
            if len(self._df) < 1_000_000:
                self._df[term] = v
        return v

    def _idf(self, term: str) -> float:
        df = self._doc_freq(term)
        return math.log(1 + (self._n - df + 0.5) / (df + 0.5))

    def _propose(self, shard: int, query, depth: int) -> list[int]:
        idx, searcher = self._shards[shard]
        try:
            hits = searcher.search(query, depth, count=False).hits
            if not hits:
                return []
            rows = searcher.fast_field_values("row", [a for _, a in hits])
        except BaseException as e:  # noqa: BLE001
            if isinstance(e, (KeyboardInterrupt, SystemExit)):
                raise
            raise RetrieverError(f"{self.directory}/{self.manifest['shards'][shard]['name']}: search failed "
                                 f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
        base = self._bases[shard]
        return [base + int(r) for r in rows]

    def _query(self, terms: list[str]):
        import tantivy

        return tantivy.Query.boolean_query(
            [(tantivy.Occur.Should, tantivy.Query.term_query(self._schema, "body", t)) for t in terms])

    def exact_scores(self, terms: list[str], rows: Iterable[int]) -> list[tuple[int, float]]:
        """BM25 (k1, b of the manifest; global df and avgdl) of ``rows`` for analysed query ``terms``."""
        qt = Counter(terms)
        w = {t: n * self._idf(t) for t, n in qt.items()}
        k1, b, avgdl = self._k1, self._b, self._avgdl
        out = []
        for r in rows:
            toks = self._analyzer.analyze(passage_body(self._table.get(r), self._index_title))
            c = Counter(toks)
            norm = k1 * (1 - b + b * len(toks) / avgdl)
            s = 0.0
            for t, wt in w.items():
                tf = c.get(t)
                if tf:
                    s += wt * tf / (tf + norm)
            if s > 0:
                out.append((r, s))
        return out

    def _one(self, terms: list[str], k: int, parallel_shards: bool) -> list[tuple[int, float]]:
        depth = max(MIN_DEPTH, 4 * k)
        q = self._query(terms)
        if parallel_shards and len(self._shards) > 1:
            parts = list(self._pool.map(lambda s: self._propose(s, q, depth), range(len(self._shards))))
        else:
            parts = [self._propose(s, q, depth) for s in range(len(self._shards))]
        rows = {r for part in parts for r in part}
        scored = self.exact_scores(terms, rows)
        scored.sort(key=lambda rs: (-rs[1], rs[0]))
        return scored[:k]

    def query_terms(self, query: str) -> list[str]:
        if not isinstance(query, str):
            raise TypeError(f"queries must be strings, got {type(query).__name__}")
        return self._analyzer.analyze(query[:MAX_QUERY_CHARS])[:MAX_QUERY_TERMS]

    def search_rows(self, queries: list[str], k: int, threads: int | None = None) -> list[list[tuple[int, float]]]:
        """(row, exact BM25 score) per query, best first (ties: lower row first)."""
        check_batch(queries, k)
        k = min(k, len(self))
        terms = [self.query_terms(q) for q in queries]
        out: list[list[tuple[int, float]]] = [[] for _ in queries]
        live = [i for i, t in enumerate(terms) if t]
        if len(live) == 1:
            out[live[0]] = self._one(terms[live[0]], k, parallel_shards=True)
        elif live:
            for i, res in zip(live, self._pool.map(lambda i: self._one(terms[i], k, False), live)):
                out[i] = res
        return out

    def search(self, queries: list[str], k: int, threads: int | None = None) -> list[list[Passage]]:
        """Top-``k`` passages per query, best first, each with its BM25 ``score``."""
        return scored_passages(self._table, self.search_rows(queries, k))

    def health(self) -> dict:
        """What the server's ``/health`` shows about this index."""
        disk = sum(sum(s["files"].values()) for s in self.manifest["shards"])
        return {"engine": ENGINE, "shards": len(self._shards), "index_bytes": disk,
                "bytes_per_passage": round(disk / max(self._n, 1), 1)}


def _check_shard(d: Path, files: dict[str, int], sha256: dict[str, str] | None = None) -> None:
    """Integrity check at load: every file the build wrote is there with its size, and with its
    sha256 when ``sha256`` (the manifest's, absent in indexes built before it was recorded) is given."""
    if not d.is_dir():
        raise ValueError(f"{d}: shard missing; rebuild the index")
    for name, size in files.items():
        f = d / name
        if not f.is_file():
            raise ValueError(f"{d}: damaged shard ({name} missing); rebuild the index")
        if f.stat().st_size != size:
            raise ValueError(f"{d}: damaged shard ({name} is {f.stat().st_size} bytes, manifest says {size}); rebuild the index")
    for name, want in (sha256 or {}).items():
        if _sha256(d / name) != want:
            raise ValueError(f"{d}: damaged shard ({name}: contents differ from the build's, sha256 mismatch); "
                             f"rebuild the index")


def _check_store(d: Path, m: dict) -> None:
    """The passage store's contents: ``passages.jsonl`` hashes to the corpus sha256, the offset
    table to its recorded sha256 (when recorded)."""
    if _sha256(d / PASSAGES_FILE) != m["corpus_sha256"]:
        raise ValueError(f"{d / PASSAGES_FILE}: damaged index store (sha256 is not the manifest's corpus_sha256); "
                         f"rebuild the index")
    want = (m.get("store_sha256") or {}).get(OFFSETS_FILE)
    if want is not None and _sha256(d / OFFSETS_FILE) != want:
        raise ValueError(f"{d / OFFSETS_FILE}: damaged index store (sha256 mismatch); rebuild the index")
