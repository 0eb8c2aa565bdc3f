"""One module resolves the cache and data roots (and the judge's cache file): what wins over what."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from r1searcher import paths


@pytest.fixture
def env(monkeypatch, tmp_path):
    for name in (paths.CACHE_ENV, paths.CACHE_ENV_DEPRECATED, paths.DATA_ENV, paths.JUDGE_CACHE_ENV, "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return monkeypatch


def test_cache_root_order(env, tmp_path):
    assert paths.cache_root() == tmp_path / "home" / ".cache" / "r1searcher"
    env.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert paths.cache_root() == tmp_path / "xdg" / "r1searcher"
    env.setenv(paths.CACHE_ENV, str(tmp_path / "c"))
    assert paths.cache_root() == tmp_path / "c"
    assert paths.cache_root(str(tmp_path / "flag")) == tmp_path / "flag"  # a flag wins
    assert paths.cache_path("models", "x") == tmp_path / "c" / "models" / "x"


def test_the_deprecated_cache_variable_still_works_with_a_warning(env, tmp_path):
    env.setattr(paths, "_warned", False)
    env.setenv(paths.CACHE_ENV_DEPRECATED, str(tmp_path / "old"))
    with pytest.warns(FutureWarning, match=paths.CACHE_ENV):
        assert paths.cache_root() == tmp_path / "old"
    env.setenv(paths.CACHE_ENV, str(tmp_path / "new"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert paths.cache_root() == tmp_path / "new"


def test_data_root_and_judge_cache_follow_the_cache_root(env, tmp_path):
    env.setenv(paths.CACHE_ENV, str(tmp_path / "c"))
    assert paths.data_env_root() is None and paths.data_root() == tmp_path / "c" / "data"
    assert paths.judge_cache_file() == tmp_path / "c" / "judge.sqlite"
    env.setenv(paths.DATA_ENV, "~/d")
    assert paths.data_root() == paths.data_env_root() == Path("~/d").expanduser()
    env.setenv(paths.JUDGE_CACHE_ENV, str(tmp_path / "j.sqlite"))
    assert paths.judge_cache_file() == tmp_path / "j.sqlite"


def test_the_config_tree_leaves_the_cache_root_to_paths(env):
    """``model.cache_dir`` '' means paths.cache_root(): the tree holds no second default."""
    from r1searcher.config import load_config

    assert load_config(None).model.cache_dir == ""
