"""``r1searcher report RUN_DIR`` on a log written in the trainer's format."""

from __future__ import annotations

import json

import pytest

from r1searcher.report.training import load_log, smooth, write_report


def _fake_run(run, steps=12):
    run.mkdir()
    with open(run / "log.jsonl", "w") as f:
        for s in range(1, steps + 1):
            f.write(json.dumps({"step": s, "reward_mean": s / steps, "reward_std": 0.1, "f1": 0.02 * s, "acc": 0.01 * s,
                                "searches_per_trajectory": 0.1 * s, "frac_with_search": min(1.0, 0.1 * s),
                                "response_len": 100.0 + s, "policy_tokens": 60.0, "kl": None, "entropy": 2.0,
                                "approx_kl_sampler": 0.0, "stop_answer": 3, "stop_length": 1, "seconds": 10.0,
                                "sec_generate": 6.0, "sec_retrieve": 0.5, "sec_reward": 0.01, "sec_fwd_bwd": 3.4,
                                "elapsed": 10.0 * s}) + "\n")
    (run / "samples.jsonl").write_text(json.dumps({"step": steps, "reward": 1.0, "question": "Q?", "text": "T",
                                                   "stop_reason": "answer", "n_searches": 1}) + "\n")


def test_report_writes_pngs_and_summary(tmp_path):
    pytest.importorskip("matplotlib")
    run = tmp_path / "run"
    _fake_run(run)
    path = write_report(run)
    text = path.read_text()
    assert {p.name for p in path.parent.glob("*.png")} == {"reward.png", "f1.png", "searches.png", "length.png", "kl.png"}
    assert "| reward_mean | 0.167 | 0.917 |" in text  # first 3 vs last 3 steps
    assert "| generate | 6.00 | 60% |" in text
    assert "Sample trajectories (step 12)" in text


def test_report_errors_and_smoothing(tmp_path):
    with pytest.raises(FileNotFoundError, match="training run"):
        load_log(tmp_path)
    assert smooth([1.0, 3.0, 5.0], 2) == [1.0, 2.0, 4.0]
