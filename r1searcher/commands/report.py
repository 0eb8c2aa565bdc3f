"""``r1searcher report RUN_DIR``: curves (PNG) and a markdown summary of a training run."""

from __future__ import annotations

import argparse

HELP = "plot a training run's curves (reward, F1, searches, length, KL) and write a markdown summary"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", metavar="RUN_DIR", help="a training run folder (holds log.jsonl)")
    p.add_argument("--out", help="output folder (default: RUN_DIR/report)")
    p.add_argument("--window", type=int, default=None, help="moving-average window (default: steps / 20)")


def run(args: argparse.Namespace) -> int:
    from r1searcher.report import write_report

    path = write_report(args.run, args.out, args.window)
    print(path.read_text())
    print(f"\nwritten: {path.parent}")
    return 0
