"""Builds never delete what the user owns, and build input that used to break them.

Real CLI (``r1searcher.cli.main`` in-process, or a subprocess where memory is measured), real
tantivy and bm25s indexes on disk, the synthetic world's passages. Each test names the defect it
guards: a folder that is not an index is refused with one line and left byte-for-byte as it was;
a lone surrogate is a skipped line named ``FILE:LINE``; a same-size corrupted shard file is
caught by its sha256; one huge passage cannot take a build past ``--max-memory``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from r1searcher.cli import main
from r1searcher.data.synthetic import generate_world
from r1searcher.retrieval.base import Passage
from r1searcher.retrieval.corpus import passage_line
from r1searcher.retrieval.index import load_index

pytest.importorskip("tantivy")
REPO = Path(__file__).resolve().parents[1]
ENGINES = ["tantivy", "bm25s"]


@pytest.fixture(scope="module")
def passages() -> list[Passage]:
    return [Passage(id=d["id"], title=d["title"], text=d["text"])
            for d in generate_world(entities=40, seed=5, prose="varied").passages]


@pytest.fixture()
def corpus(passages, tmp_path) -> Path:
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(passage_line(p) for p in passages), encoding="utf-8")
    return path


def snapshot(d: Path) -> dict[str, bytes]:
    """Every file under ``d`` with its bytes (what "left untouched" means)."""
    return {str(f.relative_to(d)): f.read_bytes() for f in sorted(d.rglob("*")) if f.is_file()}


def user_folder(root: Path) -> Path:
    """A data folder like the one ``--out ../data`` deleted: a corpus, an eval set, a note."""
    d = root / "data"
    (d / "eval").mkdir(parents=True)
    (d / "eval" / "hotpotqa.jsonl").write_text('{"question": "q", "answer": "a"}\n')
    (d / "corpus.jsonl").write_text('{"id": "1", "title": "t", "text": "my own words"}\n')
    (d / "notes.txt").write_text("do not lose me\n")
    return d


def build(corpus: Path, out: Path, engine: str, *extra: str) -> int:
    return main(["index", "build", "--corpus", str(corpus), "--out", str(out), "--engine", engine, *extra])


def one_error_line(err: str) -> str:
    lines = [x for x in err.splitlines() if x.strip() and not x.startswith("bm25 build")]
    assert len(lines) == 1, err
    return lines[0]


# ------------------------------------------------------------------ 1. nothing a user owns is deleted
@pytest.mark.parametrize("engine", ENGINES)
def test_index_build_refuses_a_folder_that_is_not_an_index(corpus, tmp_path, capsys, engine):
    data = user_folder(tmp_path)
    before = snapshot(data)
    assert build(corpus, data, engine) == 2
    line = one_error_line(capsys.readouterr().err)
    assert str(data) in line and "not an r1searcher index" in line and "corpus.jsonl" in line
    assert snapshot(data) == before
    assert not data.with_name("data.tmp").exists() and not data.with_name("data.old").exists()


@pytest.mark.parametrize("engine", ENGINES)
def test_an_index_folder_holding_a_user_file_is_refused(corpus, tmp_path, capsys, engine):
    out = tmp_path / "idx"
    assert build(corpus, out, "tantivy") == 0
    (out / "notes.txt").write_text("mine\n")
    before = snapshot(out)
    capsys.readouterr()
    assert build(corpus, out, engine) == 2
    assert "notes.txt" in one_error_line(capsys.readouterr().err)
    assert snapshot(out) == before


def test_a_user_folder_where_the_build_writes_beside_is_not_removed(corpus, tmp_path, capsys):
    out = tmp_path / "idx"
    mine = user_folder(tmp_path).rename(tmp_path / "idx.tmp")
    before = snapshot(mine)
    assert build(corpus, out, "tantivy") == 2
    assert "idx.tmp" in one_error_line(capsys.readouterr().err)
    assert snapshot(mine) == before and not out.exists()


@pytest.mark.parametrize("engine", ENGINES)
def test_rebuilds_replace_an_index_of_ours_and_an_empty_folder_is_filled(corpus, passages, tmp_path, engine):
    out = tmp_path / "idx"
    out.mkdir()
    assert build(corpus, out, engine) == 0
    for other in ENGINES:  # over an index of either engine
        assert build(corpus, out, other) == 0
        assert build(corpus, out, engine) == 0
    assert len(load_index(out)) == len(passages)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus.jsonl", "idx"]
    assert main(["index", "verify", str(out)]) == 0


def test_a_folder_that_gains_user_files_during_the_build_is_not_replaced(passages, tmp_path):
    from r1searcher.retrieval.tantivy.build import build_tantivy

    out = tmp_path / "idx"
    out.mkdir()

    def stream():
        for i, p in enumerate(passages):
            if i == 10:
                (out / "arrived.txt").write_text("written while the build ran\n")
            yield p

    with pytest.raises(FileExistsError, match="arrived.txt"):  # outdir.NotOursError
        build_tantivy(stream(), out)
    assert [f.name for f in out.iterdir()] == ["arrived.txt"]


def test_save_and_bench_folders_follow_the_rule(passages, tmp_path):
    from r1searcher.retrieval.tantivy.build import build_tantivy
    from r1searcher.retrieval.index import build_index

    ix = build_index(passages, "bm25", engine="tantivy")
    data = user_folder(tmp_path)
    (data / "manifest.json").write_text(json.dumps({"kind": "bm25", "r1searcher": "0"}))
    before = snapshot(data)
    with pytest.raises(FileExistsError, match="not an r1searcher index"):
        ix.save(data)  # a manifest alone does not make someone's folder an index
    from r1searcher.benchmarks.bm25_scale import _remove_index
    from r1searcher.retrieval.index import save_index

    with pytest.raises(FileExistsError):
        save_index(build_index(passages, "bm25"), data)
    with pytest.raises(FileExistsError):
        _remove_index(data)
    assert snapshot(data) == before
    good = tmp_path / "good"
    build_tantivy(passages, good)
    ix.save(good)
    _remove_index(good)
    assert not good.exists()


def test_synth_refuses_a_folder_that_is_not_a_world(tmp_path, capsys):
    data = user_folder(tmp_path)
    before = snapshot(data)
    assert main(["synth", "--out", str(data), "--entities", "12"]) == 2
    assert "not a world written by 'r1searcher synth'" in one_error_line(capsys.readouterr().err)
    assert snapshot(data) == before
    world = tmp_path / "world"
    assert main(["synth", "--out", str(world), "--entities", "12"]) == 0
    assert main(["synth", "--out", str(world), "--entities", "12", "--seed", "1"]) == 0  # a world of ours: replaced
    assert sorted(p.name for p in world.iterdir()) == ["corpus.jsonl", "heldout.jsonl", "train.jsonl", "world.json"]


def test_corpus_build_refuses_to_replace_an_input_or_a_file_it_did_not_write(tmp_path, capsys):
    raw = tmp_path / "raw.jsonl"
    raw.write_text("".join(json.dumps({"title": f"T{i}", "text": f"words about thing {i}"}) + "\n" for i in range(5)))
    raw_bytes = raw.read_bytes()
    assert main(["corpus", "build", str(raw), "--out", str(raw)]) == 2
    assert "also an input" in one_error_line(capsys.readouterr().err)
    other = tmp_path / "train.jsonl"
    other.write_text('{"question": "q"}\n')
    assert main(["corpus", "build", str(raw), "--out", str(other)]) == 2
    assert "not a corpus built by" in one_error_line(capsys.readouterr().err)
    assert main(["corpus", "build", str(raw), "--out", str(tmp_path)]) == 2
    assert raw.read_bytes() == raw_bytes and other.read_text() == '{"question": "q"}\n'
    out = tmp_path / "passages.jsonl"
    assert main(["corpus", "build", str(raw), "--out", str(out)]) == 0
    assert main(["corpus", "build", str(raw), "--out", str(out)]) == 0  # its own output: replaced


def test_check_replaceable_edges(tmp_path):
    from r1searcher.util.outdir import NotOursError, check_replaceable, replace_dir
    from r1searcher.retrieval.manifest import is_index_dir

    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(NotOursError, match="symbolic link"):
        check_replaceable(tmp_path / "link", is_index_dir, "an r1searcher index")
    (tmp_path / "f").write_text("x")
    with pytest.raises(NotOursError, match="is a file"):
        check_replaceable(tmp_path / "f", is_index_dir, "an r1searcher index", label="--out")
    check_replaceable(tmp_path / "real", is_index_dir, "x")  # empty: fine
    check_replaceable(tmp_path / "absent", is_index_dir, "x")
    src = tmp_path / "new"
    src.mkdir()
    (src / "a").write_text("1")
    replace_dir(src, tmp_path / "real", is_index_dir, "x")
    assert (tmp_path / "real" / "a").read_text() == "1" and not src.exists()


# ------------------------------------------------------------------ 2. a lone surrogate is a named bad line
@pytest.mark.parametrize("engine", ENGINES)
def test_a_lone_surrogate_is_a_skipped_line_named_by_file_and_line(passages, tmp_path, capsys, engine):
    corpus = tmp_path / "c.jsonl"
    lines = [passage_line(p) for p in passages[:20]]
    lines.insert(6, '{"id": "bad", "title": "T", "text": "a lone \\ud800 surrogate"}\n')
    corpus.write_text("".join(lines), encoding="utf-8")
    assert build(corpus, tmp_path / "idx", engine) == 0
    err = capsys.readouterr().err
    assert f"{corpus}:7:" in err and "surrogate" in err
    assert len(load_index(tmp_path / "idx")) == 20
    assert main(["corpus", "build", str(corpus), "--out", str(tmp_path / "p.jsonl")]) == 0
    out, err = capsys.readouterr()
    assert f"{corpus}:7:" in err and "malformed lines skipped: 1" in out


# ------------------------------------------------------------------ 3. content checksums
def _flip_same_size(f: Path) -> None:
    """Flip 8 bytes mid-file in place (no truncation: a loaded index may still map the file)."""
    with open(f, "r+b") as fh:
        fh.seek(f.stat().st_size // 2)
        chunk = fh.read(8)
        fh.seek(-len(chunk), 1)
        fh.write(bytes(x ^ 0x5A for x in chunk))


def test_same_size_corruption_is_caught_by_the_checksum(passages, tmp_path, capsys):
    from r1searcher.retrieval.tantivy.build import build_tantivy

    d = tmp_path / "idx"
    build_tantivy(passages, d, shard_size=30)
    shard = d / "shard-001"
    victim = max((f for f in shard.iterdir() if f.is_file() and f.suffix != ".json"), key=lambda f: f.stat().st_size)
    size = victim.stat().st_size
    _flip_same_size(victim)
    assert victim.stat().st_size == size
    with pytest.raises(ValueError) as e:
        load_index(d)
    assert "shard-001" in str(e.value) and "sha256" in str(e.value) and "\n" not in str(e.value)
    assert main(["index", "verify", str(d)]) == 2
    assert "damaged shard" in one_error_line(capsys.readouterr().err)
    build_tantivy(passages, tmp_path / "good", shard_size=30)
    assert main(["index", "verify", str(tmp_path / "good")]) == 0
    assert "intact" in capsys.readouterr().out


def test_same_size_corruption_of_the_passage_store_is_caught(passages, tmp_path):
    from r1searcher.retrieval.tantivy.build import build_tantivy

    d = tmp_path / "idx"
    build_tantivy(passages, d)
    store = d / "passages.jsonl"
    _flip_same_size(store)
    with pytest.raises(ValueError, match="damaged index store"):
        load_index(d)


def test_a_resumed_build_drops_a_kept_shard_whose_contents_changed(passages, tmp_path, capsys):
    from r1searcher.retrieval.tantivy.build import build_tantivy, stream_corpus

    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(passage_line(p) for p in passages), encoding="utf-8")
    out = tmp_path / "idx"
    with pytest.raises(KeyboardInterrupt):
        build_tantivy(stream_corpus(corpus), out, shard_size=10, source=corpus, _stop_after=25)
    shard = out.with_name("idx.tmp") / "shard-000"
    _flip_same_size(max((f for f in shard.iterdir() if f.is_file() and f.suffix != ".json"), key=lambda f: f.stat().st_size))
    capsys.readouterr()
    build_tantivy(stream_corpus(corpus), out, shard_size=10, source=corpus)
    assert "resuming" not in capsys.readouterr().err
    assert len(load_index(out)) == len(passages)


# ------------------------------------------------------------------ 4. one huge passage within the budget
def _random_words(nbytes: int, seed: int = 0) -> str:
    """Six-letter random words: as many distinct terms as tantivy will ever see in one passage."""
    a = np.random.default_rng(seed).integers(97, 123, size=nbytes, dtype=np.uint8)
    a[6::7] = 32
    return a.tobytes().decode()


def test_a_huge_passage_keeps_the_build_within_its_memory_budget(passages, tmp_path):
    """A 21 MB passage first (so it is also the avgdl probe's) under --max-memory 256M took
    the build to 0.68 GiB; it is now skipped and named, and the build's VmHWM stays under 256 MiB."""
    corpus = tmp_path / "c.jsonl"
    with open(corpus, "w", encoding="utf-8") as f:
        f.write(json.dumps({"id": "huge", "title": "Huge", "text": _random_words(21_000_000)}) + "\n")
        f.writelines(passage_line(p) for p in passages)
    out = tmp_path / "idx"
    code = (
        "import sys\n"
        "from r1searcher.cli import main\n"
        "from r1searcher.retrieval.tantivy.build import peak_rss\n"
        f"rc = main(['index', 'build', '--corpus', {str(corpus)!r}, '--out', {str(out)!r}, '--engine', 'tantivy', "
        "'--max-memory', '256M'])\n"
        "print('PEAK', peak_rss())\n"
        "sys.exit(rc)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    peak = int(r.stdout.split("PEAK")[1].split()[0])
    print(f"peak RSS of the build with a 21 MB passage at --max-memory 256M: {peak / 2**20:.0f} MiB")
    assert 0 < peak <= 256 * 2**20
    assert f"{corpus}:1:" in r.stderr and "skipped" in r.stderr
    assert len(load_index(out)) == len(passages)


def test_a_long_passage_given_directly_is_indexed_by_its_start_and_stored_whole(passages, tmp_path, capsys):
    from r1searcher.retrieval.tantivy.reader import TantivyBM25
    from r1searcher.retrieval.tantivy.build import build_tantivy, max_passage_bytes, parse_size

    limit = max_passage_bytes(parse_size("256M"))
    long = Passage(id="long", title="Long", text="zebra " + "lorem " * (limit // 6 + 1000) + "quokka")
    build_tantivy([*passages[:10], long], tmp_path / "idx", max_memory="256M")
    assert "'long'" in capsys.readouterr().err
    ix = TantivyBM25(tmp_path / "idx")
    assert ix.search(["zebra"], 1)[0][0].id == "long"
    assert ix.search(["quokka"], 1) == [[]]  # past the indexed start
    assert ix._table.get(10).text == long.text
