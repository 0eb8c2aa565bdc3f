"""Run a method over QA datasets and write the paper's prediction shape plus metrics.

For each dataset ``OUT/<name>/predictions.jsonl`` holds one line per question (``question``,
``answer``, ``answers``, ``pred_ans``, ``stop_reason_final``, ``gen_text_store``, ``n_searches``,
``queries``, and the per-row ``em``/``cover_em``/``f1``), appended and flushed batch by batch, so an
interrupted run continues from what is already written. ``metrics.json`` is rewritten from the rows
of the questions evaluated at the end.

One run at a time: ``evaluate_dataset`` holds an exclusive lock on ``OUT/<name>/.lock``
(:mod:`r1searcher.util.folderlock`) while it runs, and a second run into the same folder is refused.

``OUT/<name>/run.json`` records what the predictions are made with and on (``EvalSpec.provenance``:
method, model and checkpoint, retriever and the index's fingerprint, k, prompt, rollout limits; and
the data file's sha256); continuing into a folder made another way, or after the data file
changed, is refused (``EvalSpec.restart`` discards the folder's predictions instead), so rows of two
runs never mix. On resume every valid row is kept: damaged lines (a torn write, an edit) are
reported as ``file:line`` and dropped, a second row for one question is dropped, and only the
questions without a row are evaluated; the file is rewritten without the dropped lines. A row
belongs to a question by the record's id and question text when the file gives ids, by question
text when it does not (never by position). Rows that ended with ``retriever_error`` (the retriever
was down) are not answers: a rerun drops and retries them, and until none remain ``metrics.json``
counts them in ``retriever_errors`` (``r1searcher eval`` then exits non-zero). A failed write (disk
full) raises an OSError naming the file and leaves no torn line behind.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from r1searcher.eval.baselines import get_method
from r1searcher.data.qa import ID_FIELDS, LoadReport, QARecord, load_qa
from r1searcher.util.files import append_bytes, encode_jsonl, read_jsonl, write_atomic
from r1searcher.util.fingerprint import file_sha256
from r1searcher.util.folderlock import folder_lock
from r1searcher.eval.metrics import aggregate, per_question, score_prediction
from r1searcher.retrieval.base import Passage

log = logging.getLogger(__name__)

PREDICTIONS, METRICS, RUN = "predictions.jsonl", "metrics.json", "run.json"
#: Fields every prediction row must have to be kept on resume (the rest is the paper's free shape).
ROW_FIELDS = ("id", "question", "pred_ans", "stop_reason_final", "n_searches", "em", "cover_em", "f1")
#: run.json fields that inform but do not decide whether a folder may be continued.
INFO_FIELDS = ("data_path",)
_MAX_LOGGED = 10  # damaged lines logged one by one, then a count


@dataclass
class EvalSpec:
    method: str = "rl"  # a name in baselines.METHODS
    limit: int = 0
    batch_size: int = 16
    top_k: int = 5  # paper: 5 at evaluation
    max_doc_words: int | None = 100
    gold_passages: dict[str, Passage] = field(default_factory=dict)  # oracle: passage id -> passage
    provenance: dict = field(default_factory=dict)  # what else the predictions depend on (run.json); method is added
    restart: bool = False  # discard the folder's predictions, metrics and run.json first (``eval --restart``)


def _read_rows(path: Path) -> tuple[list[tuple[int, dict]], list[str]]:
    """``(line number, row)`` of each valid row of ``path``, and ``file:line: reason`` per damaged line."""
    got = read_jsonl(path, missing_ok=True)
    rows: list[tuple[int, dict]] = []
    damaged = [(d.line, str(d)) for d in got.damaged]
    for lineno, row in got.rows:
        missing = [k for k in ROW_FIELDS if k not in row]
        if missing:
            damaged.append((lineno, f"{path}:{lineno}: not a prediction row (no {', '.join(repr(k) for k in missing)})"))
            continue
        rows.append((lineno, row))
    return rows, [message for _, message in sorted(damaged)]


def read_done(path: Path, damaged: list[str] | None = None) -> list[dict]:
    """The valid rows of ``path`` in file order (none when it is absent). A damaged line (torn by a
    kill, edited, not JSON) is skipped, not the end of the file; ``damaged`` collects one
    ``file:line: reason`` for each. Reads only: ``evaluate_dataset`` rewrites the file."""
    rows, bad = _read_rows(Path(path))
    if damaged is not None:
        damaged.extend(bad)
    return [r for _, r in rows]


def run_method(engine, retriever, records: list[QARecord], spec: EvalSpec):
    """Greedy trajectories of ``spec.method`` for ``records`` (one each), through ``engine``: the
    method's prompts (None: the engine's training prompt) and per-call limits (``baselines.Method``)."""
    method = get_method(spec.method)
    tok = getattr(engine, "tokenizer", None)
    kwargs = method.rollout_args(tok)
    prompts = method.prompts(records, spec, retriever, tok)
    if prompts is not None:
        kwargs["prompts"] = prompts
    return engine.rollout([r.question for r in records], n=1, greedy=True, **kwargs)


def prediction_row(rec: QARecord, traj, method: str = "rl") -> dict:
    """One predictions.jsonl row: the record, ``method``'s answer of ``traj``, and its scores."""
    pred = get_method(method).answer(traj)
    row = {
        "id": rec.id,
        "question": rec.question,
        "answer": rec.meta.get("answer", rec.answers[0]),
        "answers": rec.answers,
        "pred_ans": pred,
        "stop_reason_final": traj.stop_reason,
        "gen_text_store": traj.text,
        "n_searches": traj.n_searches,
        "queries": traj.queries,
    }
    if "hops" in rec.meta:
        row["hops"] = rec.meta["hops"]
    row.update(score_prediction(pred, rec.answers))
    return row


def summarize(rows: list[dict], seconds: float | None = None) -> dict:
    """metrics.json's numbers: :func:`metrics.aggregate` over all rows and per hop count, searches
    per question (also per hop count: the demo's goal counts them on 2-hop questions), stop reasons
    (and ``seconds`` when given)."""
    def searches(rs: list[dict]) -> float | None:
        return per_question(sum(r["n_searches"] for r in rs), len(rs)) if rs else None

    out = aggregate(rows)
    out["searches_per_question"] = searches(rows)
    out["stop_reasons"] = dict(Counter(r["stop_reason_final"] for r in rows))
    hops = sorted({r["hops"] for r in rows if "hops" in r})
    if hops:
        out["by_hops"] = {}
        for h in hops:
            sub = [r for r in rows if r.get("hops") == h]
            out["by_hops"][str(h)] = aggregate(sub) | {"searches_per_question": searches(sub)}
    if seconds is not None:
        out["seconds"] = round(seconds, 2)
    return out


RETRY = "retriever_error"  # rows with this stop reason are retried on the next run


def _short(v) -> str:
    """A sha256 as its first 12 digits, anything else as its repr."""
    return f"{v[:12]}…" if isinstance(v, str) and len(v) == 64 else repr(v)


def _difference(key: str, have, want, data_path) -> str:
    """One changed run.json field, as the refusal says it."""
    if key == "data_sha256":
        if have is None:
            return "run.json does not record the data file's sha256 (an older r1searcher wrote it)"
        return f"the data file {data_path} changed (sha256 {_short(have)}, now {_short(want)})"
    if key == "index" and have is None and isinstance(want, dict):
        return "run.json does not record the index's fingerprint (an older r1searcher wrote it)"
    if key == "index" and isinstance(have, dict) and isinstance(want, dict):
        parts = [f"{k} {_short(have.get(k))} (now {_short(want.get(k))})"
                 for k in sorted(set(have) | set(want)) if have.get(k) != want.get(k)]
        return f"the index is another build: {', '.join(parts)}"
    return f"{key} {have!r} (now {want!r})"


class ProvenanceChanged(ValueError):
    """A folder's predictions were made with another setup (``run.json`` differs): refused, one line."""


def check_provenance(out_dir: Path, spec: EvalSpec, has_rows: bool, data_path: str | Path | None = None) -> None:
    """Write ``run.json``, or refuse (one line) to continue predictions made another way or on
    another data file (``data_path``: its sha256 is recorded and compared)."""
    want = {"method": spec.method, **spec.provenance}
    if data_path is not None:
        want["data_sha256"] = file_sha256(data_path)
        want["data_path"] = str(Path(data_path).resolve())
    path = out_dir / RUN
    if has_rows:
        if not path.exists():
            raise ValueError(f"{out_dir} holds predictions without a run.json saying how they were made: "
                             f"choose another --out, or pass --restart to discard them")
        try:
            have = json.loads(path.read_text())
        except ValueError:
            raise ValueError(f"{path}: not valid JSON; pass --restart to discard the folder's predictions") from None
        keys = sorted((set(have) | set(want)) - set(INFO_FIELDS))
        if data_path is None:
            keys = [k for k in keys if k != "data_sha256"]
        diff = [_difference(k, have.get(k), want.get(k), data_path) for k in keys if have.get(k) != want.get(k)]
        if diff:
            raise ProvenanceChanged(f"{out_dir} holds predictions of method {have.get('method')!r} made with another setup: "
                             f"{'; '.join(diff)}; choose another --out, or pass --restart to discard them")
        return
    write_atomic(path, json.dumps(want, indent=1, sort_keys=True).encode())


def _has_id(rec: QARecord) -> bool:
    return any(rec.meta.get(name) not in (None, "") for name in ID_FIELDS)


def match_rows(records: list[QARecord], rows: list[tuple[int, dict]], path: Path) -> tuple[dict[int, dict], list[str], bool]:
    """Which row answers which record: ``{record index: row}``, one ``file:line: reason`` per row
    dropped (a second row for a question, a row for no question of the file), and whether a kept
    row's ``id`` was corrected.

    A record with an id owns the row with that id and its question text; a record without one (its
    id is its line number, which moves when a line is inserted) owns a row with its question text,
    the one with its line number first. A row never answers a question by position."""
    by_id = {(r.id, r.question): i for i, r in enumerate(records) if _has_id(r)}
    by_text: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        if not _has_id(r):
            by_text.setdefault(r.question, []).append(i)
    matched: dict[int, dict] = {}
    dropped: list[str] = []
    seen: set[tuple[str, str]] = set()
    fixed = False
    for lineno, row in rows:
        key = (str(row["id"]), str(row["question"]))
        if key in seen:
            dropped.append(f"{path}:{lineno}: a second row for question id {key[0]!r} (dropped)")
            continue
        seen.add(key)
        i = by_id.get(key)
        if i is None:
            free = [j for j in by_text.get(key[1], []) if j not in matched]
            i = next((j for j in free if records[j].id == key[0]), free[0] if free else None)
        if i is None or i in matched:
            dropped.append(f"{path}:{lineno}: no question of the data file has id {key[0]!r} and this "
                           f"question text (dropped)")
            continue
        if row["id"] != records[i].id:
            row["id"], fixed = records[i].id, True
        matched[i] = row
    return matched, dropped, fixed


def _warn(lines: list[str], summary: str) -> None:
    for line in lines[:_MAX_LOGGED]:
        log.warning(line)
    more = f" ({len(lines) - _MAX_LOGGED} not shown)" if len(lines) > _MAX_LOGGED else ""
    log.warning(summary + more)


def evaluate_dataset(engine, retriever, data_path: str | Path, out_dir: str | Path, spec: EvalSpec,
                     progress: bool = True, on_error: str = "skip") -> dict:
    """Evaluate one dataset file; resumable. Returns the metrics dict (also written to metrics.json).

    Holds ``out_dir``'s lock for the whole run (another process is refused with one line)."""
    get_method(spec.method)
    if spec.limit < 0:
        raise ValueError(f"limit must be 0 (all questions) or more, got {spec.limit}")
    if spec.batch_size < 1:
        raise ValueError(f"batch size must be 1 or more, got {spec.batch_size}")
    out_dir = Path(out_dir)
    with folder_lock(out_dir, "r1searcher eval"):
        return _evaluate_locked(engine, retriever, Path(data_path), out_dir, spec, progress, on_error)


def _evaluate_locked(engine, retriever, data_path: Path, out_dir: Path, spec: EvalSpec, progress: bool,
                     on_error: str) -> dict:
    """Load the questions, keep what the folder already answers, evaluate the rest, write metrics."""
    report = LoadReport()
    every = load_qa(data_path, on_error=on_error, report=report)  # all: a row may answer one past --limit
    records = every[: spec.limit] if spec.limit else every
    if not records:
        raise ValueError(f"{data_path}: no usable question ({report.n_bad} bad line(s)"
                         f"{', the file is empty' if not report.n_bad else ''})")
    if spec.restart:
        for name in (PREDICTIONS, METRICS, RUN):
            (out_dir / name).unlink(missing_ok=True)
    matched = _kept_rows(out_dir, every, spec, data_path)
    todo = [i for i in range(len(records)) if i not in matched]
    t0 = time.perf_counter()
    _predict(engine, retriever, records, todo, matched, spec, out_dir / PREDICTIONS,
             f"{spec.method} {data_path.stem}" if progress else None)
    elapsed = time.perf_counter() - t0
    rows = [matched[i] for i in range(len(records))]
    metrics = summarize(rows)
    metrics["method"] = spec.method
    metrics["dataset"] = str(data_path)
    metrics["bad_lines"] = report.n_bad
    metrics["retriever_errors"] = sum(r["stop_reason_final"] == RETRY for r in rows)
    if todo:
        metrics["seconds_per_question"] = round(elapsed / len(todo), 3)
    else:  # all resumed: keep what the questions cost when they were run (the demo budgets by it)
        earlier = _earlier_seconds_per_question(out_dir / METRICS)
        if earlier is not None:
            metrics["seconds_per_question"] = earlier
    write_atomic(out_dir / METRICS, json.dumps(metrics, indent=2).encode())
    return metrics


def _kept_rows(out_dir: Path, every: list[QARecord], spec: EvalSpec, data_path: Path) -> dict[int, dict]:
    """The rows already in ``out_dir``'s predictions that a resumed run keeps, ``{record index: row}``.

    Checks ``run.json`` first (refusing another setup's rows); damaged lines, rows answering no
    question and ``retriever_error`` rows are dropped (and logged), and the file is rewritten with
    only the kept rows, in question order, when anything was dropped or its last line is torn."""
    pred_path = out_dir / PREDICTIONS
    lines, damaged = _read_rows(pred_path)
    check_provenance(out_dir, spec, bool(lines or damaged), data_path)
    matched, dropped, fixed = match_rows(every, lines, pred_path)
    if damaged:
        _warn(damaged, f"{pred_path}: {len(damaged)} damaged line(s) dropped, {len(lines)} valid row(s) kept; "
                       f"the questions without a row are evaluated again")
    if dropped:
        _warn(dropped, f"{pred_path}: {len(dropped)} row(s) answering no remaining question dropped")
    retry = [i for i, r in matched.items() if r.get("stop_reason_final") == RETRY]
    for i in retry:
        del matched[i]
    torn_end = False
    if pred_path.exists() and pred_path.stat().st_size:
        with open(pred_path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            torn_end = f.read(1) != b"\n"
    if damaged or dropped or retry or fixed or torn_end:
        write_atomic(pred_path, encode_jsonl([matched[i] for i in sorted(matched)]))
    return matched


def _predict(engine, retriever, records: list[QARecord], todo: list[int], matched: dict[int, dict], spec: EvalSpec,
             pred_path: Path, desc: str | None) -> None:
    """Evaluate ``records[i]`` for each ``i`` in ``todo``, ``spec.batch_size`` at a time: each batch's
    rows are appended to ``pred_path`` (flushed) and added to ``matched``. ``desc``: a progress bar."""
    bar = None
    if desc is not None:
        from tqdm import tqdm

        bar = tqdm(total=len(records), initial=len(records) - len(todo), desc=desc, unit="q", dynamic_ncols=True)
    done = [matched[i] for i in range(len(records)) if i in matched]
    fd = os.open(pred_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        for start in range(0, len(todo), spec.batch_size):
            idx = todo[start:start + spec.batch_size]
            batch = [records[i] for i in idx]
            trajs = run_method(engine, retriever, batch, spec)
            rows = [prediction_row(r, t, spec.method) for r, t in zip(batch, trajs)]
            append_bytes(pred_path, encode_jsonl(rows), fd=fd)  # all or nothing: no torn line
            matched.update(zip(idx, rows))
            done += rows
            if bar is not None:
                bar.update(len(batch))
                bar.set_postfix(f1=f"{sum(r['f1'] for r in done) / len(done):.3f}",
                                searches=f"{sum(r['n_searches'] for r in done) / len(done):.2f}")
    finally:
        os.close(fd)
        if bar is not None:
            bar.close()


def _earlier_seconds_per_question(path: Path) -> float | None:
    """``seconds_per_question`` of an earlier metrics.json in the same folder, if readable."""
    try:
        value = json.loads(path.read_text()).get("seconds_per_question")
    except (OSError, ValueError, AttributeError):
        return None
    return float(value) if isinstance(value, (int, float)) else None


def format_table(results: dict[str, dict]) -> str:
    """A markdown table of dataset -> metrics."""
    lines = ["| dataset | n | EM | cover-EM | F1 | judge | searches/q | stop reasons |", "|---|---|---|---|---|---|---|---|"]
    for name, m in results.items():
        stops = ", ".join(f"{k} {v}" for k, v in sorted(m.get("stop_reasons", {}).items()))
        judge = "–" if m.get("judge") is None else m["judge"]
        lines.append(f"| {name} | {m['n']} | {m['em']} | {m['cover_em']} | {m['f1']} | {judge} | "
                     f"{m['searches_per_question']} | {stops} |")
    return "\n".join(lines)
