"""``python bench/eval.py [--questions 40] [--json]`` is ``r1searcher bench eval …``
(implementation: ``r1searcher/benchmarks/eval.py``)."""

import sys

from r1searcher.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "eval", *sys.argv[1:]]))
