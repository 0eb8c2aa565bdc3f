"""The installed wheel, as a user gets it: built from the repository, installed (not editable) into a
fresh virtual environment, and run from another folder through its ``r1searcher`` command:
``synth``, ``index build``, ``eval --method rag`` and ``train --config <a config file>`` work, and
``$R1SEARCHER_CACHE_DIR`` moves every cache (nothing is written under the default cache root, nor
into the repository).

The fresh environment does not install torch and the rest again: a ``.pth`` line appends the
project virtualenv's site-packages *after* the environment's own, as a plain path, so the editable
install's finder there is never run and ``r1searcher`` is imported from the wheel (checked).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ENV_DROPPED = ("R1SEARCHER_CACHE_DIR", "R1SEARCHER_CACHE", "R1SEARCHER_JUDGE_CACHE", "R1SEARCHER_DATA",
               "XDG_CACHE_HOME", "PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")
#: Names a run might write into the folder it runs in; none may appear in the repository.
OUTPUTS = ("world", "idx", "ev", "run", "indexes", "models", "web.sqlite", "judge.sqlite", "data")

#: A small training config file (not a named one): one step of the embedded model on the world.
TRAIN_YAML = textwrap.dedent(
    """
    model: {name: smollm2, lora: true, lora_r: 4, lora_alpha: 8, lora_layers: "top:1"}
    retrieval: {index: world/corpus.jsonl, top_k: 2, max_doc_words: 30}
    rollout: {n_samples: 2, max_searches: 1, max_new_tokens_per_turn: 12, max_response_tokens: 32, batch_size: 2}
    data: {path: world/train.jsonl, limit: 4}
    train: {max_steps: 1, questions_per_step: 1, micro_batch_size: 2, save_every: 1, keep_last: 1, progress: false}
    """
)

#: Where the installed package puts each cache (the web cache is opened, so its file is created).
SHOW_CACHES = textwrap.dedent(
    """
    import json
    from r1searcher import paths
    from r1searcher.eval import judge
    from r1searcher.models import loading as models
    from r1searcher.retrieval.web.cache import WebCache
    web = WebCache()
    web.close()
    print(json.dumps({"models": str(models.cache_root() / "models"), "judge": str(judge.default_cache_path()),
                      "web": str(web.path), "data": str(paths.data_root())}))
    """
)


def _build_wheel(dist: Path) -> Path:
    """``pip wheel`` of a copy of the repository's sources (no build isolation: nothing is downloaded)."""
    src = dist.parent / "src"
    src.mkdir()
    shutil.copytree(REPO / "r1searcher", src / "r1searcher", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (REPO / name).is_file():
            shutil.copy(REPO / name, src / name)
    subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", "wheel", "--no-deps",
                    "--no-build-isolation", "--no-index", "-w", str(dist), str(src)], check=True, cwd=dist.parent,
                   timeout=600, capture_output=True)
    [wheel] = dist.glob("r1searcher-*.whl")
    return wheel


def _fresh_venv(where: Path, wheel: Path) -> Path:
    """A new virtual environment with the wheel installed; the project's packages appended by a .pth."""
    venv.EnvBuilder(with_pip=False, symlinks=True).create(where)
    python = where / "bin" / "python"
    own = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         capture_output=True, text=True, check=True).stdout.strip()
    (Path(own) / "zz_project_packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", "--python", str(python),
                    "install", "--no-deps", "--no-index", str(wheel)], check=True, timeout=600, capture_output=True)
    return where


def _listing(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")} if root.exists() else set()


@pytest.mark.slow
def test_the_installed_wheel_runs_each_command_from_another_folder(tmp_path, embedded_model_dir):
    env_dir = _fresh_venv(tmp_path / "venv", _build_wheel(tmp_path / "dist"))
    work, home, cache = tmp_path / "elsewhere", tmp_path / "home", tmp_path / "cache"
    work.mkdir()
    home.mkdir()
    # The converted embedded model where the cache root keeps it (a link: not converted again here).
    (cache / "models").mkdir(parents=True)
    (cache / "models" / embedded_model_dir.name).symlink_to(embedded_model_dir, target_is_directory=True)
    before_model = _listing(embedded_model_dir)
    before_repo = {name for name in OUTPUTS if (REPO / name).exists()}
    env = {k: v for k, v in os.environ.items() if k not in ENV_DROPPED}
    env.update(R1SEARCHER_CACHE_DIR=str(cache), HOME=str(home), OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1",
               PATH=f"{env_dir / 'bin'}{os.pathsep}{env.get('PATH', '')}")

    def run(*args: str, timeout: int = 300) -> str:
        out = subprocess.run(list(args), cwd=work, env=env, capture_output=True, text=True, timeout=timeout)
        assert out.returncode == 0, f"{args}: {out.stderr[-3000:]}"
        return out.stdout

    where = run(str(env_dir / "bin" / "python"), "-c", "import r1searcher, sys; print(r1searcher.__file__, sys.prefix)")
    module, prefix = where.split()
    assert Path(module).is_relative_to(env_dir), f"r1searcher imported from {module}, not the installed wheel"
    assert Path(prefix) == env_dir
    cmd = shutil.which("r1searcher", path=env["PATH"])
    assert cmd is not None and Path(cmd).parent == env_dir / "bin"  # the wheel's console script

    run(cmd, "synth", "--out", "world", "--entities", "8")
    assert (work / "world" / "corpus.jsonl").is_file() and (work / "world" / "train.jsonl").is_file()
    run(cmd, "index", "build", "--corpus", "world/corpus.jsonl", "--out", "idx")
    assert (work / "idx" / "manifest.json").is_file()

    qa = work / "qa.jsonl"
    qa.write_text("".join(line + "\n" for line in (work / "world" / "train.jsonl").read_text().splitlines()[:2]))
    metrics = json.loads(run(cmd, "eval", "--method", "rag", "--data", str(qa), "--index", "idx", "--out", "ev",
                             "-k", "2", "--batch-size", "2", "--json", "rollout.max_new_tokens_per_turn=12",
                             "rollout.max_response_tokens=24"))
    assert (work / "ev" / "qa" / "predictions.jsonl").is_file() and metrics

    (work / "small.yaml").write_text(TRAIN_YAML)
    run(cmd, "train", "--config", "small.yaml", "--out", "run", timeout=600)
    log = [json.loads(line) for line in (work / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "step" in r][-1] == 1

    # Every cache went under $R1SEARCHER_CACHE_DIR: the training index among them, nothing into the
    # default root (under $HOME), the converted model left as it was, nothing into the repository.
    assert [p.name for p in (cache / "indexes").iterdir() if p.name.startswith("bm25-")]
    where = json.loads(run(str(env_dir / "bin" / "python"), "-c", SHOW_CACHES))
    assert where == {"models": str(cache / "models"), "judge": str(cache / "judge.sqlite"),
                     "web": str(cache / "web.sqlite"), "data": str(cache / "data")}
    assert not (home / ".cache" / "r1searcher").exists()
    assert _listing(embedded_model_dir) == before_model
    assert {name for name in OUTPUTS if (REPO / name).exists()} == before_repo
