"""Issue #16, training side: damaged checkpoints (really truncated), resume with a changed config,
one-line errors for an unwritable run folder (permissions really removed: CAP_DAC_OVERRIDE dropped
with setpriv, since the tests run as root), a full disk while saving (a real tmpfs of a few MB),
YAML syntax errors, an empty config, did-you-mean."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from r1searcher.cli import main
from r1searcher.config import ConfigError, load_config
from r1searcher.rl.checkpoint import CheckpointError, load_checkpoint, resume_checkpoint, save_checkpoint
from tests.conftest import make_tiny_causal_lm
from tests.test_trainer_loop import write_tiny_run

REPO = Path(__file__).resolve().parents[1]


def _save(run: Path, step: int, model, tok) -> Path:
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    ids = torch.randint(0, 100, (2, 6))
    model(input_ids=ids, labels=ids).loss.backward()
    opt.step()
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    return save_checkpoint(run, step, model=model, optimizer=opt, scheduler=sched, state={"sampler": {"pos": step}},
                           config_yaml="a: 1\n", tokenizer=tok, keep_last=0)


def _truncate(f: Path, keep: float = 0.5) -> None:
    data = f.read_bytes()
    f.write_bytes(data[: int(len(data) * keep)])


@pytest.mark.parametrize("damage", ["model/adapter_model.safetensors", "optimizer.pt", "rng_rank0.pt", "state.json"])
def test_damaged_latest_checkpoint_is_named_and_the_intact_one_taken_on_request(tmp_path, smollm_tokenizer, damage):
    from r1searcher.models.loading import apply_lora

    model = apply_lora(make_tiny_causal_lm(smollm_tokenizer, seed=0, hidden=32), r=4, alpha=8)
    _save(tmp_path, 2, model, smollm_tokenizer)
    bad = _save(tmp_path, 4, model, smollm_tokenizer)
    if damage == "state.json":
        (bad / damage).write_text("")
    else:
        _truncate(bad / damage)
    with pytest.raises(CheckpointError) as e:
        resume_checkpoint(tmp_path)
    msg = str(e.value)
    assert damage.split("/")[-1] in msg and "step_00000004" in msg and "step_00000002" in msg and "--last-intact" in msg
    assert "\n" not in msg
    # loading it directly also names the file (not a bare unpickling / safetensors message)
    if damage != "model/adapter_model.safetensors":
        with pytest.raises(CheckpointError, match=damage.replace(".", r"\.")):
            opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
            load_checkpoint(bad, model=None, optimizer=opt, scheduler=torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0))
    good = resume_checkpoint(tmp_path, last_intact=True)
    assert good.name == "step_00000002" and (tmp_path / "checkpoints" / "damaged-step_00000004").is_dir()
    assert resume_checkpoint(tmp_path) == good  # the damaged one is never picked again


def test_same_size_corruption_is_caught_by_checksum(tmp_path, smollm_tokenizer):
    model = make_tiny_causal_lm(smollm_tokenizer, seed=0, hidden=32)
    _save(tmp_path, 1, model, smollm_tokenizer)
    ck = _save(tmp_path, 2, model, smollm_tokenizer)
    f = ck / "scheduler.pt"
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="scheduler.pt: contents differ"):
        resume_checkpoint(tmp_path)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, smollm_tokenizer) -> Path:
    return write_tiny_run(tmp_path_factory.mktemp("rel_train"), smollm_tokenizer)


def test_train_resume_damaged_checkpoint_and_changed_config(tiny, tmp_path, capsys):
    run = tmp_path / "run"
    base = ["train", "--config", str(tiny / "tiny.yaml"), "--out", str(run)]
    assert main(base + ["train.save_every=1", "train.max_steps=2"]) == 0
    original = (run / "config.yaml").read_text()
    _truncate(run / "checkpoints" / "step_00000002" / "optimizer.pt")
    capsys.readouterr()
    assert main(base + ["--resume", "train.save_every=1", "train.max_steps=3"]) == 2
    err = capsys.readouterr().err.strip()
    assert "optimizer.pt" in err and "step_00000001" in err and "--last-intact" in err and len(err.splitlines()) == 1
    # changing what the checkpoint fixes is refused, naming the key
    assert main(base + ["--resume", "--last-intact", "train.save_every=1", "train.max_steps=3", "train.lr=0.5"]) == 2
    assert "train.lr" in capsys.readouterr().err
    assert main(base + ["--resume", "--last-intact", "train.save_every=1", "train.max_steps=3"]) == 0
    err = capsys.readouterr().err
    assert "changed config: train.max_steps: 2 -> 3" in err
    assert (run / "config.yaml").read_text() == original  # the run's record is kept
    assert yaml.safe_load((run / "config.resume-step_00000001.yaml").read_text())["train"]["max_steps"] == 3
    assert (run / "checkpoints" / "step_00000003").is_dir() and (run / "checkpoints" / "damaged-step_00000002").is_dir()


def _as_non_root(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """Run ``cmd`` as root without CAP_DAC_OVERRIDE: file permissions apply as to any user."""
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv not installed")
    pre = ["setpriv", "--inh-caps", "-dac_override", "--bounding-set", "-dac_override"] if os.geteuid() == 0 else []
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run(pre + cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow  # two CLI training subprocesses (~30 s)
def test_unwritable_run_folder_at_start_and_at_checkpoint_save(tiny, tmp_path):
    cli = [sys.executable, "-m", "r1searcher.cli", "train", "--config", str(tiny / "tiny.yaml")]
    ro = tmp_path / "ro_run"
    ro.mkdir()
    ro.chmod(0o555)
    r = _as_non_root(cli + ["--out", str(ro), "train.max_steps=1"], tmp_path)
    assert r.returncode == 2, r.stderr[-2000:]
    assert "Traceback" not in r.stderr and "Permission denied" in r.stderr and str(ro) in r.stderr
    # mid-run: the folder is writable, its checkpoints/ is not: the first save fails after step 1
    mid = tmp_path / "mid_run"
    (mid / "checkpoints").mkdir(parents=True)
    (mid / "checkpoints").chmod(0o555)
    r = _as_non_root(cli + ["--out", str(mid), "train.max_steps=2", "train.save_every=1"], tmp_path)
    assert r.returncode == 2, r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    line = r.stderr.strip().splitlines()[-1]
    assert line.startswith("r1searcher train: error: cannot save checkpoint step 1 in") and "Permission denied" in line
    assert (mid / "log.jsonl").read_text().count('"step": 1') == 1


@contextlib.contextmanager
def _small_disk(where: Path, mib: int):
    """A real file system of ``mib`` MiB at ``where`` (tmpfs; needs root): writes past it fail with ENOSPC."""
    where.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={mib}m", "tmpfs", str(where)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill (needs root / CAP_SYS_ADMIN): {r.stderr.strip()[:200]}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def _fill(disk: Path, leave: int) -> Path:
    """Fill ``disk`` up to ``leave`` free bytes with one file."""
    st = os.statvfs(disk)
    filler = disk / "filler.bin"
    with open(filler, "wb") as f:
        f.write(b"\0" * max(0, st.f_bavail * st.f_frsize - leave))
    return filler


def test_full_disk_while_saving_is_one_line_and_the_previous_checkpoint_resumes(tiny, tmp_path, capsys):
    """Step 2's checkpoint does not fit on the disk (torch.save of optimizer.pt hits ENOSPC): a one-line
    error naming the checkpoints folder and the reason, no half-written folder left, and once there is
    space again the run resumes from step 1's checkpoint."""
    with _small_disk(tmp_path / "disk", 64) as disk:  # one 41 MB checkpoint fits, two do not
        run = disk / "run"
        base = ["train", "--config", str(tiny / "tiny.yaml"), "--out", str(run)]
        over = ["train.save_every=1", "train.keep_last=2"]
        assert main(base + over + ["train.max_steps=1"]) == 0
        capsys.readouterr()
        assert main(base + ["--resume"] + over + ["train.max_steps=2"]) == 2
        err = capsys.readouterr().err.strip().splitlines()[-1]  # after the changed-config warning and tqdm
        assert err.startswith(f"r1searcher train: error: cannot save checkpoint step 2 in {run / 'checkpoints'}: ")
        assert "no space left on device" in err.lower() and "ENOSPC" in err and "enforce fail" not in err
        ckpts = run / "checkpoints"
        assert sorted(p.name for p in ckpts.iterdir()) == ["step_00000001"]  # the .tmp- folder is gone
        assert resume_checkpoint(run) == ckpts / "step_00000001"  # verified intact
        subprocess.run(["mount", "-o", "remount,size=128m", str(disk)], check=True)
        assert main(base + ["--resume"] + over + ["train.max_steps=2"]) == 0
        assert (ckpts / "step_00000002").is_dir()


def test_full_disk_while_writing_the_weights(tmp_path, smollm_tokenizer):
    """safetensors reports a full disk as its own error type ("... (os error 28)"): the same one-line
    error, the same clean-up, at the level of save_checkpoint."""
    model = make_tiny_causal_lm(smollm_tokenizer, seed=0, hidden=32)
    with _small_disk(tmp_path / "disk", 32) as disk:
        first = _save(disk, 1, model, smollm_tokenizer)
        _fill(disk, leave=256 * 1024)  # room for the RNG state, not for the weights
        with pytest.raises(CheckpointError) as e:
            _save(disk, 2, model, smollm_tokenizer)
        msg = str(e.value)
        assert "\n" not in msg and str(disk / "checkpoints") in msg and "step 2" in msg
        assert "no space left on device" in msg.lower() and "ENOSPC" in msg and "step_00000001 is kept" in msg
        assert sorted(p.name for p in (disk / "checkpoints").iterdir()) == ["step_00000001"]
        assert resume_checkpoint(disk) == first


def test_yaml_syntax_error_is_one_line_and_debug_shows_the_traceback(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  lr: 1e-6\n  max_steps: [3\n")
    assert main(["train", "--config", str(bad), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "bad.yaml: YAML syntax error at line" in err
    with pytest.raises(ConfigError):
        main(["--debug", "train", "--config", str(bad), "--out", str(tmp_path / "r")])


def test_empty_config_names_the_missing_key(tmp_path, capsys):
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert main(["train", "--config", str(empty), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "data.path is not set" in err and "''" not in err


@pytest.mark.parametrize("key,want", [("train.learning_rate", "train.lr"), ("rollout.topk", "retrieval.top_k"),
                                      ("train.max_step", "train.max_steps"), ("model.nmae", "model.name")])
def test_did_you_mean(key, want):
    with pytest.raises(ConfigError, match=rf"did you mean '{want}'\?"):
        load_config(None, [f"{key}=1"])
