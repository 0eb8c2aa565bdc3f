"""``r1searcher export SRC --out checkpoints/NAME``: a trained searcher as a small folder to commit or share."""

from __future__ import annotations

import argparse
import shlex
import sys

HELP = "package a run's (or a demo's) LoRA adapter with its config, logs, predictions and machine (checkpoints/NAME)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", help="a training run folder, or a demo folder (its stage-2 run and its results)")
    p.add_argument("--out", required=True, help="folder to write (absent, empty or an earlier export)")
    p.add_argument("--command", dest="made_with", default="", help="the command that trained it (recorded in made_by.json)")
    p.add_argument("--max-mb", type=float, default=16.0, help="exit 1 (after writing) when the export is larger than this, the size a repository takes (0 = no limit)")


def run(args: argparse.Namespace) -> int:
    from r1searcher.benchmarks import machine_info
    from r1searcher.rl.export import export_searcher

    made = export_searcher(args.src, args.out, command=args.made_with, machine=machine_info())
    mb = made["bytes"] / 2**20
    print(f"exported step {made['step']} of {made['source']} → {args.out} ({mb:.1f} MB, base {made['base_model']})")
    print(f"try it: r1searcher ask \"…\" --model {shlex.quote(str(args.out))} --config {shlex.quote(str(args.out))}/config.yaml")
    if args.max_mb and mb > args.max_mb:
        print(f"r1searcher export: warning: {mb:.1f} MB is over --max-mb {args.max_mb:g}", file=sys.stderr)
        return 1
    return 0
