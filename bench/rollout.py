"""``python bench/rollout.py [--batch 8,32] [--json]`` is ``r1searcher bench rollout …``
(implementation: ``r1searcher/benchmarks/rollout.py``)."""

import sys

from r1searcher.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "rollout", *sys.argv[1:]]))
