"""The run object (``rl/run.py``): setup, resume, logging, stopping and checkpoints around the loop,
on real parts (a tiny random Llama over the SmolLM2 tokenizer, a real BM25 index, the real engine)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch

from r1searcher.config import ConfigError, TrainConfig, load_config
from r1searcher.rl.run import QuestionSampler, Run, interleave, lr_factor, strata_of
from r1searcher.models.runs import checkpoint_state, latest_checkpoint
from tests.test_trainer_loop import write_tiny_run


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, smollm_tokenizer) -> Path:
    return write_tiny_run(tmp_path_factory.mktemp("run_object"), smollm_tokenizer)


def _record(step: int, **over) -> dict:
    return {"step": step, "reward_mean": 0.25, "frac_with_search": 0.5, "f1": 0.1, "seconds": 2.0, **over}


def test_open_sets_up_a_fresh_run_and_refuses_to_overwrite_one(tiny, tmp_path):
    cfg = load_config(tiny / "tiny.yaml")
    run = Run.open(cfg, tmp_path / "run")
    assert (run.start, run.resumed, run.par.kind, run.dir) == (0, False, "none", tmp_path / "run")
    assert (tmp_path / "run" / "config.yaml").read_text() == run.config_yaml
    assert len(run.records) == 6 and run.heldout == [] and run.history == []
    assert run.pad_id == run.tokenizer.pad_token_id and run.budget_s == 0
    assert run.optimizer.param_groups[0]["lr"] == pytest.approx(cfg.train.lr * lr_factor(0, cfg.train))
    hits = run.engine.retriever.search(["capital of France"], 1)  # the config's corpus, opened as BM25
    assert hits[0][0].title == "Paris"
    first = run.next_questions()
    assert len(first) == cfg.train.questions_per_step and all(r in run.records for r in first)
    assert run.first_step_fits()  # a fresh run always takes its first step
    run.save(1)
    run.close()
    with pytest.raises(ValueError, match="already has checkpoints: pass --resume"):
        Run.open(cfg, tmp_path / "run")


def test_a_resume_restores_position_clock_and_schedule_and_drops_replayed_lines(tiny, tmp_path):
    cfg = load_config(tiny / "tiny.yaml", ["train.warmup_steps=4"])
    run = Run.open(cfg, tmp_path / "run")
    run.next_questions()
    rec = run.add_step(_record(1))
    run.optimizer.step()
    run.scheduler.step()
    run.log(rec, [], [], [], None)
    run.save(1)
    expected_next = [r.id for r in run.next_questions()]  # what step 2 would have asked
    run.log(run.add_step(_record(2)), [], [], [], None)  # a step logged after the checkpoint, then killed
    run.close()
    lines = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [1, 2] and lines[0]["elapsed"] == 2.0 and "stop_reason" not in lines[0]

    again = Run.open(cfg, tmp_path / "run", resume=True)
    assert (again.start, again.resumed) == (1, True)
    assert [r["step"] for r in again.history] == [1]  # the replayed step's line is gone
    assert [json.loads(x)["step"] for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()] == [1]
    assert again.clock.elapsed == 2.0 and again.clock.steps == [2.0]
    assert again.scheduler.last_epoch == 1
    assert again.optimizer.param_groups[0]["lr"] == pytest.approx(cfg.train.lr * lr_factor(1, cfg.train))
    assert [r.id for r in again.next_questions()] == expected_next
    state = checkpoint_state(latest_checkpoint(tmp_path / "run"))
    assert state["fsdp"] is False and state["world_size"] == 1 and state["sampler"]["pos"] == 2
    again.close()


def test_stop_reasons_goal_time_and_max_steps(tiny, tmp_path):
    cfg = load_config(tiny / "tiny.yaml", ["train.stop_when=reward_mean>=0.5", "train.stop_window=2",
                                           "train.max_minutes=1"])
    run = Run.open(cfg, tmp_path / "run")
    run.add_step(_record(1, reward_mean=0.4))
    assert run.stop_reason(1, False, False) is None  # one step: the window is not full yet
    run.add_step(_record(2, reward_mean=0.7))
    assert run.stop_reason(2, False, False) == "stop_when met (mean of the last 2 steps: reward_mean 0.550)"
    run.history[-1]["reward_mean"] = 0.5
    assert run.stop_reason(2, False, False) is None  # mean 0.45
    assert run.stop_reason(3, False, False) == "max_steps (3) reached"
    run.clock.add_step(55.0)  # 59 s of 60 spent, the slowest step 55 s: the next one would not fit
    why = run.stop_reason(2, False, False)
    assert why is not None and why.startswith("time budget of 1 min")
    run.close()


def test_log_writes_the_record_and_its_samples(tiny, tmp_path, smollm_tokenizer):
    from r1searcher.rollout.trajectory import Trajectory

    cfg = load_config(tiny / "tiny.yaml", ["train.log_samples=1"])
    run = Run.open(cfg, tmp_path / "run")
    recs = run.next_questions()
    ids = smollm_tokenizer.encode("<answer> Paris </answer>", add_special_tokens=False)
    trajs = [Trajectory(prompt_ids=[1, 2], response_ids=ids, loss_mask=[1] * len(ids), logprobs=[0.0] * len(ids),
                        group=g) for g in (0, 1)]
    rec = run.add_step(_record(1))
    run.log(rec, trajs, [1.0, 0.0], recs, "max_steps (1) reached")
    run.close()
    line = json.loads((tmp_path / "run" / "log.jsonl").read_text())
    assert line["stop_reason"] == "max_steps (1) reached" and line["expected_step_seconds"] == 2.0
    samples = [json.loads(x) for x in (tmp_path / "run" / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 1 and samples[0]["step"] == 1 and samples[0]["reward"] == 1.0


def test_a_run_without_questions_is_a_one_line_error(tiny, tmp_path):
    with pytest.raises(ValueError, match="data.path is not set"):
        Run.open(load_config(tiny / "tiny.yaml", ["data.path="]), tmp_path / "run")


def test_the_engine_times_retrieval_for_the_log(tiny, tmp_path):
    """``sec_retrieve`` comes from the rollout engine's own clock: the searches of the steered
    samples are counted in it, and generation is the rest of the rollout."""
    from r1searcher.rl.trainer import train

    sys.path.insert(0, str(tiny))
    try:
        from steer_mod import make_steer  # noqa: PLC0415
    finally:
        sys.path.remove(str(tiny))
    run = train(load_config(tiny / "tiny.yaml", ["train.max_steps=1"]), tmp_path / "run",
                steer=make_steer(str(tiny / "model")))
    rec = json.loads((run / "log.jsonl").read_text())
    assert rec["searches_per_trajectory"] > 0 and rec["sec_retrieve"] > 0
    assert rec["sec_generate"] + rec["sec_retrieve"] == pytest.approx(rec["sec_rollout"], abs=2e-4)


# --------------------------------------------------------------------------- the small pieces


def test_interleave_keeps_every_prefix_in_proportion():
    assert interleave([[0, 1], [2, 3, 4, 5]]) == [2, 0, 3, 4, 1, 5]
    pools = [list(range(0, 40)), list(range(100, 160)), list(range(200, 220))]  # 1-, 2-, 3-hop as 2:3:1
    out = interleave(pools)
    assert sorted(out) == sorted(sum(pools, []))
    for j, p in enumerate(pools):
        assert [x for x in out if x in p] == p  # each pool keeps its own order
    for i in range(1, len(out) + 1):  # every prefix within one question of each pool's share
        for p in pools:
            assert abs(sum(x in p for x in out[:i]) - i * len(p) / len(out)) < 1
    assert interleave([[7, 8, 9]]) == [7, 8, 9] and interleave([]) == []


def test_stratified_sampler_mixes_every_step_and_resumes():
    """Half the questions 1-hop, half 2-hop, listed 1-hop first: with ``strata`` every step of 2
    questions holds one of each, epoch after epoch (a plain shuffle gives same-hop steps)."""
    hops = [1] * 10 + [2] * 10
    s = QuestionSampler(20, seed=5, strata=hops)
    for _ in range(30):  # three epochs
        step = s.next(2)
        assert sorted(hops[i] for i in step) == [1, 2]
    again = QuestionSampler(20, seed=5, strata=hops)
    again.load_state_dict(s.state_dict())
    assert again.next(6) == s.next(6)
    one = QuestionSampler(20, seed=5, strata=hops)
    first, second = one.next(20), one.next(20)
    assert sorted(first) == sorted(second) == list(range(20)) and first != second  # each epoch reshuffled
    plain = QuestionSampler(20, seed=5)
    assert any(len({hops[i] for i in plain.next(2)}) == 1 for _ in range(10))
    with pytest.raises(ValueError, match="3 stratum labels for 20 questions"):
        QuestionSampler(20, strata=[1, 2, 1])


def test_strata_come_from_a_record_field_and_a_missing_field_is_an_error():
    from r1searcher.data.qa import QARecord

    recs = [QARecord(str(i), "q", ["a"], {"hops": h} if h else {}) for i, h in enumerate([1, 2, 2, None])]
    labels = strata_of(recs, "hops")
    assert labels[1] == labels[2] and len(set(labels)) == 3  # a record without the field: its own stratum
    assert strata_of(recs, "") is None
    with pytest.raises(ConfigError, match="data.stratify_by: no training record has the field 'hop'"):
        strata_of(recs, "hop")


def test_a_run_draws_its_steps_across_the_strata(tiny, tmp_path):
    d = tmp_path / "strat"
    d.mkdir()
    qa = d / "qa.jsonl"
    lines = [json.loads(x) for x in (tiny / "qa.jsonl").read_text().splitlines()]
    qa.write_text("".join(json.dumps({**r, "hops": 1 if i < 3 else 2}) + "\n" for i, r in enumerate(lines)))
    cfg = load_config(tiny / "tiny.yaml", [f"data.path={qa}", "data.stratify_by=hops"])
    run = Run.open(cfg, d / "run")
    for _ in range(6):
        assert sorted(r.meta["hops"] for r in run.next_questions()) == [1, 2]
    run.close()
    bad = load_config(tiny / "tiny.yaml", [f"data.path={qa}", "data.stratify_by=level"])
    with pytest.raises(ConfigError, match="no training record has the field 'level'"):
        Run.open(bad, d / "run2")


def test_question_sampler_walks_seeded_epochs_and_resumes():
    s = QuestionSampler(5, seed=3)
    first = s.next(5)
    assert sorted(first) == list(range(5))
    nxt = s.next(7)  # the rest of epoch 1 spans into epoch 2
    assert sorted(nxt[:5]) == list(range(5)) and s.epoch == 2 and s.pos == 2
    again = QuestionSampler(5, seed=3)
    again.load_state_dict(s.state_dict())
    assert again.next(4) == s.next(4)
    assert QuestionSampler(5, seed=3).next(5) == first  # the same seed: the same order
    assert QuestionSampler(4, shuffle=False).next(6) == [0, 1, 2, 3, 0, 1]
    with pytest.raises(ValueError, match="trained on 5 questions, the data now has 6"):
        QuestionSampler(6).load_state_dict(s.state_dict())
    with pytest.raises(ValueError, match="no training questions"):
        QuestionSampler(0)


def test_lr_factor_warms_up_then_holds_or_decays():
    t = TrainConfig(warmup_steps=3, max_steps=13, lr_schedule="cosine", min_lr_ratio=0.1)
    assert [lr_factor(s, t) for s in range(3)] == [0.25, 0.5, 0.75]
    assert lr_factor(3, t) == pytest.approx(1.0)
    assert lr_factor(8, t) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lr_factor(13, t) == pytest.approx(0.1) and lr_factor(50, t) == pytest.approx(0.1)
    const = TrainConfig(warmup_steps=0, lr_schedule="constant")
    assert lr_factor(0, const) == lr_factor(100, const) == 1.0


def test_the_scheduler_follows_lr_factor(tiny, tmp_path):
    cfg = load_config(tiny / "tiny.yaml", ["train.warmup_steps=2"])
    run = Run.open(cfg, tmp_path / "run")
    lrs = []
    for _ in range(3):
        lrs.append(run.scheduler.get_last_lr()[0])
        run.optimizer.step()
        run.scheduler.step()
    run.close()
    assert lrs == pytest.approx([cfg.train.lr * lr_factor(s, cfg.train) for s in range(3)])
    assert torch.is_tensor(next(run.model.parameters()))


def test_cosine_time_follows_the_share_of_the_budget_spent(tiny, tmp_path):
    t = TrainConfig(lr_schedule="cosine_time", max_minutes=10, min_lr_ratio=0.2)
    assert lr_factor(7, t, 0.0) == pytest.approx(1.0) and lr_factor(0, t, 1.5) == pytest.approx(0.2)
    assert lr_factor(1, t, 0.5) == pytest.approx(0.2 + 0.8 * 0.5)
    cfg = load_config(tiny / "tiny.yaml", ["train.lr_schedule=cosine_time", "train.max_minutes=1", "train.min_lr_ratio=0"])
    run = Run.open(cfg, tmp_path / "run")
    run.optimizer.step()
    assert run.step_lr(15.0) == pytest.approx(cfg.train.lr)  # the lr the step used
    run.add_step(_record(1, seconds=15.0))
    assert run.scheduler.get_last_lr()[0] == pytest.approx(cfg.train.lr * 0.5 * (1 + math.cos(math.pi * 0.25)))
    run.optimizer.step()
    run.step_lr(45.0)  # 60 of 60 s spent: the floor
    assert run.scheduler.get_last_lr()[0] == pytest.approx(0.0, abs=1e-12)
    run.close()
    no_budget = load_config(tiny / "tiny.yaml", ["train.lr_schedule=cosine_time"])  # the demo sets it per stage
    with pytest.raises(ValueError, match="train.lr_schedule: cosine_time .* train.max_minutes"):
        Run.open(no_budget, tmp_path / "run2")
