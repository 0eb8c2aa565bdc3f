"""The rows the trajectory viewer shows, read from training runs and eval runs.

A training run's ``samples.jsonl`` is written by the trainer with :func:`r1searcher.rl.samples.sample_record` (question,
gold, prediction, reward and its parts, scores, and the character spans the loss mask left
untrained). An eval run's ``predictions.jsonl`` (``r1searcher eval``) has no token ids: there the
untrained spans are the document blocks, found by their tags (``mask: "tags"``).

Every source becomes the same compact row (short keys: 10k rows are embedded in one page)::

    s source index   ds dataset   st step (training) or None   id question id (eval)
    q question   gold [aliases]   pred prediction or None   r reward or None   parts {component: value}
    f1 / em / cem scores or None   ok correct (cover-EM, the paper's accuracy) or None
    stop stop reason   ns searches   text response   um [[start, end), …] untrained chars   mask "recorded" | "tags"
    bad {field: value as text}, only on a row with values of the wrong type (see :mod:`.fields`)

A damaged line (not JSON, not an object, not UTF-8) is skipped, not the end of the file: the valid
lines before and after it are all shown, and the run's ``issues`` say which lines were skipped and
which fields held bad values, so the page (and ``r1searcher view``) can warn about them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from r1searcher.util.files import read_jsonl as read_jsonl_lines
from r1searcher.rollout.tags import DOCS_CLOSE, DOCS_OPEN
from r1searcher.viewer.fields import Fields


LISTED = 5  # line numbers named in a warning; the rest are counted


def read_jsonl(path: Path) -> tuple[list[tuple[int, dict]], list[int]]:
    """``([(line number, record)], damaged line numbers)``: every JSON-object line, and those that are not.

    Line numbers count from 1 and include blank lines, as an editor shows them. A torn last line of a
    killed run is damaged like any other.
    """
    got = read_jsonl_lines(path)
    return got.rows, [d.line for d in got.damaged]


def _lines(numbers: list[int]) -> str:
    shown = ", ".join(map(str, numbers[:LISTED]))
    more = f" and {len(numbers) - LISTED} more" if len(numbers) > LISTED else ""
    return f"line{'s' if len(numbers) > 1 else ''} {shown}{more}"


def file_issues(path: Path, damaged: list[int], bad_lines: dict[str, list[int]]) -> list[str]:
    """One-line warnings about a file's damaged lines and bad values (none when it had neither)."""
    out = []
    if damaged:
        out.append(f"{path}: {len(damaged)} damaged line{'s' if len(damaged) > 1 else ''} skipped ({_lines(damaged)})")
    if bad_lines:
        n = sum(map(len, bad_lines.values()))
        where = "; ".join(f"{k} on {_lines(v)}" for k, v in bad_lines.items())
        out.append(f"{path}: {n} bad value{'s' if n > 1 else ''} left out (wrong type: {where})")
    return out


def doc_spans(text: str) -> list[list[int]]:
    """Document blocks (open tag through close tag and the blank line after): inserted, never trained."""
    spans, pos = [], 0
    while True:
        a = text.find(DOCS_OPEN, pos)
        if a < 0:
            return spans
        b = text.find(DOCS_CLOSE, a)
        b = len(text) if b < 0 else b + len(DOCS_CLOSE)
        for _ in range(2):  # the engine inserts the block with "\n\n" after its close tag
            if text.startswith("\n", b):
                b += 1
        spans.append([a, b])
        pos = b


def _row(f: Fields, source: int, dataset: str, **row) -> dict:
    """The row, with the values its record's fields failed to hold (``bad``) when there were any."""
    if f.bad:
        row["bad"] = dict(f.bad)
    return {"s": source, "ds": dataset, **row}


def train_row(d: dict, source: int, dataset: str) -> dict:
    """The row of one ``samples.jsonl`` record (see the module docstring for the keys)."""
    f = Fields(d)
    text = f.text("text")
    um = f.spans("untrained", len(text))
    reasons = "; ".join(f.texts("reward_reasons"))
    cem = f.number("cover_em")
    return _row(f, source, dataset, st=f.count("step"), id=None, q=f.text("question"), gold=f.texts("answers"),
                pred=f.text("pred", None), r=f.number("reward"),
                parts={**f.parts("reward_parts"), **({"why": reasons} if reasons else {})},
                f1=f.number("f1"), em=f.number("em"), cem=cem, ok=bool(cem) if f.has("answers") else None,
                stop=f.text("stop_reason", "?"), ns=f.count("n_searches", 0), text=text,
                um=um if um is not None else doc_spans(text), mask="recorded" if um is not None else "tags")


def eval_row(d: dict, source: int, dataset: str) -> dict:
    """The row of one ``predictions.jsonl`` record (``r1searcher eval``); its untrained spans are the document blocks."""
    f = Fields(d)
    text = f.text("gen_text_store")
    gold = f.texts("answers") or [g for g in f.texts("answer") if g]
    cem = f.number("cover_em")
    return _row(f, source, dataset, st=None, id=f.text("id", None), q=f.text("question"), gold=gold,
                pred=f.text("pred_ans", None) or None, r=None, parts={},
                f1=f.number("f1"), em=f.number("em"), cem=cem, ok=bool(cem) if f.has("cover_em") else None,
                stop=f.text("stop_reason_final", "?"), ns=f.count("n_searches", 0), text=text, um=doc_spans(text),
                mask="tags")


def _train_dataset(run: Path) -> str:
    cfg = run / "config.yaml"
    if cfg.exists():
        import yaml

        path = ((yaml.safe_load(cfg.read_text()) or {}).get("data") or {}).get("path")
        if path:
            return Path(str(path)).stem
    return "train"


def find_sources(paths: list[str | Path]) -> list[tuple[str, str, Path]]:
    """``(kind, label, file)`` for every training run (samples.jsonl) and eval dataset (predictions.jsonl)
    in or under ``paths`` (checkpoints skipped); labels are paths relative to the folder given."""
    found = []
    for root in map(Path, paths):
        if not root.exists():
            raise FileNotFoundError(f"{root} does not exist")
        files = [root] if root.is_file() and root.name in ("samples.jsonl", "predictions.jsonl") else []
        if root.is_dir():
            for dirpath, dirnames, filenames in os.walk(root):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith(("checkpoint", "step_", ".")))
                files += [Path(dirpath) / f for f in sorted(filenames) if f in ("samples.jsonl", "predictions.jsonl")]
        base = root.parent if root.is_dir() else root.parent.parent
        for f in files:
            kind = "train" if f.name == "samples.jsonl" else "eval"
            folder = f.parent
            if kind == "eval" and folder != base and _is_dataset_folder(folder):
                folder = folder.parent  # EVAL_DIR/<dataset>/predictions.jsonl: the run is EVAL_DIR
            label = str(folder.relative_to(base)) if folder != base else folder.resolve().name
            found.append((kind, label, f))
    if not found:
        raise FileNotFoundError(f"no samples.jsonl (training run) or predictions.jsonl (eval run) in {', '.join(map(str, paths))}")
    return found


def _is_dataset_folder(folder: Path) -> bool:
    """True when the folder is named after its dataset (``r1searcher eval --out DIR`` writes DIR/<stem>/)."""
    m = folder / "metrics.json"
    if m.exists():
        meta = json.loads(m.read_text())
        ds = meta.get("dataset") if isinstance(meta, dict) else None
        return bool(ds) and Path(str(ds)).stem == folder.name
    return False


def _eval_meta(f: Path) -> tuple[str, str]:
    m = f.parent / "metrics.json"
    meta = json.loads(m.read_text()) if m.exists() else {}
    meta = meta if isinstance(meta, dict) else {}
    ds = Path(str(meta["dataset"])).stem if meta.get("dataset") else f.parent.name
    return ds, str(meta.get("method") or "")


def load_rows(paths: list[str | Path]) -> tuple[list[dict], list[dict]]:
    """``(runs, rows)`` over every run found under ``paths``; an eval run's datasets share its entry.

    A run's ``issues`` lists one-line warnings (damaged lines skipped, bad values left out) for its files.
    """
    runs: dict[str, dict] = {}
    rows: list[dict] = []
    for kind, label, f in find_sources(paths):
        if kind == "train":
            ds, method = _train_dataset(f.parent), "train"
        else:
            ds, method = _eval_meta(f)
        run = runs.setdefault(label, {"label": label, "kind": kind, "method": method, "datasets": [], "n": 0, "issues": []})
        index = list(runs).index(label)
        records, damaged = read_jsonl(f)
        bad_lines: dict[str, list[int]] = {}
        for n, d in records:
            row = (train_row if kind == "train" else eval_row)(d, index, ds)
            for key in row.get("bad", ()):
                bad_lines.setdefault(key, []).append(n)
            rows.append(row)
        run["datasets"].append(ds)
        run["n"] += len(records)
        run["issues"] += file_issues(f, damaged, bad_lines)
    return list(runs.values()), rows
