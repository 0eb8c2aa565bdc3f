"""Typed config: YAML, dotted overrides, clear errors for unknown keys and wrong types."""

import pytest

from r1searcher.config import ConfigError, load_config, save_config


def test_overrides_are_typed_and_floats_accept_exponent_notation(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("train:\n  lr: 1e-5\n  max_steps: 7\nrollout:\n  temperature: 1\n")
    cfg = load_config(p, ["train.lr=2e-6", "model.name=some.dir", "rollout.few_shot=false"])
    assert cfg.train.lr == 2e-6 and cfg.train.max_steps == 7
    assert cfg.rollout.temperature == 1.0 and isinstance(cfg.rollout.temperature, float)
    assert cfg.model.name == "some.dir" and cfg.rollout.few_shot is False


def test_unknown_key_names_the_closest_valid_one(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown config key 'train.lrr' \(did you mean 'train.lr'\?\)"):
        load_config(None, ["train.lrr=1"])
    p = tmp_path / "c.yaml"
    p.write_text("rollout:\n  n_sample: 4\n")
    with pytest.raises(ConfigError, match="rollout.n_samples"):
        load_config(p)


def test_wrong_types_are_errors():
    with pytest.raises(ConfigError, match="train.lr: expected float"):
        load_config(None, ["train.lr=fast"])
    with pytest.raises(ConfigError, match="train.max_steps: expected int"):
        load_config(None, ["train.max_steps=1.5"])
    with pytest.raises(ConfigError, match="key=value"):
        load_config(None, ["train.lr"])


def test_saved_config_loads_back_identically(tmp_path):
    cfg = load_config(None, ["train.lr=3e-6", "rollout.n_samples=8"])
    save_config(cfg, tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml").to_dict() == cfg.to_dict()


def test_model_path_accepts_run_checkpoint_and_adapter_folders(tmp_path):
    """`eval --model` takes what training leaves: a run, one of its checkpoints, or the model folder."""
    import pytest

    from r1searcher.models.loading import resolve_model_path

    run = tmp_path / "run"
    for step in (2, 10):
        model = run / "checkpoints" / f"step_{step:08d}" / "model"
        model.mkdir(parents=True)
        (model / "adapter_config.json").write_text("{}")
    latest = run / "checkpoints" / "step_00000010" / "model"
    assert resolve_model_path(str(run)) == latest
    assert resolve_model_path(str(latest.parent)) == latest
    assert resolve_model_path(str(latest)) == latest
    with pytest.raises(FileNotFoundError, match="neither an embedded name"):
        resolve_model_path(str(tmp_path / "nothing"))


def test_packaged_configs_are_found_by_name_with_or_without_yaml(tmp_path, monkeypatch):
    """From any folder: ``tiny``, ``tiny.yaml`` and the docs' ``configs/tiny.yaml`` name the packaged config."""
    from r1searcher.config import config_names, resolve_config

    monkeypatch.chdir(tmp_path)  # no configs/ here
    names = config_names()
    assert {"tiny", "stage1", "stage2"} <= set(names)
    packaged = resolve_config("tiny")
    assert packaged.name == "tiny.yaml" and packaged.parent.parent.name == "r1searcher"
    assert resolve_config("tiny.yaml") == packaged and resolve_config("configs/tiny.yaml") == packaged
    assert load_config("tiny").model.name == "smollm2"
    assert load_config("stage2.yaml", ["train.max_steps=1"]).train.max_steps == 1


def test_a_config_file_wins_over_the_packaged_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.yaml").write_text("train:\n  max_steps: 11\n")
    assert load_config("tiny.yaml").train.max_steps == 11  # the file here, not the packaged one
    assert load_config("tiny").train.max_steps != 11  # a bare name is the packaged config
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "mine.yaml").write_text("train:\n  max_steps: 12\n")
    assert load_config(tmp_path / "sub" / "mine.yaml").train.max_steps == 12


def test_an_unknown_config_is_a_one_line_error_listing_the_names(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError) as e:
        load_config("tinyy")
    msg = str(e.value)
    assert "\n" not in msg and "'tinyy' not found" in msg and "tiny" in msg and "stage1" in msg
    with pytest.raises(FileNotFoundError, match="not found"):
        load_config("elsewhere/tiny.yaml")  # a path that does not exist is not looked up by name
