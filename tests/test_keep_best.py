"""``train.keep_best``: the policy whose held-out slice F1 is best is kept in RUN/best and is what
the demo evaluates; ties go to the later step; a resume goes on from the kept record."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from r1searcher.config import load_config
from r1searcher.rl.best import best_model_dir, is_better, read_best, write_best


def _save_text(text: str):
    def save(path: Path) -> None:
        path.mkdir(parents=True)
        (path / "config.json").write_text(text)

    return save


def test_write_best_replaces_the_folder_and_a_failed_write_keeps_the_previous(tmp_path):
    assert read_best(tmp_path) is None and best_model_dir(tmp_path) is None
    write_best(tmp_path, _save_text("a"), {"step": 3, "heldout_f1": 20.0})
    assert read_best(tmp_path)["step"] == 3 and (best_model_dir(tmp_path) / "config.json").read_text() == "a"

    def broken(path: Path) -> None:
        path.mkdir(parents=True)
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        write_best(tmp_path, broken, {"step": 6, "heldout_f1": 30.0})
    assert read_best(tmp_path)["step"] == 3 and (best_model_dir(tmp_path) / "config.json").read_text() == "a"
    assert not (tmp_path / ".tmp-best").exists()
    write_best(tmp_path, _save_text("b"), {"step": 6, "heldout_f1": 30.0})
    assert read_best(tmp_path)["step"] == 6 and (best_model_dir(tmp_path) / "config.json").read_text() == "b"
    (tmp_path / "best" / "best.json").write_text("{not json")
    assert read_best(tmp_path) is None  # unreadable: as if none was kept


def test_ties_go_to_the_later_step():
    assert is_better(0.0, None)
    assert is_better(25.0, {"step": 3, "heldout_f1": 25.0})  # equal: the later, more trained policy
    assert not is_better(24.9, {"step": 3, "heldout_f1": 25.0})


def _scripted_slice(monkeypatch, scores: dict[int, float]) -> None:
    """The real slice evaluation runs (engine, greedy rollouts, eval.jsonl); only its F1 is replaced
    by ``scores[step]``, since a tiny random model scores 0 at every step and would never differ."""
    import r1searcher.rl.run as run_mod

    real = run_mod.run_heldout

    def scripted(engine, model, records, cfg, dist, run, step):
        return {**real(engine, model, records, cfg, dist, run, step), "f1": scores[step]}

    monkeypatch.setattr(run_mod, "run_heldout", scripted)


def test_the_best_step_is_kept_and_a_resume_goes_on_from_it(tmp_path, smollm_tokenizer, one_thread, monkeypatch):
    sys.path.insert(0, str(Path(__file__).parent))
    from test_trainer_loop import _steer, write_tiny_run

    from r1searcher.models.runs import resolve_model_dir
    from r1searcher.rl.trainer import train

    d = write_tiny_run(tmp_path, smollm_tokenizer, max_steps=4, eval_every=1, eval_limit=2, keep_best=True,
                       save_every=1, keep_last=0)
    _scripted_slice(monkeypatch, {0: 10.0, 1: 30.0, 2: 20.0, 3: 30.0, 4: 5.0})
    cfg = load_config(str(d / "tiny.yaml"), [f"train.eval_data={d / 'qa.jsonl'}"])
    run = train(cfg, tmp_path / "run", steer=_steer(d))  # one sample of each group searches: rewards differ
    best = read_best(run)
    assert best["step"] == 3 and best["heldout_f1"] == 30.0 and best["heldout_n"] == 2  # the tie at 1 and 3: 3
    assert best["scores"] == {"0": 10.0, "1": 30.0, "2": 20.0, "3": 30.0, "4": 5.0}  # every slice, kept or not
    kept = load_file(run / "best" / "model" / "model.safetensors")
    at3 = load_file(run / "checkpoints" / "step_00000003" / "model" / "model.safetensors")
    at4 = load_file(run / "checkpoints" / "step_00000004" / "model" / "model.safetensors")
    assert kept.keys() == at3.keys() and all(torch.equal(kept[k], at3[k]) for k in kept)
    assert any(not torch.equal(kept[k], at4[k]) for k in kept)  # the last step trained on, and was not kept
    assert resolve_model_dir(run / "best") == run / "best" / "model"  # loadable as --model RUN/best

    # A resume from step 2's checkpoint (killed after step 4): steps 3 and 4 run again, bit for bit,
    # so they score as before and step 3 is kept again, with the same weights.
    import shutil

    for step in (3, 4):
        shutil.rmtree(run / "checkpoints" / f"step_{step:08d}")
    train(cfg, tmp_path / "run", resume=True, steer=_steer(d))
    again = read_best(run)
    assert again == best
    kept_again = load_file(run / "best" / "model" / "model.safetensors")
    assert all(torch.equal(kept_again[k], at3[k]) for k in kept)
    evals = [json.loads(x)["step"] for x in (run / "eval.jsonl").read_text().splitlines()]
    assert evals == [0, 1, 2, 3, 4]
