"""The demo path end to end at toy scale: world → index → before → stage 1 → stage 2 → after → report;
run again in the same folder, it resumes within what is left of its total wall-time budget."""

from __future__ import annotations

import json

import pytest

from r1searcher import cli


def test_demo_runs_end_to_end_at_toy_scale(tmp_path, smollm_tokenizer):
    from conftest import make_tiny_causal_lm

    model_dir = tmp_path / "tiny-model"
    make_tiny_causal_lm(smollm_tokenizer, seed=0).save_pretrained(model_dir)
    smollm_tokenizer.save_pretrained(model_dir)
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--entities", "16", "--eval-questions", "3", "--eval-one-hop", "2",
            "--model", str(model_dir)]
    # groups of 2: one sample in each forced arm (the demo's quarters of 8 round to none of 2), so its one
    # stopping sample answers after the first search (the demo spreads two stops over two searches)
    small = ["rollout.n_samples=2", "train.stop_share=0.5", "train.stop_after=1", "train.explore_share=0.5",
             "train.questions_per_step=2",
             "rollout.max_new_tokens_per_turn=8",
             "rollout.max_response_tokens=24", "train.progress=false", "train.keep_best=true"]
    rc = cli.main(args + ["--minutes", "5", "train.max_steps=1", *small])
    assert rc == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["invocations"] == 1 and metrics["wall_minutes_total"] == metrics["minutes"]
    assert set(metrics["before"]) == {"naive", "rag", "oracle", "iterative"} and set(metrics["after"]) == {"rl"}
    for m in list(metrics["before"].values()) + list(metrics["after"].values()):
        assert m["n"] == 5 and {"f1", "cover_em", "searches_per_question"} <= m.keys()
        assert set(m["by_hops"]) == {"1", "2"} and m["by_hops"]["2"]["n"] == 3  # 3 two-hop + 2 one-hop questions
    for stage in (1, 2):
        log = [json.loads(x) for x in (out / f"stage{stage}" / "log.jsonl").read_text().splitlines()]
        assert [r["step"] for r in log] == [1]
    # with train.keep_best stage 2 keeps the policy whose monitor slice was best (the slice is scored
    # before the first step and after the last too), and that policy is the one evaluated after
    evals = [json.loads(x)["step"] for x in (out / "stage2" / "eval.jsonl").read_text().splitlines()]
    assert evals == [0, 1] and metrics["rl_policy"]["step"] in (0, 1)
    assert set(metrics["rl_policy"]["slice_f1_by_step"]) == {"0", "1"}
    assert json.loads((out / "after" / "rl" / "run.json").read_text())["model"].endswith("stage2/best/model")
    report = (out / "report.md").read_text()
    assert "the best on the held-out monitor slice" in report
    assert "| rl | after |" in report and "| oracle | before |" in report and "training_curves.png" in report
    assert "Goals of the demo (held-out" in report and "Goals of a trained searcher" in report
    # where it ran: the CPU, its speed flags, torch's capability, the dtype model.dtype=auto picked
    import torch

    from r1searcher.models.loading import pick_dtype

    mach = metrics["machine"]
    assert mach["device"] == "cpu" and mach["dtype_setting"] == "auto"
    assert mach["dtype"] == str(pick_dtype("auto", "cpu")).removeprefix("torch.")  # LoRA: bf16 where it is native
    assert mach["torch_cpu_capability"] == torch.backends.cpu.get_cpu_capability() and mach["cores"] >= 1
    assert f"Machine: {mach['cpu']}" in report and f"{mach['dtype']} (model.dtype=auto)" in report
    assert "What the searching policy does" in report and "| rl (after) | 2 | 3 |" in report
    # the curriculum over hop counts: stage 1 trains on 1-2 hops, stage 2 on 1-3
    hops = {s: {json.loads(x)["hops"] for x in (out / "world" / f"train_stage{s}.jsonl").read_text().splitlines()}
            for s in (1, 2)}
    assert hops[1] == {1, 2} and hops[2] == {1, 2, 3}
    # stage 2 is weighted towards 2 hops (default 1:2,2:3,3:1) and every copy keeps a unique id,
    # so the data loader keeps them all (a duplicate id would be skipped as a bad line)
    from r1searcher.data.qa import load_qa

    rows = [json.loads(x) for x in (out / "world" / "train_stage2.jsonl").read_text().splitlines()]
    base = [r for r in rows if "~" not in r["id"]]
    per_hop = {h: sum(r["hops"] == h for r in rows) / max(1, sum(r["hops"] == h for r in base)) for h in (1, 2, 3)}
    assert per_hop == {1: 2.0, 2: 3.0, 3: 1.0}
    assert len(load_qa(out / "world" / "train_stage2.jsonl")) == len(rows)
    assert (out / "training_curves.png").stat().st_size > 1000
    # The stage-2 run started from stage 1's checkpoint.
    assert "stage1" in (out / "stage2" / "config.yaml").read_text()
    # the demo's whole config is saved with it: its demo section holds the flags, each stage's the rest
    from r1searcher.config import load_config

    saved = load_config(out / "config.yaml")
    assert (saved.demo.entities, saved.demo.model, saved.demo.minutes) == (16, str(model_dir), 5.0)
    assert "train.max_steps=1" in saved.demo.overrides and saved.rollout.n_samples == 2
    stage2 = load_config(out / "stage2" / "config.yaml")
    assert stage2.reward.stage == 2 and stage2.demo == saved.demo and stage2.train.init_from.endswith("stage1")

    # Run again in the same folder (as after an interruption): the budget is for the demo's total wall
    # time, which the first run has already spent, so the resumed stages take no step although
    # max_steps now allows more; metrics.json adds this run's time to the earlier one's.
    first_s = json.loads((out / "wall_clock.json").read_text())["seconds_total"]
    assert first_s / 60 >= metrics["wall_minutes_total"] - 0.005  # written at the end, after metrics.json
    # rows of an earlier model in the demo's own after/rl folder: evaluated again, not refused or mixed
    run_json = out / "after" / "rl" / "run.json"
    recorded = json.loads(run_json.read_text())
    assert recorded["model"].endswith("model") and recorded["index"]["kind"] == "bm25"
    run_json.write_text(json.dumps({**recorded, "model": "an-earlier-checkpoint"}))
    index_made = json.loads((out / "index" / "manifest.json").read_text())["created"]
    before_rows = (out / "before" / "iterative" / "predictions.jsonl").read_bytes()
    assert cli.main(args + ["--minutes", "0.01", "train.max_steps=3", *small]) == 0
    # the same world's index is kept, so the evaluations before are resumed, not redone, and they
    # keep what they cost (the demo budgets the evaluation after by the untrained loop's seconds)
    assert json.loads((out / "index" / "manifest.json").read_text())["created"] == index_made
    assert (out / "before" / "iterative" / "predictions.jsonl").read_bytes() == before_rows
    assert json.loads(run_json.read_text())["model"] == recorded["model"]
    again = json.loads((out / "metrics.json").read_text())
    assert set(metrics) <= set(again) and set(again["before"]) == set(metrics["before"])
    for method, m in metrics["before"].items():
        assert again["before"][method]["seconds_per_question"] == m["seconds_per_question"]
    assert again["invocations"] == 2
    assert again["wall_minutes_total"] == pytest.approx(first_s / 60 + again["minutes"], abs=0.011)
    for stage in (1, 2):
        log = [json.loads(x) for x in (out / f"stage{stage}" / "log.jsonl").read_text().splitlines()]
        assert [r["step"] for r in log] == [1]
    assert "1" not in again["stage_budget_minutes"]  # stage 1 ended in the first run: not resumed


def test_hop_weights_parse_and_refuse_nonsense():
    import pytest

    from r1searcher.demo.run import parse_hop_weights

    assert parse_hop_weights("1:1, 2:3,3:0") == {1: 1, 2: 3, 3: 0}
    assert parse_hop_weights("") == {}
    for bad in ("2", "a:b", "0:1", "2:-1"):
        with pytest.raises(ValueError, match="hop"):
            parse_hop_weights(bad)


def test_behaviour_rows_count_searches_and_score_by_search_count():
    from r1searcher.report.demo import behaviour_rows

    rows = [{"hops": 2, "n_searches": 1, "stop_reason_final": "answer", "f1": 0.0},
            {"hops": 2, "n_searches": 2, "stop_reason_final": "answer", "f1": 1.0},
            {"hops": 2, "n_searches": 3, "stop_reason_final": "length", "f1": 0.0},
            {"hops": 1, "n_searches": 0, "stop_reason_final": "eos", "f1": 0.5}]
    one, two = behaviour_rows(rows)
    assert one == {"hops": 1, "n": 1, "searches_0": 1, "searches_1": 0, "searches_2plus": 0, "closed": 0,
                   "f1_one_search": None, "f1_two_plus": None}
    assert two == {"hops": 2, "n": 3, "searches_0": 0, "searches_1": 1, "searches_2plus": 2, "closed": 2,
                   "f1_one_search": 0.0, "f1_two_plus": 50.0}


def test_goal_checks_are_the_demos_and_the_searchers():
    """The numbers of the 30-minute AVX2 demo of 2026-12-06 (three stage-2 steps)."""
    from r1searcher.report.demo import goal_checks

    def m(f1, f1_1, f1_2, sq2=None):
        return {"f1": f1, "by_hops": {"1": {"f1": f1_1}, "2": {"f1": f1_2, "searches_per_question": sq2}}}

    metrics = {"before": {"rag": m(28.3, 85.0, 0.0), "iterative": m(16.7, 35.0, 7.5)},
               "after": {"rl": m(35.0, 65.0, 20.0, 1.275)}}
    checks = goal_checks(metrics)
    assert [(g, met) for g, _, met in checks] == [("demo", False), ("demo", True), ("demo", True), ("demo", False),
                                                   ("searcher", False), ("searcher", False), ("searcher", False)]
    assert checks[0][1] == "all: RL 35.0 vs max(rag 28.3, untrained iterative 16.7) + 10"
    metrics["after"]["rl"] = m(38.3, 65.0, 20.0, 1.3)  # the bounds themselves are met
    assert [met for g, _, met in goal_checks(metrics) if g == "demo"] == [True, True, True, True]
