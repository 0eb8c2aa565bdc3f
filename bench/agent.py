"""``python bench/agent.py [--questions 24] [--clients 8] [--json]`` is ``r1searcher bench agent …``
(implementation: ``r1searcher/benchmarks/agent.py``)."""

import sys

from r1searcher.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "agent", *sys.argv[1:]]))
