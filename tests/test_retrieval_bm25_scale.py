"""The sharded tantivy BM25 engine: exact scores, shards = one index, kills, corruption, memory.

Every test uses real tantivy indexes on disk over the synthetic world's passages (English prose,
ASCII), real processes for the kill and memory checks, and the real CLI.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from r1searcher.data.synthetic import generate_world
from r1searcher.retrieval.base import Passage
from r1searcher.retrieval.bm25 import BM25Index
from r1searcher.retrieval.tantivy.reader import MIN_DEPTH, TantivyBM25
from r1searcher.retrieval.tantivy.build import build_tantivy, default_shard_size, parse_size, stream_corpus
from r1searcher.retrieval.corpus import passage_line
from r1searcher.retrieval.index import build_index, load_index

pytest.importorskip("tantivy")
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def world_passages() -> list[Passage]:
    return [Passage(id=d["id"], title=d["title"], text=d["text"])
            for d in generate_world(entities=60, seed=3, prose="varied").passages]


@pytest.fixture(scope="module")
def queries(world_passages) -> list[str]:
    qs = [" ".join(p.text.split()[2:8]) for p in world_passages[::7]]
    return qs + [p.title for p in world_passages[::11]] + ["who founded the company", "river city born"]


@pytest.fixture(scope="module")
def one(world_passages, tmp_path_factory) -> TantivyBM25:
    d = tmp_path_factory.mktemp("one") / "idx"
    build_tantivy(world_passages, d)
    return TantivyBM25(d)


@pytest.fixture(scope="module")
def sharded(world_passages, tmp_path_factory) -> TantivyBM25:
    d = tmp_path_factory.mktemp("sharded") / "idx"
    build_tantivy(world_passages, d, shard_size=17)
    return TantivyBM25(d)


def write_jsonl(passages, path: Path) -> Path:
    path.write_text("".join(passage_line(p) for p in passages), encoding="utf-8")
    return path


def test_exact_bm25_scores_match_bm25s(world_passages, one, queries):
    """The re-scored top-k is bm25s's top-k (k1 0.9, b 0.4), scores equal to float32 precision."""
    ref = BM25Index.build(world_passages)
    assert one.manifest["passages"] == len(world_passages)
    assert one.corpus_sha256 == ref.corpus_sha256 or not ref.corpus_sha256
    for q, got, want in zip(queries, one.search_rows(queries, 5), ref.search_rows(queries, 5)):
        assert len(got) == len(want), q
        for (gr, gs), (wr, ws) in zip(got, want):
            assert gs == pytest.approx(ws, rel=1e-4), q
        # same rows up to ties in score
        assert sorted(round(s, 3) for _, s in got) == sorted(round(s, 3) for _, s in want)
        assert {r for r, s in got if s > got[-1][1] + 1e-3} <= {r for r, _ in want}


def test_shards_equal_one_index(world_passages, one, sharded, queries):
    assert len(sharded.manifest["shards"]) == -(-len(world_passages) // 17) > 3
    assert sharded.manifest["avgdl"] == pytest.approx(one.manifest["avgdl"], rel=1e-6)
    for k in (1, 5, MIN_DEPTH + 5):
        a, b = one.search_rows(queries, k), sharded.search_rows(queries, k)
        assert [[(r, round(s, 5)) for r, s in x] for x in a] == [[(r, round(s, 5)) for r, s in x] for x in b]
    # batch of one (shards searched in parallel) = the batched path
    assert sharded.search_rows(queries[:1], 5) == sharded.search_rows(queries, 5)[:1]


def test_retriever_protocol_and_edges(one, world_passages):
    hits = one.search([world_passages[5].title + " " + world_passages[5].text], 3)
    assert hits[0][0].id == world_passages[5].id and hits[0][0].score > 0
    assert one.search(["", "the of and", "zzqxv"], 3) == [[], [], []]
    assert len(one.search(["city"], 10_000)[0]) <= len(world_passages)
    with pytest.raises(TypeError):
        one.search("a string", 3)
    with pytest.raises(ValueError):
        one.search(["x"], 0)


def test_index_api_dispatches_on_the_engine(world_passages, tmp_path, queries):
    ix = build_index(world_passages, "bm25", engine="tantivy")
    ix.save(tmp_path / "saved")
    loaded = load_index(tmp_path / "saved")
    assert isinstance(loaded, TantivyBM25)
    assert loaded.search_rows(queries, 3) == ix.search_rows(queries, 3)
    with pytest.raises(ValueError, match="load_index"):
        BM25Index.load(tmp_path / "saved")
    assert loaded.health()["shards"] == 1 and loaded.health()["bytes_per_passage"] > 0


def test_killed_build_leaves_nothing_that_loads_and_resumes(world_passages, tmp_path, queries):
    corpus = write_jsonl(world_passages, tmp_path / "c.jsonl")
    out = tmp_path / "idx"
    with pytest.raises(KeyboardInterrupt):
        build_tantivy(stream_corpus(corpus), out, shard_size=20, source=corpus, _stop_after=50)
    assert not out.exists()
    with pytest.raises(FileNotFoundError, match="not an index directory"):
        load_index(out.with_name("idx.tmp"))
    state = json.loads((out.with_name("idx.tmp") / "build.json").read_text())
    assert [s["passages"] for s in state["shards"]] == [20, 20]  # the third shard was cut off
    m = build_tantivy(stream_corpus(corpus), out, shard_size=20, source=corpus)
    assert not out.with_name("idx.tmp").exists()
    fresh = tmp_path / "fresh"
    m2 = build_tantivy(stream_corpus(corpus), fresh, shard_size=20)
    assert m["corpus_sha256"] == m2["corpus_sha256"] and m["passages"] == len(world_passages)
    assert TantivyBM25(out).search_rows(queries, 5) == TantivyBM25(fresh).search_rows(queries, 5)
    assert (out / "offsets.npy").read_bytes() == (fresh / "offsets.npy").read_bytes()


def test_sigkilled_cli_build_reruns_to_the_same_index(tmp_path):
    from r1searcher.benchmarks._wiki_like import write_corpus

    corpus = tmp_path / "c.jsonl"
    write_corpus(corpus, 30_000, source=None, show_progress=False)
    out = tmp_path / "idx"
    cmd = [sys.executable, "-m", "r1searcher.cli", "index", "build", "--corpus", str(corpus), "--out", str(out),
           "--engine", "tantivy", "--shard-size", "4000", "--max-memory", "256M"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = out.with_name("idx.tmp") / "build.json"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        try:
            if len(json.loads(state.read_text())["shards"]) >= 2:
                break
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.05)
    assert proc.poll() is None, "the build finished before it could be killed: grow the corpus"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists()
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "resuming the build" in r.stderr
    ix = load_index(out)
    assert len(ix) == 30_000 and len(ix.manifest["shards"]) == 8
    line = corpus.read_text().splitlines()[12_345]
    want = json.loads(line)
    assert ix.search([want["text"]], 1)[0][0].id == want["id"]


@pytest.mark.parametrize("damage", ["truncate", "delete", "meta"])
def test_corrupt_shard_is_one_clear_line(world_passages, tmp_path, damage):
    d = tmp_path / "idx"
    build_tantivy(world_passages, d, shard_size=30)
    shard = d / "shard-001"
    victim = max((f for f in shard.iterdir() if f.suffix != ".json" and f.is_file()), key=lambda f: f.stat().st_size)
    if damage == "truncate":
        victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    elif damage == "delete":
        victim.unlink()
    else:  # same size, garbage: the size check passes, tantivy's own open fails
        meta = shard / "meta.json"
        meta.write_bytes(b"x" * meta.stat().st_size)
    with pytest.raises(ValueError) as e:
        load_index(d)
    msg = str(e.value)
    assert "shard-001" in msg and "damaged shard" in msg and "\n" not in msg
    r = subprocess.run([sys.executable, "-m", "r1searcher.cli", "search", "--index", str(d), "city"],
                       cwd=REPO, capture_output=True, text=True)
    assert r.returncode != 0
    err = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(err) == 1 and "damaged shard" in err[0], r.stderr


def test_malformed_lines_are_skipped_and_named(world_passages, tmp_path, capsys):
    corpus = tmp_path / "c.jsonl"
    lines = [passage_line(p) for p in world_passages[:10]]
    lines.insert(3, "{not json\n")
    corpus.write_text("".join(lines))
    build_tantivy(stream_corpus(corpus), tmp_path / "idx", source=corpus)
    assert len(TantivyBM25(tmp_path / "idx")) == 10
    assert f"{corpus}:4:" in capsys.readouterr().err


def test_sizes_and_engine_choice(tmp_path):
    from r1searcher.commands.index import pick_engine

    assert parse_size("4G") == 4 * 2**30 and parse_size("512M") == 512 * 2**20 and parse_size("1000") == 1000
    with pytest.raises(ValueError):
        parse_size("lots")
    assert default_shard_size(4 * 2**30) > 5_000_000
    small = tmp_path / "s.jsonl"
    small.write_text('{"id": "a", "title": "t", "text": "words here"}\n' * 1000)
    assert pick_engine("auto", str(small), 4 * 2**30) == "bm25s"
    assert pick_engine("auto", str(small), 100_000) == "tantivy"
    assert pick_engine("bm25s", str(small), 1) == "bm25s"
    with pytest.raises(ValueError, match="below what a build needs"):
        build_tantivy([], tmp_path / "x", max_memory="10M")


@pytest.mark.slow
def test_memory_flag_is_honoured_on_a_corpus_larger_than_it(tmp_path):
    """A 245 MB corpus built with --max-memory 160M: the build process's peak RSS (VmHWM, which
    starts afresh at exec, unlike ru_maxrss that inherits the forking parent's) stays under it."""
    from r1searcher.benchmarks._wiki_like import write_corpus

    corpus = tmp_path / "big.jsonl"
    write_corpus(corpus, 200_000, source=None, show_progress=False)
    limit = 160 * 2**20
    assert corpus.stat().st_size > limit
    out = tmp_path / "idx"
    code = (
        "import sys\n"
        "from r1searcher.cli import main\n"
        "from r1searcher.retrieval.tantivy.build import peak_rss\n"
        f"rc = main(['index', 'build', '--corpus', {str(corpus)!r}, '--out', {str(out)!r}, '--engine', 'tantivy', "
        f"'--max-memory', '160M'])\n"
        "print('PEAK', peak_rss())\n"
        "sys.exit(rc)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    peak = int(r.stdout.split("PEAK")[1].split()[0])
    assert 0 < peak <= limit, f"peak RSS {peak / 2**20:.0f} MiB > 160 MiB"
    ix = load_index(out)
    assert len(ix) == 200_000
    assert os.path.getsize(out / "passages.jsonl") > 0


def test_serve_loads_a_sharded_index_and_reports_it(world_passages, tmp_path):
    """``r1searcher serve`` on a sharded tantivy index: answers over HTTP like in-process, /health
    names the shards, the bytes on disk and the server's resident memory."""
    import httpx

    from r1searcher.retrieval.client import HttpRetriever
    from tests.test_retrieval_server import _spawn, free_port

    d = tmp_path / "idx"
    build_tantivy(world_passages, d, shard_size=25)
    port = free_port()
    proc = _spawn(d, port)
    try:
        h = httpx.get(f"http://127.0.0.1:{port}/health").json()
        q = [world_passages[7].text, world_passages[40].title]
        with HttpRetriever(f"http://127.0.0.1:{port}", retries=0, cache_size=0) as c:
            served = c.search(q, 3)
    finally:
        proc.kill()
        proc.wait(10)
    assert h["index"]["shards"] == -(-len(world_passages) // 25) and h["index"]["passages"] == len(world_passages)
    assert h["memory"]["rss_bytes"] > 20 * 2**20
    local = TantivyBM25(d).search(q, 3)
    assert [[p.id for p in r] for r in served] == [[p.id for p in r] for r in local]
