"""Stage control and visible learning: stop_when (move on when the format holds), the held-out slice
evaluated during training, the time-budget progress bar, and the CPU dtype choice."""

from __future__ import annotations

import json
import sys

import pytest
import torch

from r1searcher.config import load_config
from r1searcher.models.loading import cpu_has_fast_bf16, pick_dtype
from r1searcher.rl.heldout import summarize_sums
from r1searcher.rl.stopping import parse_conditions, should_stop


def test_conditions_parse_and_hold_on_window_means():
    conds = parse_conditions("frac_with_search>=0.8, reward_format >= 0.4")
    assert [str(c) for c in conds] == ["frac_with_search>=0.8", "reward_format>=0.4"]
    log = [{"frac_with_search": 0.5, "reward_format": 0.5}, {"frac_with_search": 0.9, "reward_format": 0.5},
           {"frac_with_search": 0.8, "reward_format": 0.3}]
    assert should_stop(log[:1], conds, 2)[0] is False  # not enough steps yet
    assert should_stop(log[:2], conds, 2)[0] is False  # search mean 0.7
    ok, means = should_stop(log, conds, 2)  # both hold on the last two (0.85, 0.4), not on the last one
    assert ok is True and means == pytest.approx({"frac_with_search": 0.85, "reward_format": 0.4})
    assert should_stop(log, conds, 1)[0] is False
    assert should_stop(log, parse_conditions("frac_with_search>0.84"), 2)[0] is True
    assert should_stop(log, [], 2) == (False, {})


@pytest.mark.parametrize("bad", ["frac_with_search=0.8", "0.8<=x", "x >= high"])
def test_malformed_condition_is_a_clear_error(bad):
    with pytest.raises(ValueError, match="stop_when"):
        parse_conditions(bad)


def test_unknown_metric_names_the_logged_ones():
    with pytest.raises(ValueError, match="not in the log.*frac_with_search"):
        should_stop([{"frac_with_search": 1.0}], parse_conditions("frac_with_serch>=0.5"), 1)


def test_heldout_summary_is_per_hop_percentages():
    sums = {"n": 4, "f1": 2.5, "cover_em": 3, "em": 2, "searches": 6, "answered": 4,
            "h1:n": 2, "h1:f1": 2, "h1:cover_em": 2, "h1:em": 2, "h1:searches": 2, "h1:answered": 2,
            "h2:n": 2, "h2:f1": 0.5, "h2:cover_em": 1, "h2:em": 0, "h2:searches": 4, "h2:answered": 2}
    out = summarize_sums(sums)
    assert out["f1"] == 62.5 and out["cover_em"] == 75.0 and out["searches_per_question"] == 1.5
    assert out["by_hops"]["1"]["f1"] == 100.0 and out["by_hops"]["2"]["f1"] == 25.0
    assert out["by_hops"]["2"]["searches_per_question"] == 2.0


def test_dtype_follows_the_cpu():
    amx = "processor : 0\nflags : fpu sse avx2 avx512f amx_bf16 amx_tile\n"
    avx2 = "processor : 0\nflags : fpu sse avx2 fma\n"
    assert cpu_has_fast_bf16(amx) and cpu_has_fast_bf16("flags : avx512_bf16") and not cpu_has_fast_bf16(avx2)
    assert pick_dtype("fp32", "cpu") == torch.float32 and pick_dtype("bf16", "cpu") == torch.bfloat16
    assert pick_dtype("auto", "cuda") == torch.bfloat16
    expected = torch.bfloat16 if cpu_has_fast_bf16() else torch.float32
    assert pick_dtype("auto", "cpu") == expected
    assert pick_dtype("auto", "cpu", full_training=True) == torch.float32  # AdamW on bf16 weights: never


def test_bf16_base_with_fp32_lora_matches_fp32_within_tolerance(smollm_tokenizer, one_thread):
    """What ``auto`` runs on an AMX CPU (frozen base in bf16, LoRA adapters in fp32) gives the same
    token log-probs and LoRA gradients as fp32, within bf16's precision."""
    from conftest import make_tiny_causal_lm
    from r1searcher.models.loading import apply_lora
    from r1searcher.rl.logprobs import collate, token_logprobs
    from r1searcher.rollout.trajectory import Trajectory

    ids = smollm_tokenizer.encode("Where was Maren Oduya born? She was born in Kelvara.", add_special_tokens=False)
    traj = Trajectory(prompt_ids=ids[:8], response_ids=ids[8:], loss_mask=[1] * (len(ids) - 8),
                      logprobs=[0.0] * (len(ids) - 8))
    results = {}
    for dtype in (torch.float32, torch.bfloat16):
        torch.manual_seed(0)
        base = make_tiny_causal_lm(smollm_tokenizer, seed=4, hidden=64).to(dtype)
        model = apply_lora(base, r=4, alpha=8)
        for name, p in model.named_parameters():  # the same non-zero adapters in both runs
            if "lora_" in name:
                assert p.dtype == torch.float32
                with torch.no_grad():
                    p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(len(name))) * 0.05)
        batch = collate([traj], smollm_tokenizer.pad_token_id)
        lp, _ = token_logprobs(model, batch, 1.0, share_prefix=False)
        lp.sum().backward()
        grads = {n: p.grad.float().clone() for n, p in model.named_parameters() if p.grad is not None}
        results[dtype] = (lp.detach().float(), grads)
    lp32, g32 = results[torch.float32]
    lp16, g16 = results[torch.bfloat16]
    assert torch.allclose(lp16, lp32, atol=0.05, rtol=0.02), (lp16 - lp32).abs().max()
    for name in g32:
        rel = (g16[name] - g32[name]).norm() / g32[name].norm().clamp_min(1e-8)
        assert rel < 0.1, (name, float(rel))


def test_training_stops_when_the_goal_holds_and_evaluates_the_heldout_slice(tmp_path, smollm_tokenizer, one_thread):
    """stop_when ends the stage early (with a checkpoint); the held-out slice is evaluated at step 0,
    every eval_every steps and after the last one, into eval.jsonl and the log."""
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
    from test_trainer_loop import write_tiny_run

    from r1searcher.rl.trainer import train
    from r1searcher.models.runs import latest_checkpoint

    d = write_tiny_run(tmp_path, smollm_tokenizer, max_steps=6, eval_every=2, eval_limit=3,
                       stop_when="searches_per_trajectory>=0", stop_window=3)
    cfg = load_config(str(d / "tiny.yaml"), [f"train.eval_data={d / 'qa.jsonl'}"])
    run = train(cfg, tmp_path / "run")
    log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3]  # the window of 3 steps holds after step 3
    evals = [json.loads(x) for x in (run / "eval.jsonl").read_text().splitlines()]
    assert [e["step"] for e in evals] == [0, 2, 3] and all(e["n"] == 3 for e in evals)
    assert "heldout_f1" in log[1] and "heldout_f1" in log[2] and "heldout_f1" not in log[0]
    assert latest_checkpoint(run).name.endswith("3")


def test_the_slice_can_skip_the_curves_ends_and_the_budget_stops_counting_the_last_one(tmp_path, smollm_tokenizer,
                                                                                      one_thread):
    """``train.eval_at_start/eval_at_end=false`` (the demo, whose evaluations before and after stand
    at the curve's ends): the slice only every eval_every steps, and the time a step is expected to
    cost no longer includes a final slice that will not run."""
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
    from test_trainer_loop import write_tiny_run

    from r1searcher.rl.stopping import StepClock
    from r1searcher.rl.trainer import train

    d = write_tiny_run(tmp_path, smollm_tokenizer, max_steps=3, eval_every=2, eval_limit=3, eval_at_start=False,
                       eval_at_end=False)
    run = train(load_config(str(d / "tiny.yaml"), [f"train.eval_data={d / 'qa.jsonl'}"]), tmp_path / "run")
    evals = [json.loads(x) for x in (run / "eval.jsonl").read_text().splitlines()]
    assert [e["step"] for e in evals] == [2]
    log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert [("heldout_f1" in r) for r in log] == [False, True, False]
    clock = StepClock(steps=[10.0], eval_s=5.0, save_s=1.0)
    assert clock.expected_step() == 16.0
    clock.final_eval = False
    assert clock.expected_step() == 11.0


def test_progress_bar_counts_the_time_budget(tmp_path, smollm_tokenizer, one_thread, capsys):
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
    from test_trainer_loop import write_tiny_run

    from r1searcher.rl.trainer import train

    d = write_tiny_run(tmp_path, smollm_tokenizer, max_steps=1, max_minutes=30, progress=True)
    train(load_config(str(d / "tiny.yaml"), []), tmp_path / "run")
    err = capsys.readouterr().err
    assert "of budget" in err and "/1800 s" in err and "step 1" in err
    assert "1000" not in err  # not a step count against max_steps


def test_demo_skips_stage1_only_when_the_untrained_model_searches_and_answers(tmp_path):
    from r1searcher.demo.run import format_holds

    def preds(rows):
        p = tmp_path / f"p{len(list(tmp_path.iterdir()))}.jsonl"
        p.write_text("".join(json.dumps({"n_searches": s, "stop_reason_final": r}) + "\n" for s, r in rows))
        return p

    qwen_like = preds([(2, "answer")] * 41 + [(1, "length")] * 19)  # 60/60 searched, 41/60 closed
    assert format_holds(qwen_like)[0] is True
    smol_like = preds([(0, "answer")] * 50 + [(1, "answer")] * 4 + [(0, "length")] * 6)  # rarely searches
    held, why = format_holds(smol_like)
    assert held is False and "0.07 searched" in why
    assert format_holds(preds([(1, "length")] * 10))[0] is False  # searches, never closes an answer
    assert format_holds(tmp_path / "missing.jsonl") == (False, "no predictions")


def test_time_budget_decision_counts_the_next_step_before_it_starts():
    from r1searcher.rl.stopping import StepClock, out_of_time

    assert out_of_time(100.0, 50.0, 0.0) is None  # no budget
    assert out_of_time(100.0, 50.0, 150.0) is None  # ends exactly on the budget
    why = out_of_time(100.0, 50.1, 150.0)
    assert why is not None and "time budget of 2.5 min" in why and "expected for the next step" in why
    assert out_of_time(200.0, 0.0, 150.0) is not None  # already over: nothing starts
    clock = StepClock()
    for s in (10.0, 30.0, 20.0, 15.0):
        clock.add_step(s)
    assert clock.steps == [30.0, 20.0, 15.0] and clock.elapsed == 75.0
    assert clock.expected_step() == 30.0  # the slowest of the last three
    clock.add_eval(5.0)
    clock.add_save(2.0)  # the last step of a stage is followed by an evaluation and a checkpoint
    assert clock.elapsed == 82.0 and clock.expected_step() == 37.0
    assert clock.stop_before_next(119.0) is None and clock.stop_before_next(118.9) is not None
    # an evaluation and a checkpoint due after this step come before the next one
    assert clock.stop_before_next(126.0, eval_now=True, save_now=True) is None
    assert clock.stop_before_next(125.9, eval_now=True, save_now=True) is not None
    # a resume gets it back from the checkpoint; one written before the clock was kept: from the log
    assert StepClock.from_state(clock.state(), []) == clock
    old = StepClock.from_state({"elapsed": 40.0}, [{"seconds": 12.0}, {"seconds": 9.0, "heldout_seconds": 3.0}])
    assert old.elapsed == 40.0 and old.expected_step() == 15.0


def test_a_resume_that_has_no_time_for_a_step_takes_none(tmp_path, smollm_tokenizer, one_thread, capsys):
    """The budget is checked before a step starts: a resumed run whose spent time plus one step
    (recorded in its checkpoint) exceeds train.max_minutes stops at once, saying why."""
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
    from test_trainer_loop import write_tiny_run

    from r1searcher.rl.trainer import train
    from r1searcher.models.runs import latest_checkpoint

    d = write_tiny_run(tmp_path, smollm_tokenizer, max_steps=3, save_every=1)
    run = tmp_path / "run"
    # a fresh run always takes its first step (a stage leaves a checkpoint), then the budget ends it
    train(load_config(str(d / "tiny.yaml"), ["train.max_minutes=0.0001"]), run)
    log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1]
    state = json.loads((latest_checkpoint(run) / "state.json").read_text())
    budget_s = state["elapsed"] + 0.5 * log[0]["seconds"]  # time left, but not for a whole step
    capsys.readouterr()
    train(load_config(str(d / "tiny.yaml"), [f"train.max_minutes={budget_s / 60!r}"]), run, resume=True)
    assert [json.loads(x)["step"] for x in (run / "log.jsonl").read_text().splitlines()] == [1]
    assert latest_checkpoint(run).name == "step_00000001"
    out = capsys.readouterr().out
    assert "stopping before step 2: time budget of" in out and "expected for the next step" in out
    assert "time budget" in log[0]["stop_reason"]  # the log says why the first run stopped
