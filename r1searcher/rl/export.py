"""Package a trained searcher as a small, portable folder (what ``checkpoints/<name>/`` holds).

    checkpoints/<name>/
        model/              the LoRA adapter (adapter_config.json names the base by its embedded name,
                            so it loads on any machine; no tokenizer: the base model's is used)
        config.yaml         the training config that made it
        log.jsonl           one line per training step (reward, searches, held-out F1, seconds)
        eval.jsonl          the held-out slice evaluated during training (when there was one)
        made_by.json        the command, the machine (CPU, torch CPU capability, threads), the date,
                            the step, the source run, and the sha256 of every file here
        demo/               from a demo folder: metrics.json, report.md and each method's predictions

A source is a training run (its latest checkpoint) or a demo folder (its stage-2 run, plus the
demo's results). The target must be absent or empty, or an earlier export (``made_by.json``):
nothing else is replaced (``outdir.py``).
"""

from __future__ import annotations

import datetime
import json
import shutil
from pathlib import Path

from r1searcher.util.fingerprint import file_sha256
from r1searcher.util.outdir import fresh_tmp, replace_dir

MADE_BY = "made_by.json"
#: Adapter files copied; the tokenizer is the base model's (Qwen's alone is 11 MB).
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
RUN_FILES = ("config.yaml", "log.jsonl", "eval.jsonl")
DEMO_FILES = ("metrics.json", "report.md")


def _is_export(p: Path) -> bool:
    return (p / MADE_BY).is_file()


def source_run(src: Path) -> tuple[Path, Path | None]:
    """``(training run, demo folder or None)`` for a run folder or a demo folder."""
    if (src / "stage2" / "checkpoints").is_dir():
        return src / "stage2", src
    if (src / "checkpoints").is_dir():
        return src, None
    raise FileNotFoundError(f"{src}: neither a training run (checkpoints/) nor a demo folder (stage2/checkpoints/)")


def export_searcher(src: str | Path, out: str | Path, command: str = "", machine: dict | None = None) -> dict:
    """Copy what ``src`` trained into ``out`` (see the module docstring); return made_by.json's content."""
    from r1searcher.models.loading import embedded_name
    from r1searcher.models.runs import checkpoint_state, latest_checkpoint

    run, demo = source_run(Path(src))
    ckpt = latest_checkpoint(run)
    if ckpt is None:
        raise FileNotFoundError(f"{run} has no complete checkpoint to export")
    model_dir = ckpt / "model"
    missing = [f for f in ADAPTER_FILES if not (model_dir / f).is_file()]
    if missing:
        raise ValueError(f"{model_dir}: not a LoRA adapter (no {', '.join(missing)}); only adapters are exported, "
                         "full models are too large to commit")
    adapter_cfg = json.loads((model_dir / "adapter_config.json").read_text())
    base = embedded_name(adapter_cfg.get("base_model_name_or_path"))
    if base is None:
        raise ValueError(f"{model_dir}: the adapter's base {adapter_cfg.get('base_model_name_or_path')!r} is not an "
                         "embedded model; a fresh clone could not load it")
    adapter_cfg["base_model_name_or_path"] = base
    tmp = fresh_tmp(out, _is_export, "an exported searcher")
    (tmp / "model").mkdir()
    (tmp / "model" / "adapter_config.json").write_text(json.dumps(adapter_cfg, indent=2))
    shutil.copy2(model_dir / "adapter_model.safetensors", tmp / "model" / "adapter_model.safetensors")
    for name in RUN_FILES:
        if (run / name).is_file():
            shutil.copy2(run / name, tmp / name)
    if demo is not None:
        (tmp / "demo").mkdir()
        for name in DEMO_FILES:
            if (demo / name).is_file():
                shutil.copy2(demo / name, tmp / "demo" / name)
        for pred in sorted(demo.glob("*/*/predictions.jsonl")):  # before/<method>/, after/rl/
            dest = tmp / "demo" / pred.parent.parent.name / pred.parent.name
            dest.mkdir(parents=True, exist_ok=True)
            shutil.copy2(pred, dest / pred.name)
    made = {
        "command": command,
        "machine": machine or {},
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "source": str(Path(src).resolve()),
        "checkpoint": ckpt.name,
        "step": checkpoint_state(ckpt).get("step"),
        "base_model": base,
        "files": {str(p.relative_to(tmp)): file_sha256(p) for p in sorted(tmp.rglob("*")) if p.is_file()},
    }
    made["bytes"] = sum(p.stat().st_size for p in tmp.rglob("*") if p.is_file())
    (tmp / MADE_BY).write_text(json.dumps(made, indent=2) + "\n")
    replace_dir(tmp, out, _is_export, "an exported searcher")
    return made
