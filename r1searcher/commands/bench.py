"""``r1searcher bench NAME``: run a benchmark from ``r1searcher.benchmarks``."""

from __future__ import annotations

import argparse
import importlib
import pkgutil

import r1searcher.benchmarks as _benchmarks

HELP = "run a benchmark (retrieval, rollout, train, …) and print ratios measured in one run"


def _modules() -> dict:
    return {
        m.name: f"r1searcher.benchmarks.{m.name}"
        for m in pkgutil.iter_modules(_benchmarks.__path__)
        if not m.name.startswith("_")
    }


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="bench", metavar="NAME", required=True)
    for name, path in sorted(_modules().items()):
        mod = importlib.import_module(path)
        bp = sub.add_parser(name, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(bp)
        bp.set_defaults(_bench_run=mod.run)


def run(args: argparse.Namespace) -> int:
    return int(args._bench_run(args) or 0)
