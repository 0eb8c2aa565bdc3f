"""``python bench/train.py [--steps 3] [--json]`` is ``r1searcher bench train …``
(implementation: ``r1searcher/benchmarks/train.py``)."""

import sys

from r1searcher.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "train", *sys.argv[1:]]))
