"""Metrics: the paper's rules by hand, properties by hypothesis, the paper's numbers on its released
predictions, and the ``r1searcher metrics`` command."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from r1searcher import cli
from r1searcher.eval.judge import parse_verdict
from r1searcher.eval.metrics import (
    aggregate,
    bool_mapping,
    cover_exact_match,
    exact_match,
    f1_precision_recall,
    f1_score,
    max_f1_score,
    normalize_answer,
    score_prediction,
)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("R1SEARCHER_SHARED_DATA", REPO.parent / "shared" / "data"))
REFERENCE = SHARED_DATA / "reference" / "hotpotqa_qwen.jsonl"
PAPER = {"n": 500, "em": 58.0, "cover_em": 65.4, "f1": 71.9, "judge": 75.0}


def _reference_rows() -> list[dict]:
    if not REFERENCE.is_file():
        pytest.skip(f"reference predictions not found at {REFERENCE} (the shared data folder beside the repo)")
    return [json.loads(line) for line in REFERENCE.open(encoding="utf-8")]


# -- normalisation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "norm"),
    [
        ("The  Quick_brown-Fox!", "quick brown fox"),
        ("‘quoted’ ´tick` ", "quoted tick"),
        ("a an the", ""),
        ("Theatre Anne", "theatre anne"),  # articles only as whole words
        ("U.S. Route 22", "u s route 22"),
        ("  Peter   Parker ", "peter parker"),
        ("A-ha", "ha"),  # punctuation becomes a space before articles go
        ("", ""),
    ],
)
def test_normalize_answer_cases(raw: str, norm: str) -> None:
    assert normalize_answer(raw) == norm


def test_bool_mapping_is_exact_and_case_sensitive() -> None:
    assert bool_mapping("True") == "yes" and bool_mapping("False") == "no"
    assert bool_mapping("true") == "true" and bool_mapping(" True") == " True"
    assert exact_match("True", "yes") and exact_match("no", "False")
    assert not exact_match("true", "yes")  # "true" is not mapped, as released
    assert f1_score("False", "no") == 1.0
    assert not exact_match(" True ", "yes")  # the released code does not strip before mapping


# -- EM / cover-EM / F1 rules ----------------------------------------------------------------------


def test_cover_em_ignores_order_and_contiguity() -> None:
    assert cover_exact_match("Peter Parker and Mary Jane", "Mary Parker")
    assert cover_exact_match("Parker, Peter", "Peter Parker")
    assert not cover_exact_match("Peter Parker", "Peter Pan")
    assert not exact_match("Peter Parker and Mary Jane", "Peter Parker")


def test_cover_em_empty_normalised_gold() -> None:
    # split(" ") of "" is [""]: only an empty normalised prediction covers it.
    assert not cover_exact_match("anything", "The")
    assert cover_exact_match("a", "The")


def test_f1_token_overlap() -> None:
    f1, p, r = f1_precision_recall("Barack Obama", "Obama")
    assert (p, r) == (0.5, 1.0) and f1 == pytest.approx(2 / 3)
    f1, p, r = f1_precision_recall("x x y", "x y")  # multiset overlap
    assert (p, r) == (2 / 3, 1.0) and f1 == pytest.approx(0.8)
    assert f1_score("Paris", "London") == 0.0
    assert f1_score("", "") == 0.0  # no common tokens, as released (EM is 1 here)
    assert exact_match("", "")


def test_f1_yes_no_noanswer_rule() -> None:
    assert f1_score("yes", "yes") == 1.0
    assert f1_score("yes", "no") == 0.0
    assert f1_score("yes sir", "yes") == 0.0  # gold is yes/no and they differ
    assert f1_score("no", "no way") == 0.0  # prediction is yes/no and they differ
    assert f1_score("noanswer", "noanswer") == 1.0
    assert f1_score("The yes.", "yes") == 1.0  # the rule looks at normalised strings


def test_cover_em_without_f1_for_yes_no_gold() -> None:
    """Cover-EM ⇏ F1 > 0 when the gold is yes/no: the one place the chain breaks."""
    s = score_prediction("yes indeed", "yes")
    assert s == {"em": 0.0, "cover_em": 1.0, "f1": 0.0}


def test_max_over_aliases() -> None:
    s = score_prediction("NYC", ["New York City", "NYC"])
    assert s == {"em": 1.0, "cover_em": 1.0, "f1": 1.0}
    s = score_prediction("New York", ["New York City", "York"])
    assert s["em"] == 0.0 and s["cover_em"] == 1.0
    assert s["f1"] == max_f1_score("New York", ["New York City", "York"]) == pytest.approx(0.8)
    assert score_prediction("Paris", "Paris")["em"] == 1.0  # one string is one gold
    with pytest.raises(ValueError, match="no gold answers"):
        score_prediction("Paris", [])


def test_non_string_golds() -> None:
    assert score_prediction("yes", [True])["em"] == 1.0  # bool golds map like the judge script
    assert score_prediction("No", False)["f1"] == 1.0
    assert score_prediction("1984", [1984])["em"] == 1.0
    with pytest.raises(TypeError):
        score_prediction("x", [None])  # type: ignore[list-item]


def test_aggregate_percentages_and_judge() -> None:
    rows = [
        {"em": 1.0, "cover_em": 1.0, "f1": 1.0, "judge": True},
        {"em": 0.0, "cover_em": 1.0, "f1": 0.5, "judge": False},
        {"em": 0.0, "cover_em": 0.0, "f1": 0.0, "judge": True},
    ]
    assert aggregate(rows) == {"n": 3, "em": 33.3, "cover_em": 66.7, "f1": 50.0, "judge": 66.7}
    rows[1]["judge"] = None
    assert aggregate(rows)["judge"] is None  # a partly judged set has no judge score
    assert aggregate([r | {"judge": None} for r in rows])["judge"] is None
    assert aggregate([]) == {"n": 0, "em": None, "cover_em": None, "f1": None, "judge": None}


# -- properties ------------------------------------------------------------------------------------

WORDS = ["a", "an", "the", "yes", "no", "noanswer", "True", "False", "Paris", "new_york", "U.S.",
         "x", "X", "é", "東京", "’s", "1,000", "--", "The", "cat"]
phrases = st.lists(st.sampled_from(WORDS), max_size=6).map(" ".join)
texts = st.one_of(phrases, st.text(max_size=30))


@settings(max_examples=300, deadline=None)
@given(texts)
def test_normalisation_is_idempotent(s: str) -> None:
    once = normalize_answer(s)
    assert normalize_answer(once) == once


@settings(max_examples=300, deadline=None)
@given(texts, texts)
def test_f1_is_symmetric(a: str, b: str) -> None:
    assert f1_score(a, b) == f1_score(b, a)
    assert exact_match(a, b) == exact_match(b, a)


@st.composite
def pred_gold(draw: st.DrawFn) -> tuple[str, str]:
    gold = draw(phrases)
    mode = draw(st.sampled_from(["same", "shuffled", "superset", "random"]))
    toks = gold.split()
    if mode == "same":
        return gold, gold
    if mode == "shuffled":
        return " ".join(draw(st.permutations(toks))), gold
    if mode == "superset":
        return " ".join(draw(st.permutations(toks + draw(st.lists(st.sampled_from(WORDS), max_size=3))))), gold
    return draw(texts), gold


@settings(max_examples=400, deadline=None)
@given(pred_gold())
def test_em_implies_cover_em_implies_positive_f1(pair: tuple[str, str]) -> None:
    pred, gold = pair
    if exact_match(pred, gold):
        assert cover_exact_match(pred, gold)
    g, p = normalize_answer(bool_mapping(gold)), normalize_answer(bool_mapping(pred))
    # the yes/no/noanswer rule: F1 is 0 when either side is one of them and they differ
    # (pred "yes" covers gold "yes yes", and their F1 is 0)
    if cover_exact_match(pred, gold) and g and not ({g, p} & {"yes", "no", "noanswer"}):
        assert f1_score(pred, gold) > 0


@settings(max_examples=200, deadline=None)
@given(texts, st.lists(texts, min_size=1, max_size=4))
def test_alias_max_is_at_least_each_alias(pred: str, golds: list[str]) -> None:
    s = score_prediction(pred, golds)
    for g in golds:
        assert s["f1"] >= f1_score(pred, g)
        assert s["em"] >= float(exact_match(pred, g))
        assert s["cover_em"] >= float(cover_exact_match(pred, g))


# -- the paper's numbers ---------------------------------------------------------------------------


def test_reference_file_gives_the_papers_numbers() -> None:
    """Qwen-2.5-7B R1-Searcher on HotpotQA (Table 4 / Table 2): EM 58.0, CEM 65.4, F1 71.9, judge 75.0.

    Prediction = ``pred_ans`` (with its surrounding spaces), gold = the single ``answer`` string,
    judge = ``gpt4o_output == "True"``.
    """
    rows = _reference_rows()
    scored = [
        dict(score_prediction(r["pred_ans"], [r["answer"]]), judge=parse_verdict(r["gpt4o_output"], strict=True))
        for r in rows
    ]
    assert aggregate(scored) == PAPER


def test_cli_metrics_json_on_reference(capsys: pytest.CaptureFixture[str]) -> None:
    _reference_rows()
    assert cli.main(["metrics", str(REFERENCE), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == PAPER
    assert cli.main(["metrics", str(REFERENCE), "--json", "--gold-field", "answer", "--limit", "100"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 100


def test_cli_metrics_table_on_reference(capsys: pytest.CaptureFixture[str]) -> None:
    _reference_rows()
    assert cli.main(["metrics", str(REFERENCE)]) == 0
    out = capsys.readouterr().out
    for label, value in (("EM", "58.0"), ("Cover-EM", "65.4"), ("F1", "71.9"), ("Judge", "75.0")):
        assert any(line.split()[:2] == [label, value] for line in out.splitlines()), out


def _write(path: Path, rows: list[object]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def test_cli_metrics_aliases_and_missing_judge(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = _write(tmp_path / "preds.jsonl", [
        {"question": "q1", "answer": "New York City", "answers": ["New York City", "NYC"], "pred_ans": "NYC"},
        {"question": "q2", "answer": "Paris", "answers": ["Paris"], "pred_ans": "London"},
    ])
    assert cli.main(["metrics", str(f), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"n": 2, "em": 50.0, "cover_em": 50.0, "f1": 50.0, "judge": None}
    # the paper's single gold string only: the alias no longer counts
    assert cli.main(["metrics", str(f), "--json", "--gold-field", "answer"]) == 0
    assert json.loads(capsys.readouterr().out)["em"] == 0.0
    assert cli.main(["metrics", str(f), "--json", "--pred-field", "answer"]) == 0
    assert json.loads(capsys.readouterr().out)["em"] == 100.0


def test_cli_metrics_partial_judge_field_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = _write(tmp_path / "preds.jsonl", [
        {"question": "q1", "answer": "a1", "pred_ans": "a1", "gpt4o_output": "True"},
        {"question": "q2", "answer": "a2", "pred_ans": "b2"},
    ])
    assert cli.main(["metrics", str(f), "--json"]) == 0
    cap = capsys.readouterr()
    assert json.loads(cap.out)["judge"] is None
    assert "1 of 2 rows lack 'gpt4o_output'" in cap.err


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("{not json", "invalid JSON"),
        ('["a list"]', "expected a JSON object"),
        ('{"question": "q", "answer": "a"}', "no prediction field 'pred_ans'"),
        ('{"question": "q", "pred_ans": "p"}', "no answer"),
    ],
)
def test_cli_metrics_bad_line_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], line: str, reason: str
) -> None:
    f = _write(tmp_path / "bad.jsonl", [{"question": "q", "answer": "a", "pred_ans": "a"}, line])
    assert cli.main(["metrics", str(f), "--json"]) == 2
    cap = capsys.readouterr()
    assert cap.out == ""
    assert f"{f}:2: " in cap.err and reason in cap.err


def test_cli_metrics_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["metrics", str(tmp_path / "nope.jsonl")]) == 2
    assert "not found" in capsys.readouterr().err
