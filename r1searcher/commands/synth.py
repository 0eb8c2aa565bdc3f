"""``r1searcher synth``: write a seeded fictional multi-hop world (corpus + train/held-out questions)."""

from __future__ import annotations

import argparse
from collections import Counter

HELP = "generate a fictional multi-hop QA world (corpus, train and held-out questions) that no model can know"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--entities", type=int, default=200, help="number of people (other kinds scale with it)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--prose", choices=["plain", "varied"], default="plain",
                   help="plain: one template per passage/question kind; varied: several Wikipedia-style phrasings, "
                        "distractor sentences and question paraphrases (same facts and answers)")


def run(args: argparse.Namespace) -> int:
    from r1searcher.data.synthetic import generate_world

    world = generate_world(args.entities, args.seed, prose=args.prose)
    paths = world.save(args.out)
    hops = Counter(q.hops for q in world.train + world.heldout)
    print(f"{len(world.passages)} passages, {len(world.train)} train and {len(world.heldout)} held-out questions "
          f"(hops: {dict(sorted(hops.items()))})")
    for name, path in paths.items():
        print(f"  {name}: {path}")
    return 0
