"""The demo's stage configs are derived from its base config by override (no assignment), and its
flags' defaults are the ``demo`` section's."""

from __future__ import annotations

import pytest

from r1searcher.config import ConfigError, DemoSpec, diff_configs
from r1searcher.demo.run import STAGE1_DONE, demo_config, stage_budget_minutes, stage_config

DATA = {"train1": "t1.jsonl", "train2": "t2.jsonl", "monitor": "m.jsonl", "n_monitor": 8, "train": "t1.jsonl",
        "index": "idx"}


def _base(**spec):
    s = DemoSpec(model="smollm2", **spec)
    return s, demo_config(s, DATA["train"], DATA["index"])


def test_the_base_config_carries_the_spec_and_the_recipe():
    spec, cfg = _base(seed=3, overrides=("train.lr=1e-4",))
    assert cfg.demo == spec and cfg.train.seed == 3 and cfg.train.lr == 1e-4
    assert (cfg.retrieval.index, cfg.data.path, cfg.model.name) == ("idx", "t1.jsonl", "smollm2")
    assert (cfg.rollout.prompt, cfg.train.algo, cfg.model.lora_layers) == ("chat", "reinforce_pp_baseline", "top:8")


def test_stage_one_stops_when_the_format_holds():
    spec, cfg = _base()
    s1 = stage_config(cfg, spec, DATA, 1, 3.5)
    changed = {k: (a, b) for k, a, b in diff_configs(cfg.to_dict(), s1.to_dict())}
    assert changed == {"reward.stage": (2, 1), "train.max_minutes": (0.0, 3.5), "train.stop_when": ("", STAGE1_DONE),
                       "train.stop_window": (2, 1)}


def test_stage_two_starts_from_stage_one_and_watches_the_monitor_slice():
    spec, cfg = _base()
    s2 = stage_config(cfg, spec, DATA, 2, 9.0, "runs/demo/stage1")
    changed = {k: b for k, _, b in diff_configs(cfg.to_dict(), s2.to_dict())}
    assert changed == {"train.max_minutes": 9.0, "data.path": "t2.jsonl", "train.init_from": "runs/demo/stage1",
                       "train.eval_every": 3, "train.eval_data": "m.jsonl", "train.eval_limit": 16,
                       "train.eval_at_start": False, "train.eval_at_end": False}  # the demo's own evaluations are the ends
    assert cfg.train.eval_every == 0  # the base is left as it was


def test_hotpotqa_stages_keep_the_data_and_skip_the_monitor():
    spec, cfg = _base(task="hotpotqa")
    s2 = stage_config(cfg, spec, {"train": "hp.jsonl", "index": "idx"}, 2, 4.0)
    assert s2.data.path == cfg.data.path and s2.train.eval_every == 0 and s2.train.init_from == ""


def test_a_bad_override_fails_before_any_work():
    with pytest.raises(ConfigError, match="rollout.n_samples"):
        _base(overrides=("rollout.n_samples=0",))
    with pytest.raises(ConfigError, match="demo.stage2_weights"):
        _base(stage2_weights="2x3")
    with pytest.raises(ConfigError, match="demo.minutes: must be > 0"):
        DemoSpec(minutes=0)


def test_stage_budget():
    assert stage_budget_minutes(600.0, 0.0, 0.5) == 5.0
    assert stage_budget_minutes(-10.0, 0.0) == 1.0  # a stage without a checkpoint gets a minute
    assert stage_budget_minutes(-10.0, 120.0) == 2.0  # one with a checkpoint keeps what it spent
