"""``r1searcher view RUN_OR_EVAL_DIR…``: one static HTML page to read trajectories in a browser.

    r1searcher view runs/demo                          # every run under it → runs/demo/viewer.html
    r1searcher view runs/eval_rag runs/eval_rl --out runs/rag_vs_rl.html   # side by side
"""

from __future__ import annotations

import argparse
import sys

HELP = ("write one self-contained HTML page (opens offline) over training samples and eval predictions: "
        "filters, sorting, text search, segments and loss mask, two eval runs side by side")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", metavar="RUN_OR_EVAL_DIR",
                   help="training run folders (samples.jsonl), eval run folders (DIR/<dataset>/predictions.jsonl), "
                        "or any folder above them (searched recursively), or those files themselves")
    p.add_argument("--out", metavar="FILE.html", help="output page (default: DIR/viewer.html for one folder, else runs/viewer.html)")
    p.add_argument("--title", help="page title")
    p.add_argument("--compress", choices=("auto", "yes", "no"), default="auto",
                   help="gzip the embedded data (auto: above 1 MB of JSON; needs a browser from 2023 on)")


def run(args: argparse.Namespace) -> int:
    from r1searcher.viewer.page import write_viewer

    compress = {"auto": None, "yes": True, "no": False}[args.compress]
    out = write_viewer(args.paths, args.out, args.title, compress,
                       warn=lambda issue: print(f"r1searcher view: warning: {issue}", file=sys.stderr))
    print(f"written: {out} ({out.stat().st_size / 1e6:.2f} MB) — open it in a browser (file://{out.resolve()})")
    return 0
