"""Trackers mirror log.jsonl: every numeric field per step, plus the step's samples, read back from
TensorBoard's event files (its own EventAccumulator) and Trackio's local store (its SQLiteStorage).

Trackio reads ``TRACKIO_DIR`` when it is imported, so runs that use it go in a subprocess with their own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from r1searcher.rollout import tags
from r1searcher.rl.trackers import Trackers, flatten, parse_report_to

REPO = Path(__file__).resolve().parents[1]

READ_TRACKIO = textwrap.dedent("""
    import json, sys
    from trackio.sqlite_storage import SQLiteStorage
    print(json.dumps({"runs": SQLiteStorage.get_runs(sys.argv[1]), "logs": SQLiteStorage.get_logs(sys.argv[1], sys.argv[2])},
                     default=str))
""")


def read_tensorboard(logdir: Path) -> tuple[dict, dict]:
    """``({tag: {step: value}}, {step: text})`` from the event files."""
    pytest.importorskip("tensorboard", reason="pip install tensorboard (requirements-dev.txt)")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    scalars = {t: {e.step: e.value for e in acc.Scalars(t)} for t in acc.Tags()["scalars"]}
    texts = {}
    for t in acc.Tags()["tensors"]:
        if t.startswith("samples"):
            for e in acc.Tensors(t):
                texts[e.step] = e.tensor_proto.string_val[0].decode()
    return scalars, texts


def read_trackio(store: Path, project: str, run: str) -> dict:
    pytest.importorskip("trackio", reason="pip install trackio (requirements-dev.txt)")
    out = subprocess.run([sys.executable, "-c", READ_TRACKIO, project, run], capture_output=True, text=True,
                         env={**os.environ, "TRACKIO_DIR": str(store)}, check=True)
    return json.loads(out.stdout)


def check_mirrors(run: Path, store: Path) -> list[dict]:
    """Every numeric log.jsonl field at every step is in TensorBoard and in Trackio, with the same value."""
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    samples = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    scalars, texts = read_tensorboard(run / "tensorboard")
    tr = read_trackio(store, "r1searcher", run.name)
    assert tr["runs"] == [run.name]
    by_step = {}
    for row in tr["logs"]:
        by_step.setdefault(row["step"], {}).update(row)
    for rec in log:
        step = rec["step"]
        flat = flatten({k: v for k, v in rec.items() if k != "step"})
        assert flat and all(v is not None for v in flat.values())
        for k, v in flat.items():
            assert scalars[k][step] == pytest.approx(v, rel=1e-6, abs=1e-6), k
            assert by_step[step][k] == pytest.approx(v, rel=1e-9, abs=1e-9), k
        # the step's sample trajectories: text in TensorBoard, a table in Trackio
        mine = [s for s in samples if s["step"] == step]
        assert all(s["question"] in texts[step] for s in mine)
        table = by_step[step]["samples"]["_value"]
        assert [row["question"] for row in table] == [s["question"] for s in mine]
        assert [row["text"] for row in table] == [s["text"] for s in mine]
    return log


def test_parse_report_to():
    assert parse_report_to("tensorboard,trackio") == ["tensorboard", "trackio"]
    assert parse_report_to(["wandb", " TensorBoard ", "wandb"]) == ["wandb", "tensorboard"]
    assert parse_report_to("none") == parse_report_to([]) == parse_report_to("") == parse_report_to(None) == []
    with pytest.raises(ValueError, match="unknown tracker 'mlflow'"):
        parse_report_to("tensorboard,mlflow")
    with pytest.raises(ValueError, match="cannot be combined"):
        parse_report_to(["none", "wandb"])


def test_flatten_keeps_numbers_and_nests_dicts():
    rec = {"reward_mean": 0.5, "kl": None, "stop_answer": 3, "reward_reasons": {"no search": 2}, "note": "x", "ok": True}
    assert flatten(rec) == {"reward_mean": 0.5, "stop_answer": 3, "reward_reasons/no search": 2, "ok": 1.0}


def test_missing_package_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb → ImportError
    with pytest.raises(RuntimeError, match=r"train.report_to=wandb needs the wandb package: pip install wandb"):
        Trackers("wandb", tmp_path)
    assert Trackers("none", tmp_path).active == []


def test_failing_tracker_is_switched_off_and_training_goes_on(tmp_path):
    class Broken:
        name = "broken"

        def log(self, *a):
            raise OSError("disk full")

    t = Trackers(None, tmp_path)
    t.active = [Broken()]
    with pytest.warns(UserWarning, match="broken: logging failed at step 1"):
        t.log({"step": 1, "reward_mean": 0.0})
    assert t.active == []


def test_tensorboard_tracker_writes_every_field(tmp_path):
    recs = [{"step": s, "reward_mean": 0.1 * s, "kl": None, "reward_reasons": {"no search": s}} for s in (1, 2)]
    samples = [{"step": 2, "question": "Where?", "answers": ["Kelvara"], "pred": "Kelvara", "reward": 1.0, "f1": 1.0,
                "stop_reason": "answer", "n_searches": 1, "text": f"{tags.QUERY_OPEN}Kelvara{tags.QUERY_CLOSE}"}]
    t = Trackers("tensorboard", tmp_path, {"train": {"lr": 1e-3}})
    t.log(recs[0])
    t.log(recs[1], samples)
    t.close()
    scalars, texts = read_tensorboard(tmp_path / "tensorboard")
    assert scalars["reward_mean"] == pytest.approx({1: 0.1, 2: 0.2})
    assert scalars["reward_reasons/no search"] == {1: 1.0, 2: 2.0} and "kl" not in scalars
    assert "Where?" in texts[2] and "Kelvara" in texts[2]


@pytest.mark.slow
def test_train_mirrors_log_to_tensorboard_and_trackio(tmp_path, smollm_tokenizer):
    """Two steps of the real loop (tiny random model, steered to search) with report_to=tensorboard,trackio."""
    pytest.importorskip("tensorboard")
    pytest.importorskip("trackio")
    from test_trainer_loop import write_tiny_run

    d = write_tiny_run(tmp_path / "setup", smollm_tokenizer)
    run, store = tmp_path / "run", tmp_path / "trackio"
    subprocess.run([sys.executable, str(d / "runner.py"), str(d / "tiny.yaml"), str(run), "0", "train.max_steps=2",
                    "train.report_to=tensorboard,trackio", "train.log_samples=4"], check=True, cwd=REPO,
                   env={**os.environ, "TRACKIO_DIR": str(store), "PYTHONPATH": str(REPO)}, capture_output=True)
    log = check_mirrors(run, store)
    assert [r["step"] for r in log] == [1, 2]
    # the samples carry the recorded loss mask: untrained spans are exactly the inserted document blocks
    samples = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    searched = [s for s in samples if s["n_searches"]]
    assert searched, "the steered sample 0 searches"
    for s in searched:
        assert len(s["untrained"]) == s["n_searches"]
        for a, b in s["untrained"]:
            assert s["text"][a:b].strip("\n").startswith(tags.DOCS_OPEN) and s["text"][a:b].rstrip("\n").endswith(tags.DOCS_CLOSE)


@pytest.mark.slow
def test_tiny_yaml_two_steps_reach_tensorboard_and_trackio(tmp_path, shared_data):
    """The README's command: configs/tiny.yaml (embedded SmolLM2, shared corpus), 2 steps, both trackers."""
    pytest.importorskip("tensorboard")
    pytest.importorskip("trackio")
    run, store = tmp_path / "tiny", tmp_path / "trackio"
    subprocess.run([sys.executable, "-m", "r1searcher.cli", "train", "--config", "configs/tiny.yaml", "--out", str(run),
                    "train.max_steps=2", "train.report_to=tensorboard,trackio", "train.progress=false"],
                   check=True, cwd=REPO, env={**os.environ, "TRACKIO_DIR": str(store)}, capture_output=True)
    log = check_mirrors(run, store)
    assert [r["step"] for r in log] == [1, 2]
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
