"""The package's shape, read from its own source: layers, loops, sizes.

The design (README "Layout"): modules sit in layers, and an import may only go to the same or a lower
layer; no two modules import each other, directly or round a loop; few modules at the package root;
no file over 500 lines and no function over 80, so every piece stays small enough to read.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "r1searcher"

#: Layers, low → high. A module's layer is that of its longest matching prefix.
LAYERS: list[tuple[str, ...]] = [
    ("util", "paths", "config", "settings"),
    ("retrieval", "data"),
    ("models",),
    ("rollout",),
    ("eval",),
    ("rl",),
    ("report", "demo", "agent", "viewer", "integrations", "benchmarks"),
    ("commands",),
    ("cli", "__main__"),
]
MAX_ROOT_MODULES = 7
MAX_FILE_LINES = 500
MAX_FUNCTION_LINES = 80


def _modules() -> dict[str, Path]:
    out = {}
    for p in sorted(PKG.rglob("*.py")):
        parts = p.relative_to(PKG).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = p
    return out


def _imports(mods: dict[str, Path]) -> dict[str, set[str]]:
    """Module → the r1searcher modules it imports (anywhere in it, functions included)."""
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = []
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.startswith("r1searcher"):
                base = node.module[len("r1searcher."):] if node.module != "r1searcher" else ""
                for a in node.names:
                    sub = f"{base}.{a.name}" if base else a.name
                    targets.append(sub if sub in mods else base)
            elif isinstance(node, ast.Import):
                targets += [a.name[len("r1searcher."):] for a in node.names if a.name.startswith("r1searcher.")]
            graph[name].update(t for t in targets if t and t in mods and t != name)
    return graph


def _layer(module: str) -> int:
    best, level = -1, -1
    for i, names in enumerate(LAYERS):
        for n in names:
            if (module == n or module.startswith(n + ".")) and len(n) > best:
                best, level = len(n), i
    if level < 0:
        raise AssertionError(f"r1searcher.{module} is in no layer: add its folder to LAYERS")
    return level


def test_imports_never_run_up_the_layers():
    mods = _modules()
    wrong = [f"r1searcher.{m} → r1searcher.{t}" for m, ts in _imports(mods).items() for t in sorted(ts)
             if m and _layer(t) > _layer(m)]
    assert not wrong, "imports from a lower layer to a higher one:\n" + "\n".join(wrong)


def test_no_import_loops():
    graph = _imports(_modules())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    loops: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                loops.append(sorted(comp))

    for v in list(graph):
        if v not in index:
            visit(v)
    assert not loops, f"import loops: {loops}"


def test_few_modules_at_the_root():
    root = sorted(p.name for p in PKG.glob("*.py"))
    assert len(root) <= MAX_ROOT_MODULES, f"{len(root)} modules at the package root: {root}"


@pytest.mark.parametrize("limit", [MAX_FILE_LINES])
def test_no_file_too_long(limit):
    long = {str(p.relative_to(PKG)): n for p in PKG.rglob("*.py") if (n := len(p.read_text().splitlines())) > limit}
    assert not long, f"files over {limit} lines: {long}"


def test_no_function_too_long():
    long = []
    for p in PKG.rglob("*.py"):
        for node in ast.walk(ast.parse(p.read_text(), str(p))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{p.relative_to(PKG)}:{node.lineno} {node.name} ({n} lines)")
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(long)


def test_the_layer_rule_catches_a_wrong_way_import(tmp_path):
    """The checker itself: a model module importing the trainer is flagged."""
    assert _layer("models.loading") < _layer("rl.trainer")
    assert _layer("retrieval.web.summarize") < _layer("eval.judge")
    assert _layer("util.files") == 0 and _layer("cli") == len(LAYERS) - 1
    with pytest.raises(AssertionError, match="no layer"):
        _layer("nowhere")
