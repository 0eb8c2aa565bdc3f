"""Checkpoints that resume bit-for-bit: atomic writes, keep-last-N, RNG states.

Layout of ``RUN/checkpoints/step_00000012/`` (the step number = optimizer steps completed)::

    model/            save_pretrained: full weights (+ tokenizer), or the LoRA adapter alone;
                      loadable as ``model.name`` / ``train.init_from`` / by ``r1searcher eval``
    optimizer.pt      optimizer state_dict
    scheduler.pt      LR-scheduler state_dict
    rng_rank{R}.pt    python, numpy, torch (and CUDA) RNG states of every rank
    state.json        step, data position, world size, anything else the trainer passes
    config.yaml       the resolved config of the run

A checkpoint is written into ``checkpoints/.tmp-…`` and renamed into place, so a directory named
``step_*`` is always complete: a run killed mid-save leaves only a ``.tmp-`` folder, removed later.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

_STEP_RE = re.compile(r"^step_(\d+)$")


# --------------------------------------------------------------------------- RNG


def rng_state() -> dict[str, Any]:
    """Every RNG the training loop touches (python, numpy, torch CPU, CUDA when present)."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# --------------------------------------------------------------------------- paths


def checkpoint_dirs(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := _STEP_RE.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    dirs = checkpoint_dirs(run_dir)
    return dirs[-1] if dirs else None


def resolve_model_dir(path: str | Path) -> Path:
    """``train.init_from`` may name a run folder (its latest checkpoint), a checkpoint folder, or
    a model folder; return the model folder."""
    p = Path(path).expanduser()
    if (p / "checkpoints").is_dir():
        latest = latest_checkpoint(p)
        if latest is None:
            raise FileNotFoundError(f"{p} is a run folder without a complete checkpoint")
        p = latest
    if (p / "model").is_dir():
        p = p / "model"
    if not ((p / "config.json").exists() or (p / "adapter_config.json").exists()):
        raise FileNotFoundError(f"{path}: no model here (expected a run, a checkpoint or a model folder)")
    return p


# --------------------------------------------------------------------------- save / load


def _unwrap(model):
    return getattr(model, "module", model)


def save_checkpoint(
    run_dir: str | Path,
    step: int,
    *,
    model,
    optimizer,
    scheduler,
    state: dict[str, Any],
    config_yaml: str,
    tokenizer=None,
    rank: int = 0,
    world_size: int = 1,
    keep_last: int = 2,
    barrier=None,
    model_state: dict | None = None,
    optimizer_state: dict | None = None,
) -> Path:
    """Write checkpoint ``step`` atomically and prune to the last ``keep_last`` (≤ 0: keep all).

    Every rank calls this (each writes its RNG state); rank 0 writes the rest and renames.
    ``barrier`` (a no-arg callable) separates the phases under data parallelism. ``model_state`` /
    ``optimizer_state``: full state dicts gathered beforehand (a sharded model: ``rl/fsdp.full_state``).
    """
    root = Path(run_dir) / "checkpoints"
    final = root / f"step_{step:08d}"
    tmp = root / f".tmp-step_{step:08d}"
    if rank == 0:
        root.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
    if barrier:
        barrier()
    torch.save(rng_state(), tmp / f"rng_rank{rank}.pt")
    if rank == 0:
        _unwrap(model).save_pretrained(tmp / "model", state_dict=model_state)  # None: the model's own
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp / "model")
        torch.save(optimizer.state_dict() if optimizer_state is None else optimizer_state, tmp / "optimizer.pt")
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        (tmp / "state.json").write_text(json.dumps({**state, "step": step, "world_size": world_size}, indent=1))
        (tmp / "config.yaml").write_text(config_yaml)
    if barrier:
        barrier()
    if rank == 0:
        if final.exists():  # re-saving a step (e.g. after a resume): swap the old one out first
            old = root / f".old-step_{step:08d}"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
        _fsync_dir(root)
        for stale in root.glob(".tmp-*"):
            if stale != tmp:
                shutil.rmtree(stale, ignore_errors=True)
        if keep_last > 0:
            for old in checkpoint_dirs(run_dir)[:-keep_last]:
                shutil.rmtree(old, ignore_errors=True)
    if barrier:
        barrier()
    return final


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load_model_weights(model, model_dir: str | Path) -> None:
    """Copy the weights saved by :func:`save_checkpoint` into ``model`` (full model or LoRA adapter)."""
    from safetensors.torch import load_file

    model = _unwrap(model)
    d = Path(model_dir)
    if (d / "adapter_config.json").exists():
        from peft import set_peft_model_state_dict

        result = set_peft_model_state_dict(model, load_file(d / "adapter_model.safetensors"))
        if getattr(result, "unexpected_keys", None):
            raise RuntimeError(f"{d}: adapter keys not in the model: {result.unexpected_keys[:5]}")
        return
    files = sorted(d.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{d}: no *.safetensors weights")
    weights: dict[str, torch.Tensor] = {}
    for f in files:
        weights.update(load_file(f))
    missing, unexpected = model.load_state_dict(weights, strict=False)
    tied = set(getattr(model, "_tied_weights_keys", None) or [])
    if isinstance(getattr(model, "_tied_weights_keys", None), dict):
        tied = set(model._tied_weights_keys)
    missing = [k for k in missing if k not in tied]
    if missing or unexpected:
        raise RuntimeError(f"{d}: weights do not match the model (missing {missing[:5]}, unexpected {unexpected[:5]})")


def load_checkpoint(path: str | Path, *, model, optimizer=None, scheduler=None, rank: int = 0) -> dict[str, Any]:
    """Restore model weights, optimizer, scheduler and this rank's RNG; return ``state.json``.
    ``model`` / ``optimizer`` None: left to the caller (a sharded model loads its weights before
    it is split, and its optimizer state by name: ``rl/fsdp.py``)."""
    p = Path(path)
    state = json.loads((p / "state.json").read_text())
    if model is not None:
        load_model_weights(model, p / "model")
    if optimizer is not None:
        optimizer.load_state_dict(torch.load(p / "optimizer.pt", map_location="cpu", weights_only=True))
    if scheduler is not None:
        scheduler.load_state_dict(torch.load(p / "scheduler.pt", weights_only=False))
    rng_file = p / f"rng_rank{rank}.pt"
    if not rng_file.exists():
        raise FileNotFoundError(f"{rng_file} missing: resume with the world size the run used ({state.get('world_size')})")
    set_rng_state(torch.load(rng_file, weights_only=False))
    return state
