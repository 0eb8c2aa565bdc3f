"""The retrieval sub-commands end to end through ``r1searcher.cli.main`` (real files, BM25)."""

from __future__ import annotations

import json

from r1searcher.cli import main


def test_corpus_index_search_pipeline(tmp_path, capsys):
    raw = tmp_path / "raw.jsonl"
    raw.write_text(
        "\n".join(
            [
                json.dumps({"title": "Ada Lovelace", "text": "Ada Lovelace wrote the first computer program. " * 30}),
                json.dumps({"title": "Alan Turing", "text": "Alan Turing proposed the Turing test in 1950."}),
                "{broken",
                json.dumps({"title": "Alan Turing", "text": "Alan Turing proposed the Turing test in 1950."}),
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    corpus = tmp_path / "corpus.jsonl"
    assert main(["corpus", "build", str(raw), "--out", str(corpus)]) == 0
    out, err = capsys.readouterr()
    assert "malformed lines skipped: 1" in out and "duplicates dropped: 1" in out
    assert f"{raw}:3:" in err
    rows = [json.loads(line) for line in corpus.read_text().splitlines()]
    assert len(rows) == 4 and all(set(r) == {"id", "title", "text"} for r in rows)  # 210 words → 3 + 1

    idx = tmp_path / "idx"
    assert main(["index", "build", "--corpus", str(corpus), "--kind", "bm25", "--out", str(idx)]) == 0
    capsys.readouterr()
    assert main(["search", "--index", str(idx), "Turing test", "-k", "2", "--json"]) == 0
    rec = json.loads(capsys.readouterr().out.strip())
    assert rec["query"] == "Turing test" and rec["passages"][0]["title"] == "Alan Turing"
    assert set(rec["passages"][0]) == {"id", "title", "text", "score"}

    qfile = tmp_path / "q.jsonl"
    qfile.write_text(json.dumps({"question": "first computer program?"}) + "\n" + json.dumps({"query": "Turing"}) + "\n")
    assert main(["search", "--index", str(idx), "--queries", str(qfile), "-k", "1", "--json"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.strip().splitlines()]
    assert [x["passages"][0]["title"] for x in lines] == ["Ada Lovelace", "Alan Turing"]

    assert main(["search", "--index", str(idx), "zzzz"]) == 0
    assert "no passage matches" in capsys.readouterr().out


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["search", "--index", str(tmp_path), "x"]) == 2
    assert "not an index directory" in capsys.readouterr().err
    bad = tmp_path / "q.jsonl"
    bad.write_text('{"nothing": 1}\n')
    assert main(["search", "--index", str(tmp_path), "--queries", str(bad)]) == 2
    assert main(["corpus", "build", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "o.jsonl")]) == 2
    assert "missing.jsonl" in capsys.readouterr().err


def test_open_retriever_takes_a_corpus_jsonl(tmp_path):
    """`eval --index corpus.jsonl` builds (once, cached) the BM25 index the trainer would use."""
    import argparse
    import json

    from r1searcher.commands._common import open_retriever
    from r1searcher.config import load_config

    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"p{i}", "title": t, "text": x}) + "\n" for i, (t, x) in enumerate(
        [("Kelvara", "Kelvara is a town in Norland."), ("Danube", "The Danube is a river in Europe.")])))
    cfg = load_config(None, [f"model.cache_dir={tmp_path / 'cache'}"])
    args = argparse.Namespace(index=str(corpus), server=None, web=False)
    hits = open_retriever(args, cfg).search(["Which country is Kelvara in?"], 1)
    assert hits[0][0].id == "p0"
    assert cfg.retrieval.index == ""  # the caller's config is left alone
