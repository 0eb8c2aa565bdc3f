"""Corpus building: formats, 100-word split with titles, dedupe, KILT markers, malformed lines."""

from __future__ import annotations

import gzip
import json

import pytest

from r1searcher.retrieval.corpus import (
    CorpusStats,
    build_corpus,
    build_passages,
    corpus_sha256,
    read_passages,
    split_words,
)


def _jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def _collect(paths, **kw):
    errors: list[tuple[str, int, str]] = []
    stats = CorpusStats()
    out = list(build_passages(paths, on_error=lambda *e: errors.append(e), stats=stats, **kw))
    return out, errors, stats


def test_split_keeps_title_and_caps_words(tmp_path):
    text = " ".join(f"w{i}" for i in range(250))
    out, errors, _ = _collect([_jsonl(tmp_path / "a.jsonl", [{"title": "Long Article", "text": text}])])
    assert not errors
    assert [len(p.text.split()) for p in out] == [100, 100, 50]
    assert all(p.title == "Long Article" for p in out)
    assert out[1].text.split()[0] == "w100"  # consecutive, nothing lost
    assert " ".join(p.text for p in out) == text
    assert [p.id for p in out] == ["p0000000", "p0000001", "p0000002"]


def test_split_words_edges():
    assert split_words("") == []
    assert split_words("  a \n b\t c ", 2) == ["a b", "c"]
    with pytest.raises(ValueError):
        split_words("a", 0)


def test_dedupe_by_title_and_normalised_whitespace_and_drop_empty(tmp_path):
    rows = [
        {"title": "A", "text": "Same words here."},
        {"title": "A", "text": "  Same   words\n here. "},  # duplicate after whitespace normalisation
        {"title": "B", "text": "Same words here."},  # other title: kept
        {"title": "C", "text": "   "},  # empty: dropped
        {"title": "D", "text": ""},
    ]
    out, errors, st = _collect([_jsonl(tmp_path / "a.jsonl", rows)])
    assert [(p.title, p.text) for p in out] == [("A", "Same words here."), ("B", "Same words here.")]
    assert st.duplicates == 1 and st.empty == 2 and st.records == 5 and not errors


def test_dedupe_across_files(tmp_path):
    a = _jsonl(tmp_path / "a.jsonl", [{"title": "T", "text": "x y z"}])
    b = _jsonl(tmp_path / "b.jsonl", [{"title": "T", "text": "x y z"}, {"title": "T", "text": "x y"}])
    out, _, st = _collect([a, b])
    assert [p.text for p in out] == ["x y z", "x y"] and st.duplicates == 1


def test_malformed_lines_are_reported_with_line_numbers_and_skipped(tmp_path):
    lines = [
        {"title": "Good", "text": "first good line"},
        "{not json",
        "[1, 2, 3]",
        {"title": "No text"},
        {"title": 5, "text": "title is a number"},
        "",
        {"title": "Good", "text": "second good line"},
        {"wikipedia_title": "K", "text": "not a list"},
    ]
    path = _jsonl(tmp_path / "bad.jsonl", lines)
    out, errors, st = _collect([path])
    assert [p.text for p in out] == ["first good line", "second good line"]
    assert [(e[0], e[1]) for e in errors] == [(str(path), n) for n in (2, 3, 4, 5, 8)]
    assert "JSON object" in errors[1][2] and "no 'text'" in errors[2][2]
    assert st.malformed == 5


def test_search_r1_contents_format(tmp_path):
    rows = [{"id": "0", "contents": '"Aaron"\nAaron is a prophet.'}, {"id": "1", "contents": "Plain Title\nSome text."}]
    out, errors, _ = _collect([_jsonl(tmp_path / "wiki18.jsonl", rows)])
    assert [(p.title, p.text) for p in out] == [("Aaron", "Aaron is a prophet."), ("Plain Title", "Some text.")]
    assert not errors


def test_kilt_markers_dropped_and_article_split(tmp_path):
    body = " ".join(f"b{i}" for i in range(120))
    rec = {
        "wikipedia_id": "42",
        "wikipedia_title": "Ada Lovelace",
        "text": [
            "Ada Lovelace\n",
            "Ada Lovelace was an English mathematician.\n",
            "Section::::Early life.\n",
            "BULLET::::- She worked on the Analytical Engine.\n",
            body + "\n",
        ],
    }
    out, errors, _ = _collect([_jsonl(tmp_path / "kilt.jsonl", [rec])])
    assert not errors
    joined = " ".join(p.text for p in out)
    assert "Section::::" not in joined and "BULLET::::" not in joined and "Early life" not in joined
    assert out[0].text.startswith("Ada Lovelace was an English mathematician. She worked on the Analytical Engine. b0")
    assert all(p.title == "Ada Lovelace" for p in out)
    assert sum(len(p.text.split()) for p in out) == 6 + 6 + 120 and len(out) == 2


def test_tsv_with_and_without_header(tmp_path):
    dpr = tmp_path / "psgs.tsv"
    dpr.write_text("id\ttext\ttitle\n1\tAaron is a prophet.\tAaron\n2\tshort\n3\tThird text.\tThird\n", encoding="utf-8")
    out, errors, _ = _collect([dpr])
    assert [(p.title, p.text) for p in out] == [("Aaron", "Aaron is a prophet."), ("Third", "Third text.")]
    assert [(e[1]) for e in errors] == [3] and "fields" in errors[0][2]
    two = tmp_path / "two.tsv"
    two.write_text("Title A\tText a.\nTitle B\tText b.\n", encoding="utf-8")
    out, errors, _ = _collect([two])
    assert [(p.title, p.text) for p in out] == [("Title A", "Text a."), ("Title B", "Text b.")] and not errors


def test_gzip_and_unicode_round_trip(tmp_path):
    src = tmp_path / "u.jsonl.gz"
    with gzip.open(src, "wt", encoding="utf-8") as f:
        f.write(json.dumps({"title": "東京", "text": "Tōkyō est la capitale du Japon — 東京都."}, ensure_ascii=False) + "\n")
    out_file = tmp_path / "corpus.jsonl"
    st = build_corpus([src], out_file, on_error=lambda *e: None)
    back = list(read_passages(out_file))
    assert [(p.title, p.text) for p in back] == [("東京", "Tōkyō est la capitale du Japon — 東京都.")]
    assert st.passages == 1 and st.sha256 == corpus_sha256(back)[0]


def test_read_passages_keeps_ids_and_reports_bad_lines(tmp_path):
    path = _jsonl(tmp_path / "c.jsonl", [{"id": "x1", "title": "T", "text": "a"}, "oops", {"title": "U", "text": "b"}])
    errors: list = []
    ps = list(read_passages(path, on_error=lambda *e: errors.append(e)))
    assert [(p.id, p.title) for p in ps] == [("x1", "T"), ("1", "U")]
    assert errors[0][1] == 2
    with pytest.raises(FileNotFoundError):
        list(read_passages(tmp_path / "missing.jsonl"))


def test_missing_input_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing"):
        list(build_passages([tmp_path / "missing.jsonl"]))
