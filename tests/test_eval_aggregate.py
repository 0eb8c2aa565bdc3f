"""One aggregator (``metrics.aggregate`` over rows, ``aggregate_sums`` over sums that ranks add up),
one name per metric and one rounding: ``eval``'s metrics.json, ``r1searcher metrics`` and the held-out
slice during training give the same numbers for the same predictions."""

from __future__ import annotations

import json

import pytest

from r1searcher.data.qa import QARecord
from r1searcher.eval.evaluate import prediction_row, summarize
from r1searcher.eval.metrics import (
    SCORES,
    aggregate,
    aggregate_sums,
    per_question,
    percent,
    score_prediction,
    score_sums,
)
from r1searcher.rl.heldout import summarize_sums
from r1searcher.rollout.trajectory import Trajectory

# (question, gold answers, hops, prediction or None, searches)
CASES = [
    ("q1", ["Norland"], 1, "Norland", 1),
    ("q2", ["Glass Sea"], 2, "the Glass", 2),
    ("q3", ["Maren Oduya"], 2, None, 0),
    ("q4", ["1912"], 1, "in 1912", 1),
    ("q5", ["yes"], 2, "no", 3),
    ("q6", ["Kelvara"], 2, "Kelvara city", 2),
]


def rows() -> list[dict]:
    out = []
    for q, golds, hops, pred, searches in CASES:
        text = f"<answer>{pred}</answer>" if pred is not None else "nothing"
        tr = Trajectory([1], [], [], [], text=text, answer=pred, n_searches=searches,
                        stop_reason="answer" if pred is not None else "length")
        out.append(prediction_row(QARecord(q, f"question {q}?", golds, {"hops": hops}), tr))
    return out


def test_one_rounding_rule():
    assert percent(1, 3) == 33.3 and percent(2, 3) == 66.7 and percent(1, 8) == 12.5
    assert per_question(4, 3) == 1.333 and per_question(1, 2) == 0.5
    assert SCORES == ("em", "cover_em", "f1")


def test_aggregate_is_the_sums_route():
    rs = rows()
    sums = score_sums(rs)
    assert sums["n"] == 6 and sums["em"] == sum(r["em"] for r in rs)
    assert aggregate_sums(sums) == {k: v for k, v in aggregate(rs).items() if k != "judge"}
    # sums add up (across batches or ranks) before they become percentages
    halves = [score_sums(rs[:2]), score_sums(rs[2:])]
    assert aggregate_sums({k: halves[0][k] + halves[1][k] for k in sums}) == aggregate_sums(sums)
    assert aggregate_sums({"n": 0}) == {"n": 0, "em": None, "cover_em": None, "f1": None}


def test_values_on_a_known_set():
    m = aggregate(rows())
    # em: q1 only; cover-EM: q1, q4, q6; F1: 1 + 2/3 + 0 + 2/3 + 0 + 2/3 = 3
    assert m == {"n": 6, "em": 16.7, "cover_em": 50.0, "f1": 50.0, "judge": None}


def _heldout_sums(rs: list[dict]) -> dict[str, float]:
    """What ``heldout_sums`` adds up for these rows (the engine's part left out)."""
    sums: dict[str, float] = {}
    for r in rs:
        values = {**score_sums([r]), "searches": float(r["n_searches"]), "answered": float(r["pred_ans"] != "")}
        for prefix in ("", f"h{r['hops']}:"):
            for k, v in values.items():
                sums[prefix + k] = sums.get(prefix + k, 0.0) + v
    return sums


def test_heldout_and_eval_give_the_same_numbers():
    rs = rows()
    ev, ho = summarize(rs), summarize_sums(_heldout_sums(rs))
    for key in (*SCORES, "n", "searches_per_question"):
        assert ho[key] == ev[key], key
    assert set(ho["by_hops"]) == set(ev["by_hops"]) == {"1", "2"}
    for h in ("1", "2"):
        for key in (*SCORES, "n", "searches_per_question"):  # searches per hop: the demo's 2-hop goal
            assert ho["by_hops"][h][key] == ev["by_hops"][h][key], (h, key)
    assert ho["answered"] == per_question(5, 6)


def test_heldout_rounds_like_eval():
    """Held-out percentages have one decimal, as eval's (they had two: 33.33)."""
    out = summarize_sums({"n": 3, "f1": 1.0, "cover_em": 2.0, "em": 1.0, "searches": 4.0, "answered": 3.0})
    assert (out["f1"], out["cover_em"], out["em"]) == (33.3, 66.7, 33.3)
    assert out["searches_per_question"] == 1.333 and out["answered"] == 1.0
    assert set(out) == {"n", "em", "cover_em", "f1", "searches_per_question", "answered"}
    assert summarize_sums({"n": 0}) == {"n": 0}


def test_metrics_json_keeps_its_keys():
    out = summarize(rows(), seconds=1.234)
    assert set(out) == {"n", "em", "cover_em", "f1", "judge", "searches_per_question", "stop_reasons", "by_hops",
                        "seconds"}
    assert set(out["by_hops"]["2"]) == {"n", "em", "cover_em", "f1", "judge", "searches_per_question"}
    assert out["seconds"] == 1.23 and out["stop_reasons"] == {"answer": 5, "length": 1}
    json.dumps(out)  # plain JSON


def test_cli_metrics_uses_the_same_aggregator(tmp_path, capsys):
    from r1searcher import cli

    rs = rows()
    path = tmp_path / "predictions.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rs))
    assert cli.main(["metrics", str(path), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got == aggregate([score_prediction(r["pred_ans"], r["answers"]) for r in rs]) == aggregate(rs)


@pytest.mark.parametrize("judged, expected", [([True, False, True], 66.7), ([True, None, True], None)])
def test_judge_is_a_percentage_of_every_row_or_none(judged, expected):
    rs = [dict(score_prediction("a", ["a"]), judge=v) for v in judged]
    assert aggregate(rs)["judge"] == expected
