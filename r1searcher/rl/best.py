"""The best policy so far on the held-out slice: ``train.keep_best`` (model selection on a validation set).

RL on a few hundred samples is noisy: a policy can be better at step 6 than at step 9 (one demo's
slice went 18.8 → 31.2 → 6.2 over steps 3, 6, 9). With ``train.keep_best`` every evaluation of the held-out slice (``train.eval_every``) whose F1 is at
least the best so far copies the policy's weights to ``RUN/best/``::

    RUN/best/model/       the weights (a LoRA adapter, or the whole model), loadable as --model RUN/best
    RUN/best/best.json    {"step": 6, "heldout_f1": 31.2, "heldout_n": 16, "scores": {"0": 18.8, "3": ..., "6": 31.2}}

Ties go to the later step (the more trained policy). The slice must not be the questions the run is
finally judged on (the demo's slice is its ``monitor`` split, disjoint from its evaluation). With
``eval_at_start`` the untrained policy is a candidate too, so a run whose training made the slice
worse hands back the weights it started from. A resumed run reads ``best.json`` and goes on
comparing against it. The folder is replaced atomically (written beside it, then renamed).

The choice is only as good as the slice: on the demo's 16 questions it ranked seed 0's steps 9 > 6
where its 60 held-out questions ranked them 6 > 9 (31.7 against 26.7; BENCHMARKS.md, "Choosing the
step by the slice"), so the demo leaves it off. The F1 of a right-or-wrong slice has a standard
error of up to 50/√n points: 12.5 on 16 questions, 5 on 100; give it a slice that can tell steps apart.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

BEST = "best"
RECORD = "best.json"


def read_best(run_dir: str | Path) -> dict | None:
    """``RUN/best/best.json``, or None when the run has kept no best policy (or an unreadable one)."""
    path = Path(run_dir) / BEST / RECORD
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) and "step" in rec and (path.parent / "model").is_dir() else None


def is_better(f1: float, best: dict | None) -> bool:
    """Whether a slice F1 of ``f1`` replaces ``best`` (ties go to the later step)."""
    return best is None or f1 >= float(best.get("heldout_f1", float("-inf")))


def best_model_dir(run_dir: str | Path) -> Path | None:
    """``RUN/best/model`` when the run kept a best policy, else None."""
    return Path(run_dir) / BEST / "model" if read_best(run_dir) is not None else None


def write_best(run_dir: str | Path, save_model, record: dict) -> Path:
    """Replace ``RUN/best`` with ``save_model(folder)``'s weights and ``record``; return the folder.

    ``save_model(path)`` writes a model folder at ``path`` (``save_pretrained``). Written to
    ``RUN/.tmp-best`` first and renamed, so a crash leaves the previous best as it was."""
    from r1searcher.rl.checkpoint import replace_folder

    run_dir = Path(run_dir)
    final, tmp = run_dir / BEST, run_dir / f".tmp-{BEST}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        save_model(tmp / "model")
        (tmp / RECORD).write_text(json.dumps(record, indent=1))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    replace_folder(tmp, final)
    return final
