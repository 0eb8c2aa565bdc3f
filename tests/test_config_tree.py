"""The one config tree: every section from YAML and overrides, one-line errors at load, frozen,
derived by override, environment variables as documented fallbacks, ``r1searcher config``."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from r1searcher import cli
from r1searcher.config import (Config, ConfigError, DemoSpec, EvalConfig, ServerLimits, WebConfig, config_fields,
                               config_names, derive, diff_configs, load_config, save_config, sections)

#: one (key, value) per section, none of them the default
ONE_PER_SECTION = {
    "model": ("model.lora_r", 8),
    "retrieval": ("retrieval.top_k", 7),
    "rollout": ("rollout.n_samples", 6),
    "reward": ("reward.format_penalty", 1.0),
    "data": ("data.on_error", "fail"),
    "train": ("train.lr", 3e-5),
    "eval": ("eval.batch_size", 3),
    "demo": ("demo.minutes", 12.5),
    "web": ("web.pages", 5),
    "serve": ("serve.max_k", 50),
    "judge": ("judge.concurrency", 3),
}


def _get(cfg: Config, key: str):
    obj = cfg
    for part in key.split("."):
        obj = getattr(obj, part)
    return obj


@pytest.fixture
def clean_env(monkeypatch):
    """No R1SEARCHER_* variable from the machine running the tests."""
    import os

    for name in list(os.environ):
        if name.startswith("R1SEARCHER_"):
            monkeypatch.delenv(name)
    return monkeypatch


def test_the_tree_has_every_section():
    assert [name for name, _ in sections()] == list(ONE_PER_SECTION)
    assert all(text for _, text in sections())


@pytest.mark.parametrize("section", list(ONE_PER_SECTION))
def test_every_section_loads_from_yaml(tmp_path, clean_env, section):
    key, value = ONE_PER_SECTION[section]
    sec, leaf = key.split(".")
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump({sec: {leaf: value}}))
    cfg = load_config(p)
    assert _get(cfg, key) == value
    assert load_config(None).to_dict()[sec][leaf] != value  # not the default by chance


@pytest.mark.parametrize("section", list(ONE_PER_SECTION))
def test_overrides_reach_every_section(clean_env, section):
    key, value = ONE_PER_SECTION[section]
    assert _get(load_config(None, [f"{key}={value}"]), key) == value
    assert _get(load_config(None, {key: value}), key) == value


def test_all_overrides_at_once_and_the_rest_stays_default(clean_env):
    cfg = load_config(None, [f"{k}={v}" for k, v in ONE_PER_SECTION.values()])
    changed = {k for k, _, _ in diff_configs(Config().to_dict(), cfg.to_dict())}
    assert changed == {k for k, _ in ONE_PER_SECTION.values()}


@pytest.mark.parametrize("name", config_names())
def test_every_packaged_config_loads_and_round_trips(tmp_path, clean_env, name):
    cfg = load_config(name)
    save_config(cfg, tmp_path / "saved.yaml")
    assert load_config(tmp_path / "saved.yaml") == cfg


# ------------------------------------------------------------------------------------------ errors
@pytest.mark.parametrize("override,key", [
    ("rollout.n_samples=0", "rollout.n_samples: must be >= 1"),
    ("rollout.top_p=0", "rollout.top_p: must be > 0"),
    ("rollout.top_p=1.5", "rollout.top_p: must be <= 1"),
    ("rollout.temperature=-1", "rollout.temperature: must be >= 0"),
    ("rollout.prompt=fancy", "rollout.prompt: must be one of 'base', 'chat'"),
    ("rollout.on_retriever_error=ignore", "rollout.on_retriever_error: must be one of"),
    ("rollout.shots=4", "rollout.shots: must be one of 1, 2, 3"),
    ("train.algo=ppo", "train.algo: must be one of 'reinforce_pp_baseline'"),
    ("train.kl_estimator=k4", "train.kl_estimator: must be one of"),
    ("train.lr_schedule=linear", "train.lr_schedule: must be one of"),
    ("data.on_error=ignore", "data.on_error: must be one of 'skip', 'fail'"),
    ("reward.stage=3", "reward.stage: must be one of 1, 2"),
    ("retrieval.top_k=0", "retrieval.top_k: must be >= 1"),
    ("serve.max_k=0", "serve.max_k: must be >= 1"),
    ("web.provider=altavista", "web.provider: unknown web search provider"),
    ("web.page_timeout_s=0", "web.page_timeout_s: must be > 0"),
    ("demo.task=trivia", "demo.task: must be one of"),
    ("demo.stage1_max_share=2", "demo.stage1_max_share: must be <= 1"),
    ("eval.batch_size=0", "eval.batch_size: must be >= 1"),
    ("train.max_steps=many", "train.max_steps: expected int, got str 'many'"),
    ("rollout.greedy=maybe", "rollout.greedy: expected bool"),
    ("web.rps=fast", "web.rps: expected float"),
])
def test_a_bad_value_fails_at_load_with_one_line_naming_the_key(clean_env, override, key):
    with pytest.raises(ConfigError) as e:
        load_config(None, [override])
    assert str(e.value).startswith(key) and "\n" not in str(e.value)


@pytest.mark.parametrize("overrides,message", [
    (["train.eval_every=3"], "train.eval_every: 3 needs train.eval_data"),
    (["train.drop_uniform_groups=true", "rollout.n_samples=1"], "train.drop_uniform_groups: with rollout.n_samples=1"),
    (["train.uniform_by=answer"], "train.uniform_by: answer takes effect only with train.drop_uniform_groups=true"),
    (["rollout.temperature=0"], "rollout.temperature: must be > 0 when sampling"),
    (["model.lora_layers=bottom:3"], "model.lora_layers: must be 'all' or 'top:N'"),
    (["model.lora_layers=top:0"], "model.lora_layers"),
    (["demo.stage2_weights=1-2"], "demo.stage2_weights: hop weights look like"),
])
def test_an_impossible_combination_fails_at_load_with_one_line(clean_env, overrides, message):
    with pytest.raises(ConfigError) as e:
        load_config(None, overrides)
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


def test_the_same_combinations_pass_when_they_can_work(clean_env):
    load_config(None, ["train.eval_every=3", "train.eval_data=held.jsonl"])
    load_config(None, ["train.drop_uniform_groups=true", "rollout.n_samples=2"])
    load_config(None, ["train.drop_uniform_groups=true", "train.uniform_by=answer"])
    load_config(None, ["rollout.temperature=0", "rollout.greedy=true"])
    load_config(None, ["model.lora_layers=top:8"])


def test_a_file_may_need_an_override_to_be_whole(tmp_path, clean_env):
    """The checks between fields run on the file and the overrides together."""
    p = tmp_path / "c.yaml"
    p.write_text("train:\n  eval_every: 3\n")
    assert load_config(p, ["train.eval_data=x.jsonl"]).train.eval_every == 3
    with pytest.raises(ConfigError, match="train.eval_every"):
        load_config(p)


def test_a_bad_value_in_a_file_names_the_file_and_the_key(tmp_path, clean_env):
    p = tmp_path / "c.yaml"
    p.write_text("rollout:\n  top_p: 2\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: rollout\.top_p: must be <= 1"):
        load_config(p)
    p.write_text("serve: 3\n")
    with pytest.raises(ConfigError, match="serve: expected a mapping of max_body_bytes"):
        load_config(p)


def test_the_cli_prints_one_line_for_a_bad_config(capsys, clean_env):
    assert cli.main(["config", "show", "train.eval_every=2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err] and "train.eval_every: 2 needs train.eval_data" in err


def test_sections_made_in_code_check_their_fields_too():
    from r1searcher.config import RewardConfig, RolloutConfig

    with pytest.raises(ConfigError, match="rollout.n_samples: must be >= 1, got 0"):
        RolloutConfig(n_samples=0)
    with pytest.raises(ConfigError, match="reward.stage"):
        RewardConfig(stage=3)
    with pytest.raises(ConfigError, match="serve.max_queries"):
        ServerLimits(max_queries=0)
    with pytest.raises(ConfigError, match="train.eval_every"):
        Config(train=dataclasses.replace(Config().train, eval_every=2))


# ------------------------------------------------------------------------------------ frozen, derive
def test_the_loaded_config_is_frozen(clean_env):
    cfg = load_config("tiny")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.train.lr = 1.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.train = None
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.web.provider = "bing"
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.serve.max_k = 1


def test_derive_makes_a_new_validated_config_and_leaves_the_old_one(clean_env):
    cfg = load_config("tiny")
    before = cfg.to_dict()
    new = derive(cfg, {"train.lr": 1e-3, "reward.stage": 1, "demo.minutes": 5.0, "serve.max_k": 9})
    assert (new.train.lr, new.reward.stage, new.demo.minutes, new.serve.max_k) == (1e-3, 1, 5.0, 9)
    assert cfg.to_dict() == before
    assert new.train.max_steps == cfg.train.max_steps and new.model == cfg.model
    assert cfg.derive(["train.lr=1e-3", "reward.stage=1", "demo.minutes=5", "serve.max_k=9"]) == new
    with pytest.raises(ConfigError, match="train.eval_every"):
        derive(cfg, {"train.eval_every": 1})
    with pytest.raises(ConfigError, match=r"unknown config key 'train.lrate'"):
        derive(cfg, {"train.lrate": 1.0})


def test_derive_keeps_values_even_when_the_environment_changes(clean_env):
    clean_env.setenv("R1SEARCHER_WEB_PROVIDER", "bing")
    cfg = load_config(None)
    assert cfg.web.provider == "bing"
    clean_env.setenv("R1SEARCHER_WEB_PROVIDER", "brave")
    assert derive(cfg, {"train.lr": 1e-4}).web.provider == "bing"


def test_no_command_assigns_to_a_config():
    """The mutation sites became derivations: assigning to a loaded config's field appears nowhere."""
    import re
    from pathlib import Path

    import r1searcher

    target = r"(cfg|scfg|config|base|c)\.(model|retrieval|rollout|reward|data|train|eval|demo|web|serve)\.[a-z_]+"
    pattern = re.compile(rf"^\s*{target}(\s*,\s*{target})*\s*(=|\+=)[^=]")
    root = Path(r1searcher.__file__).parent
    hits = [f"{p.relative_to(root)}:{i}" for p in root.rglob("*.py")
            for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert hits == []


# ----------------------------------------------------------------------------------- environment
def test_environment_variables_are_fallbacks_and_a_file_or_override_wins(tmp_path, clean_env):
    clean_env.setenv("R1SEARCHER_WEB_PROVIDER", "brave")
    clean_env.setenv("R1SEARCHER_WEB_RPS", "2.5")
    clean_env.setenv("R1SEARCHER_WEB_ALLOW_PRIVATE_URLS", "yes")
    cfg = load_config(None)
    assert (cfg.web.provider, cfg.web.rps, cfg.web.allow_private_urls) == ("brave", 2.5, True)
    assert load_config(None, ["web.provider=bing"]).web.provider == "bing"
    p = tmp_path / "c.yaml"
    p.write_text("web:\n  rps: 1\n")
    assert load_config(p).web.rps == 1.0
    assert WebConfig.from_env().provider == "brave"  # the same resolution without a tree


def test_a_bad_environment_value_names_the_variable(clean_env):
    clean_env.setenv("R1SEARCHER_WEB_RPS", "lots")
    with pytest.raises(ConfigError, match="R1SEARCHER_WEB_RPS must be a number"):
        load_config(None)
    clean_env.setenv("R1SEARCHER_WEB_RPS", "1")
    clean_env.setenv("R1SEARCHER_WEB_ALLOW_PRIVATE_URLS", "perhaps")
    with pytest.raises(ConfigError, match="R1SEARCHER_WEB_ALLOW_PRIVATE_URLS must be 1/true"):
        load_config(None)


def test_every_environment_fallback_is_documented_in_its_help():
    rows = [r for r in config_fields() if "$R1SEARCHER_" in r["help"]]
    names = {r["help"].rsplit("unset: $", 1)[1].rstrip("]") for r in rows if "unset: $" in r["help"]}
    assert {"R1SEARCHER_WEB_PROVIDER", "R1SEARCHER_WEB_API_KEY", "R1SEARCHER_SUMMARY_MODEL",
            "R1SEARCHER_CACHE_DIR"} <= names


def test_a_saved_config_masks_the_keys_and_loads_them_back_from_the_environment(tmp_path, clean_env):
    clean_env.setenv("R1SEARCHER_WEB_API_KEY", "sekret-123")
    cfg = load_config(None, ["web.summary_base_url=https://user:pw@llm.example/v1"])
    assert cfg.web.api_key == "sekret-123"
    save_config(cfg, tmp_path / "c.yaml")
    text = (tmp_path / "c.yaml").read_text()
    assert "sekret-123" not in text and "pw@" not in text and "***" in text
    back = load_config(tmp_path / "c.yaml")
    assert back.web.api_key == "sekret-123" and back.web.summary_base_url is None
    assert "sekret" not in repr(cfg)


def test_an_old_run_config_without_the_new_sections_loads_and_is_not_a_change(tmp_path, clean_env):
    old = load_config("tiny").to_dict()
    for name in ("eval", "demo", "web", "serve", "judge"):
        del old[name]
    p = tmp_path / "old.yaml"
    p.write_text(yaml.safe_dump(old))
    cfg = load_config(p)
    assert cfg.serve == ServerLimits() and cfg.demo == DemoSpec() and cfg.eval == EvalConfig()
    assert diff_configs(old, cfg.to_dict()) == []


# ------------------------------------------------------------------------------ r1searcher config
def test_every_field_has_one_help_string():
    rows = config_fields()
    assert len(rows) > 130
    assert [r["key"] for r in rows if not r["help"].strip()] == []
    assert len({r["key"] for r in rows}) == len(rows)


def test_config_command_prints_type_default_and_help_of_every_field(capsys):
    assert cli.main(["config"]) == 0
    out = capsys.readouterr().out
    for r in config_fields():
        assert f"{r['key']} ({r['type']}) = {r['default']!r}\n    {r['help']}" in out


def test_config_command_lists_the_sections_in_its_help(capsys):
    with pytest.raises(SystemExit):
        cli.main(["config", "--help"])
    out = capsys.readouterr().out
    for name, text in sections():
        assert name in out and text in out


def test_config_show_prints_the_resolved_tree(capsys, clean_env):
    assert cli.main(["config", "show", "--config", "tiny", "train.lr=1e-3", "--section", "train"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert list(shown) == ["train"] and shown["train"]["lr"] == 1e-3
    assert cli.main(["config", "show"]) == 0
    assert yaml.safe_load(capsys.readouterr().out) == Config().to_dict()
    assert cli.main(["config", "--section", "nope"]) == 2


# ----------------------------------------------------------------------- one definition of each knob
def test_the_old_names_are_the_tree_sections():
    from r1searcher.retrieval import server_limits
    from r1searcher.retrieval.web import search as web
    from r1searcher.retrieval.web.providers import PROVIDERS

    assert server_limits.ServerLimits is ServerLimits and web.WebConfig is WebConfig
    from r1searcher.settings.web import PROVIDERS as KNOWN

    assert tuple(PROVIDERS) == KNOWN
    from r1searcher.eval.baselines import METHODS
    from r1searcher.config import MASK
    from r1searcher.util.redact import MASK as REDACT_MASK
    from r1searcher.settings.evaluation import METHODS as EVAL_METHODS

    assert tuple(METHODS) == EVAL_METHODS and MASK == REDACT_MASK


def test_demo_flags_take_their_defaults_from_the_demo_section():
    import argparse

    from r1searcher.commands import demo as cmd

    p = argparse.ArgumentParser()
    cmd.add_arguments(p)
    args = p.parse_args([])
    spec = DemoSpec(**{name: getattr(args, name) for name in cmd.FLAGS.values()})
    assert spec == DemoSpec()
    assert p.parse_args(["--minutes", "7", "--task", "hotpotqa"]).minutes == 7.0


def test_serve_flags_take_their_defaults_from_the_serve_section():
    import argparse

    from r1searcher.commands import serve

    p = argparse.ArgumentParser()
    serve.add_arguments(p)
    args = p.parse_args([])
    assert args.max_queries == ServerLimits.max_queries and args.max_k == ServerLimits().max_k


def test_the_web_section_configures_the_web_retriever(tmp_path, clean_env):
    from types import SimpleNamespace

    from r1searcher.commands._common import open_retriever

    cfg = load_config(None, ["web.provider=searxng", "web.base_url=http://127.0.0.1:9", f"web.cache_dir={tmp_path}",
                             "web.pages=2"])
    r = open_retriever(SimpleNamespace(web=True), cfg)
    try:
        assert r.cfg == cfg.web and r.describe()["provider"] == "searxng"
    finally:
        r.close()


def test_every_r1searcher_variable_the_package_reads_is_a_fallback_or_listed():
    """A new ``R1SEARCHER_*`` name must be a field's fallback (shown in its help) or one of the process
    variables ``r1searcher config`` lists: no setting hides in the environment alone."""
    import re
    from pathlib import Path

    import r1searcher
    from r1searcher.config import _leaves
    from r1searcher.settings.env import PROCESS_ENV

    fallbacks = {f.metadata.get("env") for _, f, _ in _leaves(Config)} - {None}
    read = set()
    for p in Path(r1searcher.__file__).parent.rglob("*.py"):
        read |= set(re.findall(r"\bR1SEARCHER_[A-Z0-9_]*[A-Z0-9]\b", p.read_text()))
    assert read - fallbacks - set(PROCESS_ENV) == set()
    assert set(PROCESS_ENV) <= read  # and the list names only variables something reads


def test_the_judge_section_masks_its_key_and_reads_its_variables(tmp_path, clean_env, capsys):
    clean_env.setenv("R1SEARCHER_JUDGE_API_KEY", "sk-judge-9")
    clean_env.setenv("R1SEARCHER_JUDGE_MODEL", "qwen-judge")
    cfg = load_config(None, ["judge.base_url=https://u:pw@judge.example/v1", "judge.concurrency=2"])
    assert (cfg.judge.api_key, cfg.judge.model, cfg.judge.concurrency) == ("sk-judge-9", "qwen-judge", 2)
    save_config(cfg, tmp_path / "c.yaml")
    text = (tmp_path / "c.yaml").read_text()
    assert "sk-judge-9" not in text and "pw@" not in text and "sk-judge" not in repr(cfg.judge)
    assert load_config(tmp_path / "c.yaml").judge.api_key == "sk-judge-9"  # masked: back from the variable
    with pytest.raises(ConfigError, match=r"^judge.concurrency: must be >= 1, got 0$"):
        load_config(None, ["judge.concurrency=0"])
    assert cli.main(["config"]) == 0
    out = capsys.readouterr().out
    assert "judge.api_key (str | None) = None" in out and "environment (not config keys):" in out
    assert "R1SEARCHER_DATA_MIRROR" in out


@pytest.mark.parametrize("override, message", [
    ("train.stop_when=reward>>1", r"^train.stop_when: cannot read 'reward>>1'"),
    ("train.stop_when=acc>=1.2.3", r"^train.stop_when: '1.2.3' in 'acc>=1.2.3' is not a number$"),
    ("train.report_to=[tensorboard, nope]", r"^train.report_to: unknown tracker 'nope'"),
    ("train.report_to=none,wandb", r"^train.report_to: 'none' cannot be combined"),
])
def test_the_string_knobs_of_train_fail_at_load_not_at_the_first_step(clean_env, override, message):
    with pytest.raises(ConfigError, match=message):
        load_config("tiny", [override])
    assert load_config("tiny", ["train.stop_when=frac_with_search>=0.8, reward_format>=0.4",
                                "train.report_to=tensorboard"]).train.stop_when
