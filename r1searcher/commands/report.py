"""``r1searcher report DIR…``: a training run's curves and summary, or eval runs side by side."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = ("report one training run (curves of reward, F1, searches, length, KL and a markdown summary), "
        "or compare eval runs (markdown tables methods × datasets, bar charts)")

#: where an eval comparison goes without --out.
EVAL_OUT = "runs/eval_report"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", metavar="DIR",
                   help="one training run folder (holds log.jsonl), or eval run folders "
                        "(DIR/<dataset>/metrics.json as `r1searcher eval --out DIR` writes, or DIR/metrics.json)")
    p.add_argument("--out", help=f"output folder (default: DIR/report for a training run, {EVAL_OUT} for eval runs)")
    p.add_argument("--window", type=int, default=None, help="training run: moving-average window (default: steps / 20)")
    p.add_argument("--label", action="append",
                   help="eval runs: a run's name in the tables, once per DIR in order "
                        "(default: its method when they differ, else its folder name)")


def _check(paths: list[Path]) -> bool:
    """True for one training run, False for eval runs; raises on a folder that is neither."""
    from r1searcher.report.evaluation import find_metrics

    for p in paths:
        if not p.is_dir():
            raise FileNotFoundError(f"{p} is not a folder")
        if not (p / "log.jsonl").exists() and not find_metrics(p):
            raise FileNotFoundError(f"{p} holds neither log.jsonl (a training run) nor metrics.json "
                                    "(an eval run: DIR/<dataset>/metrics.json or DIR/metrics.json)")
    if not any((p / "log.jsonl").exists() for p in paths):
        return False
    if len(paths) > 1:
        raise ValueError("a training run (holds log.jsonl) is reported on its own: give one folder")
    return True


def run(args: argparse.Namespace) -> int:
    paths = [Path(p) for p in args.paths]
    if _check(paths):
        from r1searcher.report.training import write_report

        if args.label:
            raise ValueError("--label names eval runs; a training run takes none")
        path = write_report(paths[0], args.out, args.window)
    else:
        from r1searcher.report.evaluation import write_eval_report

        path = write_eval_report(paths, args.out or EVAL_OUT, args.label)
    print(path.read_text())
    print(f"\nwritten: {path.parent}")
    return 0
