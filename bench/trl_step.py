"""``python bench/trl_step.py [--steps 2] [--json]`` is ``r1searcher bench trl …``
(implementation: ``r1searcher/benchmarks/trl.py``; not named trl.py, which would shadow the trl package)."""

import sys

from r1searcher.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "trl", *sys.argv[1:]]))
