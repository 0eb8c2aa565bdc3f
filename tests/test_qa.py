"""QA loading: every record shape we meet, bad lines reported as file:line, dataset resolution."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from r1searcher.data.qa import (
    LoadReport,
    QADataError,
    QARecord,
    answers_of,
    load_qa,
    resolve_dataset,
)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("R1SEARCHER_SHARED_DATA", REPO.parent / "shared" / "data"))


def _write(path: Path, lines: list[object]) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines), encoding="utf-8")
    return path


# -- shapes ----------------------------------------------------------------------------------------


def test_paper_training_shape(tmp_path: Path) -> None:
    f = _write(tmp_path / "stage.jsonl", [{"idx": 37653, "question": "Which Route 22?", "answer": "U.S. Route 22",
                                           "pred_anses": ["", "x"]}])
    [rec] = load_qa(f)
    assert rec == QARecord("37653", "Which Route 22?", ["U.S. Route 22"],
                           {"idx": 37653, "answer": "U.S. Route 22", "pred_anses": ["", "x"]})


def test_eval_shape_with_aliases_keeps_primary_first(tmp_path: Path) -> None:
    f = _write(tmp_path / "eval.jsonl", [
        {"id": "2wiki-1", "question": "q", "answer": "NYC", "answers": ["New York City", "NYC"]},
    ])
    [rec] = load_qa(f)
    assert rec.id == "2wiki-1"
    assert rec.answers == ["NYC", "New York City"]  # answer first, duplicates dropped
    assert rec.meta["answers"] == ["New York City", "NYC"]  # the raw fields stay available


def test_hotpotqa_2wiki_musique_flashrag_shapes(tmp_path: Path) -> None:
    f = _write(tmp_path / "mixed.jsonl", [
        {"_id": "5a8b57f2", "question": "Hotpot?", "answer": "yes", "type": "comparison"},
        {"id": "2hop__1", "question": "Musique?", "answer": "Paris", "answer_aliases": ["City of Light"]},
        {"id": "fr-3", "question": "FlashRAG?", "golden_answers": ["1984", "Nineteen Eighty-Four"]},
        {"question": "No id?", "answer": True},
        {"question": "Number?", "answers": [42, 3.5]},
    ])
    recs = load_qa(f)
    assert [r.id for r in recs] == ["5a8b57f2", "2hop__1", "fr-3", "4", "5"]  # line number when no id
    assert recs[0].answers == ["yes"] and recs[0].meta["type"] == "comparison"
    assert recs[1].answers == ["Paris", "City of Light"]
    assert recs[2].answers == ["1984", "Nineteen Eighty-Four"]
    assert recs[3].answers == ["yes"]  # booleans become yes/no
    assert recs[4].answers == ["42", "3.5"]


def test_json_array_file(tmp_path: Path) -> None:
    f = tmp_path / "hotpot_dev.json"
    f.write_text(json.dumps([{"_id": "a", "question": "q1", "answer": "x"},
                             {"_id": "b", "question": "q2"}]), encoding="utf-8")
    rep = LoadReport()
    recs = load_qa(f, report=rep)
    assert [r.id for r in recs] == ["a"]
    assert rep.errors == [f"{f}:2: no answer (looked at 'answer', 'answers', 'golden_answers', 'answer_aliases')"]


def test_answers_of_named_field() -> None:
    row = {"answer": "NYC", "answers": ["New York City", "NYC"]}
    assert answers_of(row, "answer") == ["NYC"]
    assert answers_of(row, "answers") == ["New York City", "NYC"]
    with pytest.raises(ValueError, match="no answer"):
        answers_of(row, "golden_answers")
    with pytest.raises(ValueError, match="field 'answers': an answer must be a string, got dict"):
        answers_of({"answers": [{"text": "x"}]})


# -- bad lines -------------------------------------------------------------------------------------

BAD_LINES = [
    ("{not json", "invalid JSON"),
    ('["a", "list"]', "expected a JSON object, got list"),
    ('{"answer": "x"}', "no 'question'"),
    ('{"question": "   ", "answer": "x"}', "empty 'question'"),
    ('{"question": 7, "answer": "x"}', "'question' must be a string, got int"),
    ('{"question": "q"}', "no answer"),
    ('{"question": "q", "answer": ""}', "no answer"),
    ('{"question": "q", "answers": []}', "no answer"),
    ('{"question": "q", "answer": {"a": 1}}', "field 'answer': an answer must be a string, got dict"),
    ('{"id": [1], "question": "q", "answer": "x"}', "'id' must be a string or an integer"),
    ('{"id": "dup", "question": "q", "answer": "x"}', "duplicate id 'dup'"),
]


@pytest.mark.parametrize(("line", "reason"), BAD_LINES)
def test_bad_line_reported_with_file_and_line(tmp_path: Path, line: str, reason: str) -> None:
    f = _write(tmp_path / "data.jsonl", [{"id": "dup", "question": "good", "answer": "a"}, "", line,
                                         {"id": "last", "question": "also good", "answer": "b"}])
    rep = LoadReport()
    recs = load_qa(f, on_error="skip", report=rep)
    assert [r.id for r in recs] == ["dup", "last"]  # the blank line is not an error
    assert rep.n_ok == 2 and rep.n_bad == 1
    assert rep.errors[0].startswith(f"{f}:3: ") and reason in rep.errors[0]
    with pytest.raises(QADataError) as exc:
        load_qa(f, on_error="fail")
    assert str(exc.value) == rep.errors[0]


def test_non_utf8_line_is_reported_and_the_rest_read(tmp_path: Path) -> None:
    f = tmp_path / "latin1.jsonl"
    f.write_bytes(b'{"question": "caf\xe9?", "answer": "x"}\n{"question": "ok?", "answer": "y"}\n')
    rep = LoadReport()
    recs = load_qa(f, report=rep)
    assert [r.question for r in recs] == ["ok?"]
    assert rep.errors[0].startswith(f"{f}:1: not UTF-8 text")


def test_skipped_lines_are_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    f = _write(tmp_path / "d.jsonl", ['{"question": "q"}'] * 12 + [{"question": "q", "answer": "a"}])
    with caplog.at_level(logging.WARNING, logger="r1searcher.data.qa"):
        recs = load_qa(f)
    assert len(recs) == 1
    msgs = [r.getMessage() for r in caplog.records]
    assert f"{f}:1: no answer" in msgs[0]
    assert sum(m.startswith(f"{f}:") and "no answer" in m for m in msgs) == 10  # then a count
    assert "skipped 12 bad line(s) (2 not shown), kept 1 record(s)" in msgs[-1]


def test_limit_missing_file_and_bad_flag(tmp_path: Path) -> None:
    f = _write(tmp_path / "d.jsonl", [{"question": f"q{i}", "answer": "a"} for i in range(5)])
    assert [r.id for r in load_qa(f, limit=2)] == ["1", "2"]
    assert len(load_qa(f, limit=None)) == 5
    with pytest.raises(FileNotFoundError, match="QA file not found"):
        load_qa(tmp_path / "missing.jsonl")
    with pytest.raises(FileNotFoundError, match="directory"):
        load_qa(tmp_path)
    with pytest.raises(ValueError, match="on_error"):
        load_qa(f, on_error="ignore")  # type: ignore[arg-type]


# -- dataset names ---------------------------------------------------------------------------------


def test_resolve_dataset_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "eval").mkdir()
    target = _write(tmp_path / "eval" / "toyqa.jsonl", [{"question": "q", "answer": "a"}])
    monkeypatch.setenv("R1SEARCHER_DATA", str(tmp_path))
    assert resolve_dataset("toyqa") == target
    assert resolve_dataset(str(target)) == target  # an existing path is returned as is
    with pytest.raises(FileNotFoundError) as exc:
        resolve_dataset("no-such-set")
    assert "no-such-set" in str(exc.value) and "toyqa" in str(exc.value)  # lists what exists


def test_resolve_and_load_the_shared_sets() -> None:
    if not (SHARED_DATA / "eval" / "hotpotqa.jsonl").is_file():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    expected = {"hotpotqa": 500, "2wiki": 500, "musique": 500, "bamboogle": 125, "stage_1": 350}
    for name, n in expected.items():
        path = resolve_dataset(name)
        rep = LoadReport()
        assert len(load_qa(path, report=rep)) == n and rep.n_bad == 0, name
    # dev_extra/hotpotqa has 20 questions whose answer is null and aliases empty: skipped, reported.
    rep = LoadReport()
    recs = load_qa(resolve_dataset("dev_extra/hotpotqa"), report=rep)
    assert (len(recs), rep.n_bad) == (908, 20)
    assert all(": no answer" in e for e in rep.errors)
