"""BM25Index on real bm25s: ranking parity with rank_bm25, edge cases, save/load round trip."""

from __future__ import annotations

import numpy as np
import pytest

from r1searcher.retrieval.base import Passage, Retriever
from r1searcher.retrieval.bm25 import MAX_QUERY_TERMS, Analyzer, BM25Index

DOCS = [
    ("Paris", "Paris is the capital and most populous city of France."),
    ("Berlin", "Berlin is the capital and largest city of Germany by both area and population."),
    ("Tokyo", "Tokyo is the capital of Japan and one of the most populous metropolitan areas."),
    ("Eiffel Tower", "The Eiffel Tower is a wrought-iron lattice tower in Paris, named after Gustave Eiffel."),
    ("Brandenburg Gate", "The Brandenburg Gate is an 18th-century monument in Berlin built on orders of Frederick William II."),
    ("Mount Fuji", "Mount Fuji is the highest mountain in Japan, an active stratovolcano near Tokyo."),
    ("Seine", "The Seine is a river in northern France that flows through Paris into the English Channel."),
    ("Café Müller", "Café Müller is a dance piece by Pina Bausch first performed in Wuppertal; Ünïcödé 東京 text."),
]


@pytest.fixture(scope="module")
def passages() -> list[Passage]:
    return [Passage(id=f"d{i}", title=t, text=x) for i, (t, x) in enumerate(DOCS)]


@pytest.fixture(scope="module")
def index(passages) -> BM25Index:
    return BM25Index.build(passages)


def test_is_a_retriever_and_finds_the_obvious_passage(index):
    assert isinstance(index, Retriever)
    res = index.search(["capital of Germany", "highest mountain Japan", "river through Paris"], k=2)
    assert [r[0].title for r in res] == ["Berlin", "Mount Fuji", "Seine"]
    assert all(r[0].score is not None and r[0].score > 0 for r in res)
    assert all(len(r) <= 2 for r in res)
    scores = [p.score for p in res[2]]
    assert scores == sorted(scores, reverse=True)


def test_stemming_matches_inflections(passages):
    stemmed = BM25Index.build(passages, stemmer="english")
    plain = BM25Index.build(passages, stemmer=None)
    # "performing" only matches "performed" through the stemmer
    assert stemmed.search(["performing"], k=1)[0][0].title == "Café Müller"
    assert plain.search(["performing"], k=1) == [[]]


def test_scores_agree_with_rank_bm25(passages):
    """Robertson BM25 in bm25s is BM25Okapi of rank_bm25 where every idf is positive (small df).

    bm25s leaves out the constant (k1 + 1) factor of the tf term, which cannot change a ranking.
    """
    from rank_bm25 import BM25Okapi

    idx = BM25Index.build(passages, stemmer=None, method="robertson", index_title=False, k1=1.5, b=0.75)
    an = Analyzer(stemmer=None)
    ref = BM25Okapi([an.terms(p.text) for p in passages], k1=1.5, b=0.75)
    for q in ["Eiffel tower Paris", "Japan mountain volcano", "Berlin monument Frederick", "dance Wuppertal"]:
        ours = idx.scores(q) * (1.5 + 1)
        theirs = ref.get_scores(an.terms(q))
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)
        assert list(np.argsort(-ours, kind="stable")[:3]) == list(np.argsort(-theirs, kind="stable")[:3])


def test_lucene_default_ranks_like_rank_bm25(index, passages):
    from rank_bm25 import BM25Okapi

    an = Analyzer()
    ref = BM25Okapi([an.terms(f"{p.title} {p.text}") for p in passages], k1=index.params["k1"], b=index.params["b"])
    for q in ["Eiffel tower Paris", "capital of Japan", "Brandenburg Gate Berlin"]:
        top_ref = int(np.argmax(ref.get_scores(an.terms(q))))
        assert index.search([q], k=1)[0][0].id == passages[top_ref].id


def test_edge_queries(index, passages):
    huge = "Tokyo " + "lorem ipsum dolor " * 50_000
    res = index.search(["", "   ", "the of and", "zzzyqx", "东京 Ünïcödé", huge, "Tokyo"], k=1000)
    assert res[0] == [] and res[1] == [] and res[2] == [] and res[3] == []
    assert res[4] and res[4][0].title == "Café Müller"
    assert res[5] and res[5][0].title in {"Tokyo", "Mount Fuji"}
    # k > corpus size is clamped; zero-score passages are not returned
    assert 0 < len(res[6]) <= len(passages)
    assert all(p.score > 0 for p in res[6])
    assert index.search([], k=3) == []
    with pytest.raises(ValueError):
        index.search(["x"], k=0)
    with pytest.raises(TypeError):
        index.search("a string, not a list", k=1)


def test_query_terms_are_capped():
    an = Analyzer()
    assert len(an.terms("word " * 10_000, MAX_QUERY_TERMS)) == MAX_QUERY_TERMS


def test_save_load_round_trip(index, passages, tmp_path):
    m = index.save(tmp_path / "idx")
    assert m["kind"] == "bm25" and m["passages"] == len(passages) and len(m["corpus_sha256"]) == 64
    loaded = BM25Index.load(tmp_path / "idx")
    qs = ["capital city", "tower Paris", "東京", ""]
    assert loaded.search(qs, k=3) == index.search(qs, k=3)
    assert loaded.params == index.params
    # a second save of a loaded index is byte-identical (deterministic manifest sha)
    assert loaded.save(tmp_path / "idx2")["corpus_sha256"] == m["corpus_sha256"]


def test_load_rejects_wrong_kind_and_missing_dir(index, tmp_path):
    with pytest.raises(FileNotFoundError):
        BM25Index.load(tmp_path / "nope")
    index.save(tmp_path / "i")
    mf = tmp_path / "i" / "manifest.json"
    mf.write_text(mf.read_text().replace('"bm25"', '"dense"'))
    with pytest.raises(ValueError, match="dense"):
        BM25Index.load(tmp_path / "i")


def test_empty_corpus_is_an_error():
    with pytest.raises(ValueError, match="empty"):
        BM25Index.build([])
