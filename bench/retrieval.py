"""``python bench/retrieval.py [--quality] [--speed] [--scale] [--sizes 10000,100000] [--json] [--data DIR]``
is ``r1searcher bench retrieval …`` (implementation: ``r1searcher/benchmarks/retrieval.py``)."""

import sys

from r1searcher.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "retrieval", *sys.argv[1:]]))
