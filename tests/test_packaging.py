"""One cache root under one variable, and an installed wheel that works from any folder.

Every cache (converted models, built indexes, the web cache, the judge cache) lies under
``$R1SEARCHER_CACHE_DIR``; the old ``$R1SEARCHER_CACHE`` still works with a FutureWarning (shown to users).
The wheel test builds the project, installs it into a fresh folder (not the virtualenv), and runs
``synth``, ``index build`` and one tiny ``train --config tiny`` step from another folder with it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CACHE_VARS = ("R1SEARCHER_CACHE_DIR", "R1SEARCHER_CACHE", "R1SEARCHER_JUDGE_CACHE", "XDG_CACHE_HOME")

#: Prints each cache's default location as JSON (run in a fresh process: the warning is given once).
SHOW_CACHES = textwrap.dedent(
    """
    import json
    from r1searcher.eval import judge
    from r1searcher.models import loading as models
    from r1searcher.retrieval.web import cache as webcache
    print(json.dumps({"models": str(models.cache_root()), "judge": str(judge.default_cache_path()),
                      "web": str(webcache.WebCache().path)}))
    """
)


@pytest.fixture
def clean_cache_env(monkeypatch):
    for var in CACHE_VARS:
        monkeypatch.delenv(var, raising=False)


def _under(path: str | Path, root: Path) -> bool:
    return Path(path).resolve().is_relative_to(root.resolve())


def test_every_cache_lies_under_r1searcher_cache_dir(tmp_path, monkeypatch, clean_cache_env):
    from r1searcher.eval import judge
    from r1searcher.models import loading as models
    from r1searcher.config import load_config
    from r1searcher.retrieval.web.cache import WebCache
    from r1searcher.retrieval.index import open_retriever

    root = tmp_path / "cache"
    monkeypatch.setenv("R1SEARCHER_CACHE_DIR", str(root))
    # models: a converted folder in the documented layout under the root is the one used
    folder = root / "models" / models.EMBEDDED["smollm2"]["folder"]
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_text("")
    assert models.cache_root() == root
    assert models.resolve_model_path("smollm2") == folder
    # indexes: the BM25 index that training builds over a corpus file
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"p{i}", "title": t, "text": f"{t} is a city."}) + "\n"
                              for i, t in enumerate(["Paris", "Berlin", "Rome"])))
    index = open_retriever(load_config(None, [f"retrieval.index={corpus}"]))
    assert index.search(["Berlin"], 1)[0][0].title == "Berlin"
    assert [p.name for p in (root / "indexes").iterdir() if p.name.startswith("bm25-")]
    # web and judge
    web = WebCache()
    try:
        assert web.path == root / "web.sqlite" and web.path.is_file()
    finally:
        web.close()
    assert judge.default_cache_path() == root / "judge.sqlite"
    # the judge's explicit file override still wins
    monkeypatch.setenv("R1SEARCHER_JUDGE_CACHE", str(tmp_path / "j.sqlite"))
    assert judge.default_cache_path() == tmp_path / "j.sqlite"


def test_the_old_variable_is_a_deprecated_alias(tmp_path, clean_cache_env):
    env = {k: v for k, v in os.environ.items() if k not in CACHE_VARS}
    root = tmp_path / "old"
    out = subprocess.run([sys.executable, "-W", "always::FutureWarning", "-c", SHOW_CACHES],
                         env={**env, "R1SEARCHER_CACHE": str(root)}, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    where = json.loads(out.stdout)
    assert where == {"models": str(root), "judge": str(root / "judge.sqlite"), "web": str(root / "web.sqlite")}
    assert "FutureWarning" in out.stderr and "R1SEARCHER_CACHE_DIR" in out.stderr
    # both set: the documented one wins, silently
    new = tmp_path / "new"
    out = subprocess.run([sys.executable, "-W", "always::FutureWarning", "-c", SHOW_CACHES],
                         env={**env, "R1SEARCHER_CACHE": str(root), "R1SEARCHER_CACHE_DIR": str(new)},
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert set(json.loads(out.stdout).values()) == {str(new), str(new / "judge.sqlite"), str(new / "web.sqlite")}
    assert "FutureWarning" not in out.stderr


def test_no_module_finds_files_relative_to_the_source_tree():
    """An installed wheel has nothing beside the package: no configs/, no ../shared."""
    allowed: set[str] = set()
    offenders = []
    for f in sorted((REPO / "r1searcher").rglob("*.py")):
        rel = f.relative_to(REPO / "r1searcher").as_posix()
        if rel not in allowed and ("__file__" in f.read_text() or "parents[" in f.read_text()):
            offenders.append(rel)
    assert offenders == []


def _build_and_install(tmp: Path) -> Path:
    """Build a wheel from a copy of the source and install it into ``tmp/site`` (not the virtualenv)."""
    src = tmp / "src"
    src.mkdir()
    shutil.copytree(REPO / "r1searcher", src / "r1searcher", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (REPO / name).is_file():
            shutil.copy(REPO / name, src / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(tmp / "dist"), str(src)],
                   check=True, cwd=tmp, timeout=600)
    wheels = list((tmp / "dist").glob("r1searcher-*.whl"))
    assert len(wheels) == 1
    subprocess.run([*pip, "install", "--no-deps", "--no-index", "--target", str(tmp / "site"), str(wheels[0])],
                   check=True, cwd=tmp, timeout=600)
    return tmp / "site"


@pytest.mark.slow
def test_an_installed_wheel_runs_synth_index_and_train_from_another_folder(tmp_path, embedded_model_dir):
    site = _build_and_install(tmp_path)
    work, home, cache = tmp_path / "elsewhere", tmp_path / "home", tmp_path / "cache"
    work.mkdir()
    home.mkdir()
    # The converted embedded model, placed where the cache root keeps it (not converted again here).
    (cache / "models").mkdir(parents=True)
    (cache / "models" / embedded_model_dir.name).symlink_to(embedded_model_dir, target_is_directory=True)
    env = {k: v for k, v in os.environ.items() if k not in (*CACHE_VARS, "R1SEARCHER_DATA", "PYTHONPATH")}
    env.update(PYTHONPATH=str(site), R1SEARCHER_CACHE_DIR=str(cache), HOME=str(home), OMP_NUM_THREADS="1")

    def cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, *args], cwd=work, env=env, capture_output=True, text=True, timeout=timeout)

    out = cli("-c", "import r1searcher; print(r1searcher.__file__)")
    assert out.returncode == 0, out.stderr
    assert _under(out.stdout.strip(), site), f"r1searcher imported from {out.stdout.strip()}, not the installed wheel"

    out = cli("-m", "r1searcher.cli", "synth", "--out", "world", "--entities", "8")
    assert out.returncode == 0, out.stderr
    out = cli("-m", "r1searcher.cli", "index", "build", "--corpus", "world/corpus.jsonl", "--out", "idx")
    assert out.returncode == 0, out.stderr
    assert (work / "idx").is_dir()

    out = cli("-m", "r1searcher.cli", "train", "--config", "tiny", "--out", "run",
              "retrieval.index=world/corpus.jsonl", "data.path=world/train.jsonl", "data.limit=4",
              "train.max_steps=1", "train.questions_per_step=1", "train.micro_batch_size=2", "train.save_every=1",
              "train.progress=false", "rollout.n_samples=2", "rollout.max_searches=1",
              "rollout.max_new_tokens_per_turn=12", "rollout.max_response_tokens=32", timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    log = [json.loads(line) for line in (work / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "step" in r][-1] == 1
    # the caches went under $R1SEARCHER_CACHE_DIR, none into the default root under $HOME
    assert [p.name for p in (cache / "indexes").iterdir() if p.name.startswith("bm25-")]
    assert not (home / ".cache" / "r1searcher").exists()

    # the other spellings of a config: file name, the docs' path; a misspelt name lists the names.
    # (An unknown override key fails right after the config is found, before any work.)
    for spelling in ("tiny.yaml", "configs/stage1.yaml", str(work / "run" / "config.yaml")):
        out = cli("-m", "r1searcher.cli", "train", "--config", spelling, "train.max_stepz=1")
        assert out.returncode != 0 and "unknown config key 'train.max_stepz'" in out.stderr, (spelling, out.stderr)
    out = cli("-m", "r1searcher.cli", "train", "--config", "tinyy")
    assert out.returncode != 0 and "available:" in out.stderr and "tiny" in out.stderr
