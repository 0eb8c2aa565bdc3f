"""``r1searcher report`` on eval runs: folders in the shapes ``r1searcher eval`` and the demo write."""

from __future__ import annotations

import json

import pytest

from r1searcher import cli
from r1searcher.report.evaluation import collect, markdown_table, write_eval_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _metrics(method, dataset, n, em, cover_em, f1, searches, judge=None, seconds=1.5):
    """A metrics.json as ``evaluate.evaluate_dataset`` writes it (percentages, rounded to 0.1)."""
    return {"n": n, "em": em, "cover_em": cover_em, "f1": f1, "judge": judge, "searches_per_question": searches,
            "stop_reasons": {"answer": n - 1, "length": 1},
            "by_hops": {"2": {"n": n, "em": em, "cover_em": cover_em, "f1": f1, "judge": judge}},
            "method": method, "dataset": f"/data/eval/{dataset}.jsonl", "bad_lines": 0, "seconds_per_question": seconds}


def _write(folder, metrics):
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (folder / "predictions.jsonl").write_text("")


@pytest.fixture
def runs(tmp_path):
    """rl on two datasets, naive on hotpotqa only (2wiki missing), rag demo-shaped (metrics.json on top)."""
    rl, naive, rag = tmp_path / "eval_rl", tmp_path / "eval_naive", tmp_path / "demo" / "rag"
    _write(rl / "hotpotqa", _metrics("rl", "hotpotqa", 500, 58.0, 65.4, 71.9, 2.314, judge=75.0))
    _write(rl / "2wiki", _metrics("rl", "2wiki", 500, 60.2, 68.1, 70.0, 2.9, judge=70.0))
    _write(naive / "hotpotqa", _metrics("naive", "hotpotqa", 500, 20.0, 22.5, 28.3, 0.0))
    _write(rag, _metrics("rag", "2wiki", 300, 30.0, 33.3, 35.6, 0.0, seconds=None))
    return [rl, naive, rag]


def test_collect_rows_and_labels(runs):
    rows = collect(runs)
    assert [(r["run"], r["dataset"]) for r in rows] == [("rl", "2wiki"), ("rl", "hotpotqa"), ("naive", "hotpotqa"),
                                                        ("rag", "2wiki")]
    assert rows[1] == {"run": "rl", "method": "rl", "dataset": "hotpotqa", "n": 500, "em": 58.0, "cover_em": 65.4,
                       "f1": 71.9, "judge": 75.0, "searches_per_question": 2.314, "seconds_per_question": 1.5}
    assert {r["run"] for r in collect(runs, ["A", "B", "C"])} == {"A", "B", "C"}
    with pytest.raises(ValueError, match="one distinct label per eval run"):
        collect(runs, ["A", "B"])


def test_labels_fall_back_to_folder_names(tmp_path):
    a, b = tmp_path / "before", tmp_path / "after"
    _write(a / "hotpotqa", _metrics("rl", "hotpotqa", 10, 1.0, 2.0, 3.0, 1.0))
    _write(b / "hotpotqa", _metrics("rl", "hotpotqa", 10, 4.0, 5.0, 6.0, 1.0))
    assert [r["run"] for r in collect([a, b])] == ["before", "after"]


def test_markdown_table_layout_and_numbers(runs):
    table = markdown_table(collect(runs))
    lines = table.splitlines()
    assert lines[0] == ("| method | 2wiki cover-EM | 2wiki F1 | 2wiki judge | 2wiki searches/question | hotpotqa cover-EM | "
                        "hotpotqa F1 | hotpotqa judge | hotpotqa searches/question | average cover-EM | average F1 | "
                        "average judge | average searches/question |")
    assert lines[1] == "|---|" + "---:|" * 12
    assert lines[2] == "| rl | 68.1 | 70.0 | 70.0 | 2.90 | 65.4 | 71.9 | 75.0 | 2.31 | 66.8 | 71.0 | 72.5 | 2.61 |"
    # naive has no 2wiki result and no judge: missing cells and averages over the datasets present.
    assert lines[3] == "| naive | – | – | – | – | 22.5 | 28.3 | – | 0.00 | 22.5* | 28.3* | – | 0.00* |"
    assert lines[4].startswith("| rag | 33.3 | 35.6 | – | 0.00 | – | – | – | – | 33.3* |")
    assert table.endswith("\\* averaged over the datasets present")
    em = markdown_table(collect(runs), ("em",)).splitlines()
    assert em[0] == "| method | 2wiki | hotpotqa | average |" and em[2] == "| rl | 60.2 | 58.0 | 59.1 |"


def test_write_eval_report_markdown_and_pngs(runs, tmp_path):
    pytest.importorskip("matplotlib")
    path = write_eval_report(runs, tmp_path / "report")
    text = path.read_text()
    assert path.name == "eval_report.md"
    for title in ("## cover-EM", "## F1", "## judge", "## searches/question", "## seconds/question"):
        assert title in text
    assert "| rag | 1.50 | – |" not in text and "| rag | – | – | – |" in text  # rag recorded no seconds
    assert "rag on 2wiki n = 300" in text  # n differs between cells
    for metric in ("cover_em", "f1"):
        png = tmp_path / "report" / f"eval_{metric}.png"
        assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 1000
        assert f"![eval_{metric}](eval_{metric}.png)" in text


def test_report_leaves_out_judge_when_never_judged(tmp_path):
    run = tmp_path / "naive"
    _write(run / "hotpotqa", _metrics("naive", "hotpotqa", 10, 1.0, 2.0, 3.0, 0.0))
    text = write_eval_report([run], tmp_path / "out").read_text()
    assert "## judge" not in text and "## F1" in text and "Every cell scores n = 10 questions." in text


def test_cli_eval_runs_with_labels(runs, tmp_path, capsys):
    out = tmp_path / "cmp"
    assert cli.main(["report", *map(str, runs), "--out", str(out), "--label", "R1", "--label", "Naive",
                     "--label", "RAG"]) == 0
    printed = capsys.readouterr().out
    assert "| R1 | 70.0 | 71.9 | 71.0 |" in printed and f"written: {out}" in printed
    assert (out / "eval_report.md").exists()


def test_cli_training_run_still_reported(tmp_path, capsys):
    run = tmp_path / "stage1"
    run.mkdir()
    (run / "log.jsonl").write_text("".join(json.dumps({"step": s, "reward_mean": 0.1 * s, "f1": 0.05 * s,
                                                       "seconds": 2.0}) + "\n" for s in (1, 2)))
    assert cli.main(["report", str(run)]) == 0
    assert "# Training run `stage1`" in capsys.readouterr().out
    assert (run / "report" / "summary.md").exists()


def test_cli_errors(tmp_path, runs, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli.main(["report", str(empty)]) == 2
    assert "holds neither log.jsonl (a training run) nor metrics.json" in capsys.readouterr().err
    (empty / "log.jsonl").write_text(json.dumps({"step": 1, "seconds": 1.0}) + "\n")
    assert cli.main(["report", str(empty), str(runs[0])]) == 2
    assert "reported on its own" in capsys.readouterr().err
