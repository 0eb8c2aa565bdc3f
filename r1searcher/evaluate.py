"""Run a method over QA datasets and write the paper's prediction shape plus metrics.

For each dataset ``OUT/<name>/predictions.jsonl`` holds one line per question (``question``,
``answer``, ``answers``, ``pred_ans``, ``stop_reason_final``, ``gen_text_store``, ``n_searches``,
``queries``, and the per-row ``em``/``cover_em``/``f1``), appended and flushed batch by batch, so an
interrupted run continues from what is already written (a torn last line is dropped). ``metrics.json``
is rewritten from the whole file at the end.

``OUT/<name>/run.json`` records what the predictions are made with (``EvalSpec.provenance``: method,
model and checkpoint, retriever, k, prompt, rollout limits); continuing into a folder made another
way is refused, so rows of two runs never mix. Rows that ended with ``retriever_error`` (the
retriever was down) are not answers: a rerun drops and retries them, and until none remain
``metrics.json`` counts them in ``retriever_errors`` (``r1searcher eval`` then exits non-zero).
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from r1searcher.baselines import DIRECT_MAX_TOKENS, SEARCHING, check_method, direct_answer, direct_prompt, has_chat_template
from r1searcher.data.qa import LoadReport, QARecord, load_qa
from r1searcher.metrics import aggregate, score_prediction
from r1searcher.retrieval.base import Passage


@dataclass
class EvalSpec:
    method: str = "rl"
    limit: int = 0
    batch_size: int = 16
    top_k: int = 5  # paper: 5 at evaluation
    max_doc_words: int | None = 100
    gold_passages: dict[str, Passage] = field(default_factory=dict)  # oracle: passage id -> passage
    provenance: dict = field(default_factory=dict)  # what else the predictions depend on (run.json); method is added


def read_done(path: Path) -> list[dict]:
    """Rows already written; a torn last line (killed mid-write) is dropped and the file repaired."""
    if not path.exists():
        return []
    rows, good_bytes = [], 0
    with open(path, "rb") as f:
        for raw in f:
            try:
                rows.append(json.loads(raw))
            except json.JSONDecodeError:
                break
            if not raw.endswith(b"\n"):
                rows.pop()
                break
            good_bytes += len(raw)
    if good_bytes != path.stat().st_size:
        with open(path, "r+b") as f:
            f.truncate(good_bytes)
    return rows


def _gold_ids(rec: QARecord) -> list[str]:
    for key in ("supporting_ids", "gold_passage_ids"):
        ids = rec.meta.get(key)
        if ids:
            return [str(i) for i in ids]
    return []


def build_prompts(records: list[QARecord], spec: EvalSpec, retriever, tokenizer=None) -> list[str] | None:
    """Prompts for the non-searching methods (None: the engine's own training prompt); ``tokenizer``
    decides between the chat and the base form (``baselines.direct_prompt``)."""
    if spec.method in SEARCHING:
        return None
    if spec.method == "naive":
        return [direct_prompt(r.question, tokenizer=tokenizer) for r in records]
    if spec.method == "rag":
        hits = retriever.search([r.question for r in records], spec.top_k)
        return [direct_prompt(r.question, h, spec.max_doc_words, tokenizer) for r, h in zip(records, hits)]
    # oracle
    prompts = []
    for r in records:
        ids = _gold_ids(r)
        if not ids:
            raise ValueError(f"oracle needs gold passage ids (supporting_ids / gold_passage_ids); record {r.id} has none")
        missing = [i for i in ids if i not in spec.gold_passages]
        if missing:
            raise ValueError(f"oracle: gold passages {missing[:3]} of record {r.id} are not in the corpus given")
        prompts.append(direct_prompt(r.question, [spec.gold_passages[i] for i in ids], spec.max_doc_words, tokenizer))
    return prompts


def run_method(engine, retriever, records: list[QARecord], spec: EvalSpec):
    """Greedy trajectories of ``spec.method`` for ``records`` (one each), through ``engine``."""
    tok = getattr(engine, "tokenizer", None)
    prompts = build_prompts(records, spec, retriever, tok)
    if spec.method in SEARCHING:
        return engine.rollout([r.question for r in records], n=1, greedy=True)
    return engine.rollout([r.question for r in records], n=1, greedy=True, prompts=prompts, max_searches=0,
                          max_new_tokens=DIRECT_MAX_TOKENS, stop_at_newline=not has_chat_template(tok))


def prediction_row(rec: QARecord, traj, method: str = "rl") -> dict:
    if method in SEARCHING:
        pred = traj.answer if traj.answer is not None else ""
    else:  # a direct answer: <answer> if written, else the first line (baselines.direct_answer)
        pred = direct_answer(traj.text)
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
    out = aggregate(rows)
    n = len(rows)
    out["searches_per_question"] = round(sum(r["n_searches"] for r in rows) / n, 3) if n else None
    out["stop_reasons"] = dict(Counter(r["stop_reason_final"] for r in rows))
    hops = sorted({r["hops"] for r in rows if "hops" in r})
    if hops:
        out["by_hops"] = {str(h): aggregate([r for r in rows if r.get("hops") == h]) for h in hops}
    if seconds is not None:
        out["seconds"] = round(seconds, 2)
    return out


RETRY = "retriever_error"  # rows with this stop reason are retried on the next run


def check_provenance(out_dir: Path, spec: EvalSpec, has_rows: bool) -> None:
    """Write ``run.json``, or refuse (one line) to continue predictions made another way."""
    want = {"method": spec.method, **spec.provenance}
    path = out_dir / "run.json"
    if has_rows:
        if not path.exists():
            raise ValueError(f"{out_dir} holds predictions without a run.json saying how they were made: "
                             f"choose another --out, or delete {out_dir / 'predictions.jsonl'} to start over")
        try:
            have = json.loads(path.read_text())
        except ValueError:
            raise ValueError(f"{path}: not valid JSON; delete the folder to start over") from None
        diff = [f"{k} {have.get(k)!r} (now {want.get(k)!r})" for k in sorted(set(have) | set(want)) if have.get(k) != want.get(k)]
        if diff:
            raise ValueError(f"{out_dir} holds predictions made with another setup: {'; '.join(diff)}; "
                             f"choose another --out, or delete the folder to start over")
        return
    tmp = out_dir / "run.json.tmp"
    tmp.write_text(json.dumps(want, indent=1, sort_keys=True))
    os.replace(tmp, path)


def _drop_retry_rows(path: Path, rows: list[dict]) -> list[dict]:
    """Rows without ``retriever_error``; the file is rewritten without the others (they are redone)."""
    keep = [r for r in rows if r.get("stop_reason_final") != RETRY]
    if len(keep) != len(rows):
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "w") as f:
            f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in keep))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    return keep


def evaluate_dataset(engine, retriever, data_path: str | Path, out_dir: str | Path, spec: EvalSpec,
                     progress: bool = True, on_error: str = "skip") -> dict:
    """Evaluate one dataset file; resumable. Returns the metrics dict (also written to metrics.json)."""
    check_method(spec.method)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pred_path = out_dir / "predictions.jsonl"
    report = LoadReport()
    records = load_qa(data_path, on_error=on_error, limit=spec.limit or None, report=report)
    if not records:
        raise ValueError(f"{data_path}: no usable question ({report.n_bad} bad line(s)"
                         f"{', the file is empty' if not report.n_bad else ''})")
    done = read_done(pred_path)
    check_provenance(out_dir, spec, bool(done))
    done = _drop_retry_rows(pred_path, done)
    done_ids = {r["id"] for r in done}
    todo = [r for r in records if r.id not in done_ids]
    t0 = time.perf_counter()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(records), initial=len(records) - len(todo), desc=f"{spec.method} {Path(data_path).stem}",
                   unit="q", dynamic_ncols=True)
    with open(pred_path, "a") as f:
        for start in range(0, len(todo), spec.batch_size):
            batch = todo[start:start + spec.batch_size]
            trajs = run_method(engine, retriever, batch, spec)
            rows = [prediction_row(r, t, spec.method) for r, t in zip(batch, trajs)]
            f.write("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
            f.flush()
            os.fsync(f.fileno())
            done += rows
            if bar is not None:
                bar.update(len(batch))
                bar.set_postfix(f1=f"{sum(r['f1'] for r in done) / len(done):.3f}",
                                searches=f"{sum(r['n_searches'] for r in done) / len(done):.2f}")
    if bar is not None:
        bar.close()
    elapsed = time.perf_counter() - t0
    keep = {r.id for r in records}
    rows = [r for r in done if r["id"] in keep]
    metrics = summarize(rows)
    metrics["method"] = spec.method
    metrics["dataset"] = str(data_path)
    metrics["bad_lines"] = report.n_bad
    metrics["retriever_errors"] = sum(r["stop_reason_final"] == RETRY for r in rows)
    if todo:
        metrics["seconds_per_question"] = round(elapsed / len(todo), 3)
    tmp = out_dir / "metrics.json.tmp"
    tmp.write_text(json.dumps(metrics, indent=2))
    os.replace(tmp, out_dir / "metrics.json")
    return metrics


def format_table(results: dict[str, dict]) -> str:
    """A markdown table of dataset -> metrics."""
    lines = ["| dataset | n | EM | cover-EM | F1 | judge | searches/q | stop reasons |", "|---|---|---|---|---|---|---|---|"]
    for name, m in results.items():
        stops = ", ".join(f"{k} {v}" for k, v in sorted(m.get("stop_reasons", {}).items()))
        judge = "–" if m.get("judge") is None else m["judge"]
        lines.append(f"| {name} | {m['n']} | {m['em']} | {m['cover_em']} | {m['f1']} | {judge} | "
                     f"{m['searches_per_question']} | {stops} |")
    return "\n".join(lines)
