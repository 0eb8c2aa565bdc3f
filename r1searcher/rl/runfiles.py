"""The run folder's records across resumes: the config a checkpoint fixes, and the log lines of steps
a resume replays (dropped, so each step is logged once)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

from r1searcher.config import Config
from r1searcher.util.files import read_jsonl, write_atomic

#: Keys a checkpoint fixes: a resume that changes them is refused (the weights, the adapter, the
#: data order would not match; lr, betas and weight_decay come back from the optimizer state, so a
#: new value would be silently ignored).
RESUME_FIXED = ("model.name", "model.lora", "model.lora_r", "model.lora_alpha", "model.lora_layers", "train.init_from",
                "train.fsdp", "data.path", "data.limit", "data.shuffle", "train.seed", "train.lr", "train.betas", "train.weight_decay")


def check_resume_config(run: Path, ckpt: Path, cfg: Config) -> None:
    """Compare the resumed config with the checkpoint's: refuse changes to RESUME_FIXED, warn about
    the rest and write this config to ``config.resume-step_N.yaml``; ``config.yaml`` is left as it was."""
    from r1searcher.config import diff_configs

    saved = ckpt / "config.yaml" if (ckpt / "config.yaml").exists() else run / "config.yaml"
    changes = diff_configs(yaml.safe_load(saved.read_text()) or {}, cfg.to_dict())
    if not changes:
        return
    shown = "; ".join(f"{k}: {a!r} -> {b!r}" for k, a, b in changes)
    fixed = [k for k, _, _ in changes if k in RESUME_FIXED]
    if fixed:
        raise ValueError(f"cannot resume {run} with a changed {', '.join(fixed)} (the checkpoint fixes it): {shown}; "
                         f"start a new run with --out, or train.init_from={ckpt} to start from these weights")
    new = run / f"config.resume-{ckpt.name}.yaml"
    new.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    print(f"warning: resuming with a changed config: {shown} (config.yaml keeps the original; this one is in {new.name})",
          file=sys.stderr, flush=True)


def read_log(path: Path) -> list[dict]:
    """The records of a JSONL log ([] when there is none)."""
    return read_jsonl(path, missing_ok=True, on_bad="raise").values()


def truncate_log(path: Path, step: int) -> None:
    """Drop log lines of steps after ``step`` (written after the checkpoint a resume starts from)."""
    if not path.exists():
        return
    read_jsonl(path, on_torn="repair", on_bad="raise")  # a killed run's torn last line is cut off
    keep = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line).get("step", 0) <= step]
    write_atomic(path, "".join(line + "\n" for line in keep))
