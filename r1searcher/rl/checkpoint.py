"""Checkpoints that resume bit-for-bit: atomic writes, keep-last-N, RNG states.

Layout of ``RUN/checkpoints/step_00000012/`` (the step number = optimizer steps completed)::

    model/            save_pretrained: full weights (+ tokenizer), or the LoRA adapter alone;
                      loadable as ``model.name`` / ``train.init_from`` / by ``r1searcher eval``
    optimizer.pt      optimizer state_dict
    scheduler.pt      LR-scheduler state_dict
    rng_rank{R}.pt    python, numpy, torch (and CUDA) RNG states of every rank
    state.json        step, data position, world size, anything else the trainer passes
    config.yaml       the resolved config of the run
    manifest.json     every other file's size in bytes, and its sha256 (files up to 1 GiB)

A checkpoint is written into ``checkpoints/.tmp-…`` and renamed into place, so a directory named
``step_*`` is always complete: a run killed mid-save leaves only a ``.tmp-`` folder, removed later.
A checkpoint damaged afterwards (a copy cut short, a full disk, a stray write) is caught on load
by :func:`verify_checkpoint`, which names the bad file; :func:`resume_checkpoint` then points at the
newest intact checkpoint, or (``last_intact``) moves the damaged ones aside and takes it.
Reading the layout (which checkpoints a run has, which folder holds its weights) is
``r1searcher/models/runs.py``'s, so model loading and evaluation need nothing from ``rl/``.
"""

from __future__ import annotations

import errno
import json
import os
import random
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from r1searcher.util.fingerprint import file_sha256 as _sha256
from r1searcher.models.runs import MANIFEST, CheckpointError, checkpoint_dirs, checkpoint_state

_HASH_LIMIT = 1 << 30  # files above this get their size checked, not their sha256 (a 7B model: ~15 GB)


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
    agree: Callable[[BaseException | None], None] | None = None,
    model_state: dict | None = None,
    optimizer_state: dict | None = None,
) -> Path:
    """Write checkpoint ``step`` atomically and prune to the last ``keep_last`` (≤ 0: keep all).

    Every rank calls this (each writes its RNG state); rank 0 writes the rest and renames.
    ``agree(error_or_None)`` (under data parallelism :func:`r1searcher.rl.distributed.agree`) ends
    each phase: a collective after which every rank raises if any rank's phase failed, so no rank is
    left waiting for one that gave up. ``model_state`` / ``optimizer_state``: full state dicts
    gathered beforehand (a sharded model: ``rl/fsdp.full_state``).

    A failed save (a full disk, no permission, a file in the way) raises a one-line
    :class:`CheckpointError` naming the folder and the reason, removes the half-written
    ``.tmp-`` folder and leaves the previous checkpoints as they were.
    """
    root = Path(run_dir) / "checkpoints"
    final = root / f"step_{step:08d}"
    tmp = root / f".tmp-step_{step:08d}"

    def phase(work) -> None:
        error = None
        try:
            work()
        except Exception as e:  # noqa: BLE001 - every rank must hear of it, whatever it is
            error = _checkpoint_error(e, root, step)
        try:
            (agree or _alone)(error)
        except BaseException:
            if rank == 0:
                shutil.rmtree(tmp, ignore_errors=True)
            raise

    def prepare() -> None:
        if rank == 0:
            root.mkdir(parents=True, exist_ok=True)
            if tmp.exists():
                shutil.rmtree(tmp)
            tmp.mkdir()

    def write() -> None:
        _torch_save(rng_state(), tmp / f"rng_rank{rank}.pt")
        if rank == 0:
            _write_main_files(tmp, model, optimizer, scheduler, {**state, "step": step, "world_size": world_size},
                              config_yaml, tokenizer, model_state, optimizer_state)

    def publish() -> None:  # every rank's files are in place: record them, rename, prune
        if rank == 0:
            _publish(tmp, final, keep_last)

    phase(prepare)
    phase(write)
    phase(publish)
    return final


def _write_main_files(tmp: Path, model, optimizer, scheduler, state: dict[str, Any], config_yaml: str, tokenizer,
                      model_state: dict | None, optimizer_state: dict | None) -> None:
    """Rank 0's files of a checkpoint: weights (+ tokenizer), optimizer, scheduler, state, config."""
    save_model_folder(tmp / "model", model, tokenizer, model_state)
    _torch_save(optimizer.state_dict() if optimizer_state is None else optimizer_state, tmp / "optimizer.pt")
    _torch_save(scheduler.state_dict(), tmp / "scheduler.pt")
    (tmp / "state.json").write_text(json.dumps(state, indent=1))
    (tmp / "config.yaml").write_text(config_yaml)


def save_model_folder(path: Path, model, tokenizer=None, model_state: dict | None = None) -> None:
    """The policy as a model folder (``save_pretrained``: a LoRA adapter or the whole model, and the
    tokenizer): what ``--model`` loads. ``model_state``: a full state dict gathered beforehand (None:
    the model's own)."""
    _unwrap(model).save_pretrained(path, state_dict=model_state)
    if tokenizer is not None:
        tokenizer.save_pretrained(path)


def _publish(tmp: Path, final: Path, keep_last: int) -> None:
    """Record the files of ``tmp`` in its manifest, rename it to ``final`` (swapping out an earlier
    save of the same step), remove stale ``.tmp-`` folders and prune to the last ``keep_last``."""
    root = final.parent
    (tmp / MANIFEST).write_text(json.dumps({"files": _describe(tmp)}, indent=1))
    replace_folder(tmp, final)  # re-saving a step (e.g. after a resume) swaps the old one out
    for stale in root.glob(".tmp-*"):
        if stale != tmp:
            shutil.rmtree(stale, ignore_errors=True)
    if keep_last > 0:
        for old in checkpoint_dirs(root.parent)[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)


def replace_folder(tmp: Path, final: Path) -> None:
    """Rename the finished folder ``tmp`` to ``final``; an existing ``final`` is swapped out first
    and removed after, or put back if the rename fails (so ``final`` is always whole)."""
    if final.exists():
        old = final.parent / f".old-{final.name}"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        try:
            os.replace(tmp, final)
        except OSError:
            os.replace(old, final)  # the previous folder stays
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)
    _fsync_dir(final.parent)


def _alone(error: BaseException | None) -> None:
    if error is not None:
        raise error


def _torch_save(obj, path: Path) -> None:
    """``torch.save`` through a Python file, so that a failed write is an OSError with its errno
    (torch writing to a path reports a full disk as "[enforce fail at inline_container.cc] unexpected pos")."""
    try:
        with open(path, "wb") as f:
            torch.save(obj, f)
    except Exception as e:
        os_err = _as_os_error(e, context=True)  # torch's writer raised its RuntimeError while handling it
        if os_err is None or os_err.filename:
            raise
        raise OSError(os_err.errno, os_err.strerror, str(path)) from e


_OS_ERROR_RE = re.compile(r"\(os error (\d+)\)")  # how Rust (safetensors) reports an errno


def _as_os_error(e: BaseException, context: bool = False) -> OSError | None:
    """The OSError behind ``e``: itself, the one it was raised from (or, with ``context``, during),
    or one named in its message (safetensors: "I/O error: No space left on device (os error 28)")."""
    seen: BaseException | None = e
    for _ in range(8):  # a short chain (and never a cycle)
        if seen is None:
            break
        if isinstance(seen, OSError):
            return seen
        seen = seen.__cause__ or (seen.__context__ if context else None)
    m = _OS_ERROR_RE.search(str(e))
    if m:
        code = int(m.group(1))
        return OSError(code, os.strerror(code))
    return None


def _checkpoint_error(e: Exception, root: Path, step: int) -> Exception:
    """A one-line CheckpointError for a failed write (naming the folder, the reason and its errno
    name, and the file when known); other errors (and a peer's) are returned unchanged."""
    if isinstance(e, CheckpointError):
        return e
    os_err = _as_os_error(e)
    if os_err is None:
        return e
    reason = os_err.strerror or str(os_err)
    code = errno.errorcode.get(os_err.errno or 0)
    where = f": {os_err.filename}" if getattr(os_err, "filename", None) else ""
    kept = checkpoint_dirs(root.parent)
    hint = f"; {kept[-1].name} is kept" if kept and os_err.errno == errno.ENOSPC else ""
    err = CheckpointError(f"cannot save checkpoint step {step} in {root}: {reason}{f' ({code})' if code else ''}"
                          f"{where}{hint}")
    err.__cause__ = e
    return err


def _describe(folder: Path) -> dict[str, dict]:
    out = {}
    for f in sorted(folder.rglob("*")):
        if f.is_file() and f.name != MANIFEST:
            size = f.stat().st_size
            out[f.relative_to(folder).as_posix()] = {"bytes": size, **({"sha256": _sha256(f)} if size <= _HASH_LIMIT else {})}
    return out


def verify_checkpoint(path: str | Path) -> None:
    """Raise CheckpointError naming the first damaged or missing file of checkpoint ``path``.

    With a manifest (written at save): every file's size, and sha256 where recorded. Without one
    (a checkpoint from an older version): state.json must parse and no file may be empty.
    """
    p = Path(path)
    man = p / MANIFEST
    if man.exists():
        try:
            files = json.loads(man.read_text())["files"]
        except (ValueError, KeyError, TypeError) as e:
            raise CheckpointError(f"{man}: unreadable manifest ({type(e).__name__}): the checkpoint is damaged") from None
        for rel, want in files.items():
            f = p / rel
            if not f.is_file():
                raise CheckpointError(f"{f}: missing (the checkpoint's manifest lists it)")
            size = f.stat().st_size
            if size != want["bytes"]:
                raise CheckpointError(f"{f}: {size} bytes, {want['bytes']} when saved (truncated or overwritten)")
            if "sha256" in want and _sha256(f) != want["sha256"]:
                raise CheckpointError(f"{f}: contents differ from when it was saved (sha256 mismatch)")
        return
    checkpoint_state(p)
    for f in sorted(p.rglob("*")):
        if f.is_file() and f.stat().st_size == 0:
            raise CheckpointError(f"{f}: empty file (the checkpoint is damaged)")


def _load(f: Path, loader):
    """``loader(f)``, any failure re-raised as a CheckpointError naming ``f``."""
    try:
        return loader(f)
    except FileNotFoundError:
        raise
    except Exception as e:  # torch / safetensors raise many types for a damaged file
        msg = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        raise CheckpointError(f"{f}: cannot be read ({type(e).__name__}{': ' + msg if msg else ''}): "
                              f"the checkpoint is damaged") from e


def resume_checkpoint(run_dir: str | Path, last_intact: bool = False, move_aside: bool = True) -> Path | None:
    """The checkpoint ``--resume`` continues from: the latest, verified.

    Damaged latest: CheckpointError naming the bad file and the newest intact checkpoint; with
    ``last_intact``, the damaged ones newer than it are renamed ``checkpoints/damaged-step_…``
    (kept for inspection, never picked again; only where ``move_aside``, i.e. on rank 0) and the
    intact one is returned. None when the run has no checkpoint.
    """
    dirs = checkpoint_dirs(run_dir)
    damaged: list[tuple[Path, CheckpointError]] = []
    for d in reversed(dirs):
        try:
            verify_checkpoint(d)
        except CheckpointError as e:
            damaged.append((d, e))
            continue
        if damaged and not last_intact:
            raise CheckpointError(f"latest checkpoint {damaged[0][0].name} is damaged: {damaged[0][1]}; the newest "
                                  f"intact one is {d.name}: add --last-intact to resume from it")
        for bad, err in damaged:
            if move_aside:
                aside = bad.with_name(f"damaged-{bad.name}")
                shutil.rmtree(aside, ignore_errors=True)
                os.replace(bad, aside)
                print(f"warning: {err}; moved to {aside.name}, resuming from {d.name}", flush=True)
        return d
    if damaged:
        raise CheckpointError(f"no intact checkpoint in {Path(run_dir) / 'checkpoints'}; latest: {damaged[0][1]}")
    return None


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

        result = set_peft_model_state_dict(model, _load(d / "adapter_model.safetensors", load_file))
        if getattr(result, "unexpected_keys", None):
            raise RuntimeError(f"{d}: adapter keys not in the model: {result.unexpected_keys[:5]}")
        return
    files = sorted(d.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{d}: no *.safetensors weights")
    weights: dict[str, torch.Tensor] = {}
    for f in files:
        weights.update(_load(f, load_file))
    missing, unexpected = model.load_state_dict(weights, strict=False)
    tied = set(getattr(model, "_tied_weights_keys", None) or [])
    if isinstance(getattr(model, "_tied_weights_keys", None), dict):
        tied = set(model._tied_weights_keys)
    missing = [k for k in missing if k not in tied]
    if missing or unexpected:
        raise RuntimeError(f"{d}: weights do not match the model (missing {missing[:5]}, unexpected {unexpected[:5]})")


def load_optimizer_state(optimizer, path: Path) -> None:
    """Restore an optimizer's ``state_dict`` saved by :func:`save_checkpoint` (``optimizer.pt``)."""
    optimizer.load_state_dict(_load(path, lambda f: torch.load(f, map_location="cpu", weights_only=True)))


def load_checkpoint(path: str | Path, *, model, optimizer=None, scheduler=None, rank: int = 0) -> dict[str, Any]:
    """Restore model weights, optimizer, scheduler and this rank's RNG; return ``state.json``.
    ``model`` / ``optimizer`` None: left to the caller (a sharded model loads its weights before
    it is split, and its optimizer state by name: ``rl/fsdp.py``)."""
    p = Path(path)
    state = checkpoint_state(p)
    if model is not None:
        load_model_weights(model, p / "model")
    if optimizer is not None:
        load_optimizer_state(optimizer, p / "optimizer.pt")
    if scheduler is not None:
        scheduler.load_state_dict(_load(p / "scheduler.pt", lambda f: torch.load(f, weights_only=False)))
    rng_file = p / f"rng_rank{rank}.pt"
    if not rng_file.exists():
        raise FileNotFoundError(f"{rng_file} missing: resume with the world size the run used ({state.get('world_size')})")
    set_rng_state(_load(rng_file, lambda f: torch.load(f, weights_only=False)))
    return state
