"""Lexical retrieval: BM25 on bm25s (sparse pre-computed scores), English stop words + Snowball stems.

Why bm25s: it scores a query by summing a few pre-computed sparse columns, so it answers far
more queries per second than ``rank_bm25`` (which loops over documents in Python), and it
saves/loads as plain numpy arrays. We tokenise ourselves (the same analyser for passages and
queries: bm25s's regex, lower-case, its English stop-word list, PyStemmer) so the query path
never re-creates bm25s's per-call state and queries can be truncated before any work is done.

Behaviour at the edges: ``k`` larger than the corpus is clamped; a query with no indexable term
(empty, only stop words, or only words never seen in the corpus) returns ``[]`` for that query;
passages with a score of 0 (no query term at all) are never returned; queries longer than
``MAX_QUERY_CHARS`` characters / ``MAX_QUERY_TERMS`` terms are truncated.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from r1searcher.retrieval.base import Passage, check_batch
from r1searcher.retrieval.manifest import read_manifest, write_manifest
from r1searcher.retrieval.store import DiskTable, MemoryTable, PassageTable, same_store, scored_passages, write_table

KIND = "bm25"
MAX_QUERY_CHARS = 4096
MAX_QUERY_TERMS = 256
_TOKEN = re.compile(r"(?u)\b\w\w+\b")
_BM25S_DIR = "bm25s"


class Analyzer:
    """Text → term strings: lower-case, ``\\w\\w+`` words, English stop words out, optional stemming.

    Stems are memoised per surface word (Wikipedia has far fewer distinct words than tokens).
    """

    def __init__(self, stemmer: str | None = "english", stopwords: str | None = "en"):
        from bm25s.stopwords import STOPWORDS_EN

        self.stemmer_name = stemmer
        self.stopwords_name = stopwords
        self._stop = frozenset(STOPWORDS_EN) if stopwords == "en" else frozenset()
        if stopwords not in ("en", None):
            raise ValueError(f"stopwords must be 'en' or None, got {stopwords!r}")
        self._stem = None
        if stemmer is not None:
            import Stemmer  # PyStemmer

            try:
                self._stem = Stemmer.Stemmer(stemmer).stemWord
            except KeyError:
                raise ValueError(f"unknown stemmer language {stemmer!r}") from None
        self._cache: dict[str, str | None] = {}

    def term(self, word: str) -> str | None:
        """The index term of one lower-cased word, or None for a stop word."""
        t = self._cache.get(word, "")
        if t == "":
            t = None if word in self._stop else (self._stem(word) if self._stem else word)
            if len(self._cache) < 2_000_000:
                self._cache[word] = t
        return t

    def terms(self, text: str, max_terms: int | None = None) -> list[str]:
        out = []
        for w in _TOKEN.findall(text.lower()):
            t = self.term(w)
            if t is not None:
                out.append(t)
                if max_terms is not None and len(out) >= max_terms:
                    break
        return out


def _passage_text(p: Passage, index_title: bool) -> str:
    return f"{p.title} {p.text}" if index_title and p.title else p.text


class BM25Index:
    """A BM25 index over passages. Build with :meth:`build`, persist with :meth:`save`/:meth:`load`."""

    kind = KIND

    def __init__(self, bm25, table: PassageTable, analyzer: Analyzer, params: dict, corpus_sha256: str = ""):
        self._bm25 = bm25
        self._table = table
        self._analyzer = analyzer
        self.params = params
        self.corpus_sha256 = corpus_sha256
        self._vocab: dict[str, int] = bm25.vocab_dict

    def __len__(self) -> int:
        return len(self._table)

    # ------------------------------------------------------------------ build
    @classmethod
    def build(
        cls,
        passages: Iterable[Passage],
        stemmer: str | None = "english",
        *,
        stopwords: str | None = "en",
        k1: float = 0.9,
        b: float = 0.4,
        method: str = "lucene",
        index_title: bool = True,
        show_progress: bool = False,
    ) -> BM25Index:
        """Index ``passages`` (title + text by default). ``stemmer=None`` indexes surface words.

        ``k1=0.9, b=0.4`` are Anserini/Pyserini's BM25 defaults; on this project's ``dev_extra``
        questions they beat bm25s's own 1.5/0.75 once stemming is on (see BENCHMARKS.md, Retrieval).
        """
        import bm25s
        from bm25s.tokenization import Tokenized

        rows = passages if isinstance(passages, list) else list(passages)
        if not rows:
            raise ValueError("cannot build a BM25 index over an empty corpus")
        analyzer = Analyzer(stemmer, stopwords)
        vocab: dict[str, int] = {}
        ids: list[list[int]] = []
        it: Iterable[Passage] = rows
        if show_progress:
            from tqdm.auto import tqdm

            it = tqdm(rows, desc="bm25 tokenise", unit="psg", mininterval=1.0)
        for p in it:
            ids.append([vocab.setdefault(t, len(vocab)) for t in analyzer.terms(_passage_text(p, index_title))])
        if not vocab:
            raise ValueError("no indexable word in the whole corpus (all empty or stop words)")
        bm = bm25s.BM25(k1=k1, b=b, method=method)
        bm.index(Tokenized(ids=ids, vocab=vocab), show_progress=show_progress)
        params = {"stemmer": stemmer, "stopwords": stopwords, "k1": k1, "b": b, "method": method, "index_title": index_title}
        return cls(bm, MemoryTable(rows), analyzer, params)

    # ------------------------------------------------------------------ search
    def _query_ids(self, query: str) -> list[int]:
        if not isinstance(query, str):
            raise TypeError(f"queries must be strings, got {type(query).__name__}")
        terms = self._analyzer.terms(query[:MAX_QUERY_CHARS], MAX_QUERY_TERMS)
        return [self._vocab[t] for t in terms if t in self._vocab]

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every passage for one query (zeros when no term matches)."""
        ids = self._query_ids(query)
        if not ids:
            return np.zeros(len(self), dtype=np.float32)
        return self._bm25.get_scores_from_ids(ids)

    def search_rows(self, queries: list[str], k: int, threads: int | None = None) -> list[list[tuple[int, float]]]:
        """(row, BM25 score) per query, best first; what :meth:`search` and hybrid fusion use."""
        check_batch(queries, k)
        k = min(k, len(self))
        out: list[list[tuple[int, float]]] = [[] for _ in queries]
        qids = [self._query_ids(q) for q in queries]
        live = [i for i, q in enumerate(qids) if q]
        if not live:
            return out
        if threads is None:  # a thread pool pays off only on large batches
            threads = min(2, os.cpu_count() or 1) if len(live) >= 64 else 0
        docs, scores = self._bm25.retrieve(
            [qids[i] for i in live], k=k, show_progress=False, n_threads=threads, return_as="tuple"
        )
        for row, i in enumerate(live):
            out[i] = [(int(d), float(s)) for d, s in zip(docs[row], scores[row]) if s > 0]
        return out

    def search(self, queries: list[str], k: int, threads: int | None = None) -> list[list[Passage]]:
        """Top-``k`` passages per query, best first, each with its BM25 ``score``."""
        return scored_passages(self._table, self.search_rows(queries, k, threads))

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | Path) -> dict:
        """Write the index, its passages and ``manifest.json`` into ``directory``; return the manifest."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        self._bm25.save(str(d / _BM25S_DIR), show_progress=False)
        if not same_store(self._table, d):
            self.corpus_sha256, _ = write_table(_iter_table(self._table), d)
        return write_manifest(
            d, KIND, self.corpus_sha256, len(self), self.params, save_seconds=round(time.perf_counter() - t0, 3)
        )

    @classmethod
    def load(cls, directory: str | Path, mmap: bool = False) -> BM25Index:
        """Load a saved index; ``mmap=True`` keeps the score arrays on disk (less RAM, slower first queries)."""
        import bm25s

        d = Path(directory)
        m = read_manifest(d, KIND)
        p = m["params"]
        if p.get("engine", "bm25s") != "bm25s":
            raise ValueError(f"{d} is a {p['engine']} BM25 index: open it with r1searcher.retrieval.index.load_index")
        bm = bm25s.BM25.load(str(d / _BM25S_DIR), mmap=mmap, show_progress=False)
        table = DiskTable(d)
        if len(table) != m["passages"]:
            raise ValueError(f"{d}: manifest says {m['passages']} passages, store holds {len(table)}")
        return cls(bm, table, Analyzer(p["stemmer"], p["stopwords"]), p, m["corpus_sha256"])


def _iter_table(table: PassageTable) -> Iterable[Passage]:
    for i in range(len(table)):
        yield table.get(i)
