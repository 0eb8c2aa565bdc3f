"""Experiment trackers: each ``log.jsonl`` record, and the step's sample trajectories, mirrored live.

``train.report_to`` names them (a list, or a comma string): ``tensorboard`` (event files in
``RUN/tensorboard``), ``wandb`` (offline with ``WANDB_MODE=offline``: files in ``RUN/wandb``, sync
later), ``trackio`` (a local SQLite store in ``$TRACKIO_DIR``, default ``~/.cache/huggingface/trackio``;
``trackio show`` opens it). ``none`` or empty: no tracker.

Design choices:
- ``log.jsonl`` stays the source of truth: a tracker only mirrors it. Each is an optional
  dependency; a missing one fails at start with the pip line to run, before any step is spent.
  A tracker that errors mid-run is switched off with one warning; training goes on.
- Every numeric field of a record is logged under its own name at the record's ``step``; nested
  dicts (``reward_reasons``) become ``reward_reasons/<reason>``; ``None`` (e.g. KL with KL off) is skipped.
- Samples (``samples.jsonl`` rows) go out as text (TensorBoard) or as a table (wandb, Trackio).
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

from r1searcher.settings.specs import TRACKERS, parse_report_to
from r1searcher.util.files import write_atomic

#: the pip package each tracker needs
PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb", "trackio": "trackio"}
PROJECT = "r1searcher"  # wandb / Trackio project (wandb: WANDB_PROJECT overrides)
SAMPLE_COLUMNS = ("step", "question", "gold", "prediction", "reward", "f1", "stop_reason", "n_searches", "text")


def flatten(rec: dict, prefix: str = "") -> dict[str, float]:
    """The numeric fields of a log record, nested dicts as ``a/b``; None and strings dropped."""
    out: dict[str, float] = {}
    for k, v in rec.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "/"))
        elif isinstance(v, bool):
            out[key] = float(v)
        elif isinstance(v, (int, float)):
            out[key] = v
    return out


def sample_rows(samples: list[dict]) -> list[list]:
    """Sample records (``samples.jsonl`` rows) as table rows of SAMPLE_COLUMNS."""
    return [[s.get("step"), s.get("question", ""), " | ".join(map(str, s.get("answers") or [])), s.get("pred") or "",
             s.get("reward"), s.get("f1"), s.get("stop_reason", ""), s.get("n_searches", 0), s.get("text", "")]
            for s in samples]


def samples_markdown(samples: list[dict]) -> str:
    """One markdown block per sample (TensorBoard's text plugin renders markdown)."""
    parts = []
    for s in samples:
        f1 = s.get("f1")
        parts.append(f"**Q:** {s.get('question', '')}  \n"
                     f"gold: {' | '.join(map(str, s.get('answers') or []))} · predicted: `{s.get('pred')}` · "
                     f"reward {s.get('reward')} · F1 {'–' if f1 is None else round(f1, 3)} · "
                     f"stop: {s.get('stop_reason')} · searches: {s.get('n_searches')}\n\n"
                     + "\n".join("    " + line for line in str(s.get("text", "")).splitlines()))
    return "\n\n---\n\n".join(parts)


def _require(name: str):
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError:
        raise RuntimeError(f"train.report_to={name} needs the {PACKAGES[name]} package: "
                           f"pip install {PACKAGES[name]} (or drop {name} from train.report_to)") from None


class TensorBoard:
    name = "tensorboard"

    def __init__(self, run: Path, config: dict, start_step: int):
        _require("tensorboard")
        from torch.utils.tensorboard import SummaryWriter

        self.dir = run / "tensorboard"
        # purge_step: a resumed run drops the events of steps after its checkpoint (as log.jsonl does)
        self.writer = SummaryWriter(str(self.dir), purge_step=start_step + 1 if start_step else None)
        if not start_step:
            self.writer.add_text("config", "    " + json.dumps(config, indent=2).replace("\n", "\n    "), 0)

    def log(self, step: int, scalars: dict, samples: list[dict]) -> None:
        for k, v in scalars.items():
            self.writer.add_scalar(k, v, step)
        if samples:
            self.writer.add_text("samples", samples_markdown(samples), step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class Wandb:
    name = "wandb"

    def __init__(self, run: Path, config: dict, start_step: int):
        self.wandb = _require("wandb")
        id_file = run / "wandb_id"  # a resumed run continues the same wandb run
        run_id = id_file.read_text().strip() if id_file.exists() else self.wandb.util.generate_id()
        write_atomic(id_file, run_id)
        self.run = self.wandb.init(project=os.environ.get("WANDB_PROJECT", PROJECT), name=run.name, id=run_id,
                                   dir=str(run), config=config, resume="allow")

    def log(self, step: int, scalars: dict, samples: list[dict]) -> None:
        data: dict = dict(scalars)
        if samples:
            data["samples"] = self.wandb.Table(columns=list(SAMPLE_COLUMNS), data=sample_rows(samples))
        self.run.log(data, step=step)

    def close(self) -> None:
        self.run.finish()


class Trackio:
    name = "trackio"

    def __init__(self, run: Path, config: dict, start_step: int):
        self.trackio = _require("trackio")
        self.run = self.trackio.init(project=PROJECT, name=run.name, config=config, resume="allow", embed=False,
                                     auto_log_cpu=False, auto_log_gpu=False)

    def log(self, step: int, scalars: dict, samples: list[dict]) -> None:
        data: dict = dict(scalars)
        if samples:
            data["samples"] = self.trackio.Table(columns=list(SAMPLE_COLUMNS), data=sample_rows(samples))
        self.run.log(data, step=step)

    def close(self) -> None:
        self.trackio.finish()  # (also clears Trackio's current run, so its exit hook does not finish it twice)


_CLASSES = {"tensorboard": TensorBoard, "wandb": Wandb, "trackio": Trackio}


class Trackers:
    """The trackers ``train.report_to`` names, opened together; a no-op when it names none."""

    def __init__(self, report_to, run: str | Path, config: dict | None = None, start_step: int = 0):
        run = Path(run)
        self.active = []
        for name in parse_report_to(report_to):
            self.active.append(_CLASSES[name](run, config or {}, start_step))

    def log(self, rec: dict, samples: list[dict] | None = None) -> None:
        """Mirror one log record (and the step's samples); a failing tracker is switched off, once."""
        step = int(rec["step"])
        scalars = flatten({k: v for k, v in rec.items() if k != "step"})
        for tr in list(self.active):
            try:
                tr.log(step, scalars, samples or [])
            except Exception as e:  # noqa: BLE001 — a tracker must never stop training; log.jsonl has it all
                warnings.warn(f"{tr.name}: logging failed at step {step} ({type(e).__name__}: {e}); "
                              f"{tr.name} is off for the rest of this run (log.jsonl is complete)", stacklevel=2)
                self.active.remove(tr)

    def close(self) -> None:
        for tr in self.active:
            try:
                tr.close()
            except Exception as e:  # noqa: BLE001
                warnings.warn(f"{tr.name}: closing failed ({type(e).__name__}: {e})", stacklevel=2)
        self.active = []
