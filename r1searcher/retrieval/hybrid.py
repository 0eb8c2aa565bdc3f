"""Hybrid retrieval: reciprocal-rank fusion (RRF) of a BM25 and a dense index over the same passages.

RRF (Cormack et al. 2009) scores a passage ``Σ w_i / (rrf_k + rank_i)`` over the rankings that
contain it (rank 1-based). It needs no score calibration between BM25 (unbounded) and cosine
(−1..1), which is why it is the usual default. Each side is searched to ``depth`` (≥ k) so a
passage ranked moderately by both can overtake one ranked first by only one.

Defaults ``rrf_k=10``, weights BM25 1.0 / dense 0.75, depth 100 were chosen on the shared
``dev_extra`` questions (pooled answer recall@5; ``bench retrieval --quality``). The textbook
``rrf_k=60`` with equal weights lost to BM25 alone there: MiniLM is the weaker retriever on
these entity-heavy multi-hop questions, so it must count for less and only its top ranks matter.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from r1searcher.retrieval.base import Passage, check_batch
from r1searcher.retrieval.bm25 import BM25Index
from r1searcher.retrieval.dense import DenseIndex
from r1searcher.retrieval.manifest import read_manifest, write_manifest
from r1searcher.retrieval.store import scored_passages

KIND = "hybrid"


def rrf_fuse(
    rankings: Sequence[list[tuple[int, float]]], weights: Sequence[float], rrf_k: float, k: int
) -> list[tuple[int, float]]:
    """Fuse ranked (row, score) lists into the top-``k`` (row, RRF score); ties keep first-seen order."""
    fused: dict[int, float] = {}
    for ranking, w in zip(rankings, weights):
        for rank, (row, _) in enumerate(ranking, 1):
            fused[row] = fused.get(row, 0.0) + w / (rrf_k + rank)
    return sorted(fused.items(), key=lambda rs: -rs[1])[:k]


class HybridIndex:
    """BM25 + dense, fused by RRF. Saved as ``bm25/`` and ``dense/`` sub-indexes plus a manifest."""

    kind = KIND

    def __init__(
        self,
        bm25: BM25Index,
        dense: DenseIndex,
        rrf_k: float = 10.0,
        weights: tuple[float, float] = (1.0, 0.75),
        depth: int = 100,
    ):
        if len(bm25) != len(dense):
            raise ValueError(f"BM25 has {len(bm25)} passages but dense has {len(dense)}: not the same corpus")
        if bm25.corpus_sha256 and dense.corpus_sha256 and bm25.corpus_sha256 != dense.corpus_sha256:
            raise ValueError("BM25 and dense indexes were built on different corpora (sha256 differs)")
        if rrf_k < 0 or depth < 1 or len(weights) != 2 or min(weights) < 0:
            raise ValueError(f"bad fusion parameters rrf_k={rrf_k} weights={weights} depth={depth}")
        self.bm25, self.dense = bm25, dense
        self.rrf_k, self.weights, self.depth = float(rrf_k), (float(weights[0]), float(weights[1])), int(depth)
        self.corpus_sha256 = bm25.corpus_sha256 or dense.corpus_sha256

    @property
    def params(self) -> dict:
        return {"rrf_k": self.rrf_k, "weights": list(self.weights), "depth": self.depth}

    def __len__(self) -> int:
        return len(self.bm25)

    @classmethod
    def build(
        cls,
        passages: Sequence[Passage],
        *,
        stemmer: str | None = "english",
        model: str | None = None,
        index_type: str = "flat",
        rrf_k: float = 10.0,
        weights: tuple[float, float] = (1.0, 0.75),
        depth: int = 100,
        cache_dir: str | Path | None = None,
        show_progress: bool = False,
    ) -> HybridIndex:
        """Build both sides over ``passages`` (``cache_dir`` makes the dense encoding resumable)."""
        rows = list(passages)
        bm = BM25Index.build(rows, stemmer, show_progress=show_progress)
        de = DenseIndex.build(rows, model, index_type=index_type, cache_dir=cache_dir, show_progress=show_progress)
        return cls(bm, de, rrf_k, weights, depth)

    def search_rows(self, queries: list[str], k: int) -> list[list[tuple[int, float]]]:
        check_batch(queries, k)
        depth = max(k, self.depth)
        lex = self.bm25.search_rows(queries, depth) if self.weights[0] > 0 else [[] for _ in queries]
        sem = self.dense.search_rows(queries, depth) if self.weights[1] > 0 else [[] for _ in queries]
        return [rrf_fuse((a, b), self.weights, self.rrf_k, k) for a, b in zip(lex, sem)]

    def search(self, queries: list[str], k: int) -> list[list[Passage]]:
        """Top-``k`` fused passages per query, best first; ``score`` is the RRF score."""
        return scored_passages(self.bm25._table, self.search_rows(queries, k))

    def save(self, directory: str | Path) -> dict:
        d = Path(directory)
        mb = self.bm25.save(d / "bm25")
        md = self.dense.save(d / "dense")
        self.corpus_sha256 = mb["corpus_sha256"]
        return write_manifest(
            d, KIND, mb["corpus_sha256"], mb["passages"], self.params, model=md["model"],
            parts={"bm25": mb["params"], "dense": md["params"]},
        )

    @classmethod
    def load(cls, directory: str | Path, mmap: bool = False) -> HybridIndex:
        d = Path(directory)
        m = read_manifest(d, KIND)
        p = m["params"]
        return cls(BM25Index.load(d / "bm25", mmap=mmap), DenseIndex.load(d / "dense", mmap=mmap), p["rrf_k"], tuple(p["weights"]), p["depth"])
