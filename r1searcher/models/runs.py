"""The run folder's layout, read-only: where a run's checkpoints are, which is the latest, which
folder holds the weights to load, and what a checkpoint's ``state.json`` says.

    RUN/checkpoints/step_00000012/model/   the weights (save_pretrained), loadable by model loading
    RUN/checkpoints/step_00000012/state.json
    RUN/checkpoints/step_00000012/manifest.json

Model loading (``train.init_from``, ``r1searcher eval --model RUN``), the demo and export read a run
through this module; writing and verifying checkpoints is ``rl/checkpoint.py``'s job.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

STEP_RE = re.compile(r"^step_(\d+)$")
MANIFEST = "manifest.json"  # in each checkpoint folder: every other file's size and sha256


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be written, or is damaged; the message names the file."""


def checkpoint_dirs(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := STEP_RE.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The run's newest complete checkpoint folder, or None when it has none."""
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


def checkpoint_state(path: str | Path) -> dict:
    """A checkpoint's ``state.json`` (step, data position, the training clock, …); a missing or
    damaged one is a :class:`CheckpointError` naming the file."""
    f = Path(path) / "state.json"
    try:
        state = json.loads(f.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{f}: missing") from None
    except ValueError as e:
        raise CheckpointError(f"{f}: not valid JSON ({e}): the checkpoint is damaged") from None
    if not isinstance(state, dict) or "step" not in state:
        raise CheckpointError(f"{f}: no 'step' recorded: the checkpoint is damaged")
    return state
