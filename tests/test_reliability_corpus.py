"""Issue #16: ``corpus build`` on a truncated .gz (file and line named, no OUT.tmp left, partial
output only with --keep-partial); ``search`` and ``serve`` take a corpus JSONL as ask/eval do."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from r1searcher.cli import main
from tests.test_retrieval_server import free_port

REPO = Path(__file__).resolve().parents[1]


def _half_downloaded_gz(path: Path, n: int = 3000) -> None:
    lines = "".join(json.dumps({"title": f"Doc {i}", "text": f"passage number {i} " * 8}) + "\n" for i in range(n))
    data = gzip.compress(lines.encode())
    path.write_bytes(data[: len(data) // 2])


def test_truncated_gz_is_named_cleaned_up_and_kept_only_on_request(tmp_path, capsys):
    src = tmp_path / "dump.jsonl.gz"
    _half_downloaded_gz(src)
    out = tmp_path / "corpus.jsonl"
    assert main(["corpus", "build", str(src), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert f"{src}: ends early (truncated .gz?) after line " in err
    line = int(err.rsplit("after line ", 1)[1].split()[0])
    assert 0 < line < 3000
    assert not out.exists() and not out.with_name("corpus.jsonl.tmp").exists()
    assert main(["corpus", "build", str(src), "--out", str(out), "--keep-partial"]) == 2
    assert "kept the" in capsys.readouterr().err
    kept = out.read_text().splitlines()
    assert len(kept) == line and json.loads(kept[-1])["title"] == f"Doc {line - 1}"
    assert not out.with_name("corpus.jsonl.tmp").exists()


def test_corrupt_gzip_stream_is_named(tmp_path, capsys):
    src = tmp_path / "bad.jsonl.gz"
    src.write_bytes(b"\x1f\x8b\x08\x00garbage" * 20)
    assert main(["corpus", "build", str(src), "--out", str(tmp_path / "c.jsonl")]) == 2
    err = capsys.readouterr().err
    assert str(src) in err and "after line 0" in err and not (tmp_path / "c.jsonl.tmp").exists()


@pytest.fixture
def corpus(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("R1SEARCHER_CACHE_DIR", str(tmp_path / "cache"))
    p = tmp_path / "corpus.jsonl"
    docs = [("Paris", "Paris is the capital of France."), ("Berlin", "Berlin is the capital of Germany."),
            ("1984 Summer Olympics", "The 1984 Summer Olympics were held in Los Angeles.")]
    p.write_text("".join(json.dumps({"id": f"p{i:07d}", "title": t, "text": x}) + "\n" for i, (t, x) in enumerate(docs)))
    return p


def test_search_takes_a_corpus_jsonl(corpus, capsys):
    assert main(["search", "--index", str(corpus), "capital of Germany", "-k", "1", "--json"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["passages"][0]["id"] == "p0000001" and rec["passages"][0]["title"] == "Berlin"


@pytest.mark.slow  # a serve subprocess (~20 s on one core)
def test_serve_takes_a_corpus_jsonl(corpus, tmp_path):
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "R1SEARCHER_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.Popen([sys.executable, "-m", "r1searcher.cli", "serve", "--index", str(corpus), "--port", str(port)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 90
        while True:
            try:
                h = httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).json()
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.communicate()[1][-2000:]
                assert time.time() < deadline, "serve did not start"
                time.sleep(0.2)
        assert h["kind"] == "bm25" and h["passages"] == 3 and h["corpus"] == str(corpus.resolve())
        r = httpx.post(f"http://127.0.0.1:{port}/queries", json={"queries": ["1984 Olympics"], "k": 1}).json()
        assert r["answers"][0][0] == "2\t1984 Summer Olympics   The 1984 Summer Olympics were held in Los Angeles."
    finally:
        proc.terminate()
        proc.wait(10)
