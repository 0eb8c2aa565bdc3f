"""Two processes building the same cached index at once (the ranks of one run) both end with it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CODE = """
import sys
from r1searcher.retrieval.base import Passage
from r1searcher.retrieval.index import cached_index
ps = [Passage(str(i), f"T{i}", f"alpha beta word{i} gamma") for i in range(3000)]
idx, folder, hit = cached_index(ps, "bm25", sys.argv[1])
assert idx.search(["word7"], 1)[0][0].id == "7"
print(folder.name)
"""


def test_two_processes_building_one_cached_index(tmp_path):
    procs = [subprocess.Popen([sys.executable, "-c", CODE, str(tmp_path)], cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-2000:]
    assert len({o.strip() for o, _ in outs}) == 1
    assert sorted(x.name for x in tmp_path.iterdir()) == [outs[0][0].strip()]  # no .tmp-<pid> left
