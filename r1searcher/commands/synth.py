"""``r1searcher synth``: write a seeded fictional multi-hop world (corpus + train/held-out questions).

``--out`` is written beside (``DIR.tmp``) and replaces ``DIR`` only when ``DIR`` is absent, empty
or a world this command wrote (its four files and nothing else); any other folder is refused
before anything is generated, untouched (:mod:`r1searcher.util.outdir`).
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

HELP = "generate a fictional multi-hop QA world (corpus, train and held-out questions) that no model can know"
#: What ``World.save`` writes: a folder holding these and nothing else is a world of ours.
WORLD_FILES = frozenset({"corpus.jsonl", "train.jsonl", "heldout.jsonl", "world.json"})
_WHAT = "a world written by 'r1searcher synth'"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True,
                   help="output folder: new, empty, or a world synth wrote (replaced); anything else is refused")
    p.add_argument("--entities", type=int, default=200, help="number of people (other kinds scale with it)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--prose", choices=["plain", "varied"], default="plain",
                   help="plain: one template per passage/question kind; varied: several Wikipedia-style phrasings, "
                        "distractor sentences and question paraphrases (same facts and answers)")


def is_world_dir(d: Path) -> bool:
    """A folder ``synth`` wrote: ``world.json`` and only the world's files."""
    names = {e.name for e in d.iterdir()}
    return "world.json" in names and names <= WORLD_FILES


def run(args: argparse.Namespace) -> int:
    from r1searcher.data.synthetic import generate_world
    from r1searcher.util.outdir import check_replaceable, fresh_tmp, replace_dir

    out = Path(args.out)
    check_replaceable(out, is_world_dir, _WHAT, label="--out")  # before any work
    world = generate_world(args.entities, args.seed, prose=args.prose)
    tmp = fresh_tmp(out, is_world_dir, _WHAT)
    written = world.save(tmp)
    replace_dir(tmp, out, is_world_dir, _WHAT, label="--out")
    hops = Counter(q.hops for q in world.train + world.heldout)
    print(f"{len(world.passages)} passages, {len(world.train)} train and {len(world.heldout)} held-out questions "
          f"(hops: {dict(sorted(hops.items()))})")
    for name, path in written.items():
        print(f"  {name}: {out / Path(path).name}")
    return 0
