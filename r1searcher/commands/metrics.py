"""``r1searcher metrics FILE.jsonl``: EM, cover-EM, F1 and judge accuracy of a predictions file.

Reads the paper's eval-results shape (``pred_ans``, ``answer``, ``gpt4o_output``) and ours
(``pred_ans``, ``answers``). Gold answers default to the union of ``answer``/``answers``/
``golden_answers``/``answer_aliases``; ``--gold-field answer`` scores against the paper's single
string only. The judge column comes from an existing ``gpt4o_output`` field (the paper's rule:
exactly "True"), else from ``--judge`` (an OpenAI-compatible endpoint, see ``r1searcher.eval.judge``),
else it is null.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from r1searcher.util.files import Damaged, iter_jsonl

HELP = "score a predictions JSONL file: EM, cover-EM, F1 (the paper's rules) and LLM-judge accuracy"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE.jsonl", help="predictions, one JSON object per line")
    p.add_argument("--pred-field", default="pred_ans", help="field holding the prediction (default: pred_ans)")
    p.add_argument(
        "--gold-field",
        default=None,
        help="field holding the gold answer(s), a string or a list (default: union of answer, answers, "
        "golden_answers, answer_aliases)",
    )
    p.add_argument("--judge-field", default="gpt4o_output", help="field with stored judge replies (default: gpt4o_output)")
    p.add_argument("--limit", type=int, default=0, help="score only the first N rows (the paper's script: 2000)")
    p.add_argument("--judge", action="store_true", help="judge rows without a stored reply through an LLM endpoint")
    p.add_argument("--config", default=None,
                   help="a config whose judge section sets the defaults below (see `r1searcher config --section judge`)")
    p.add_argument("--judge-base-url", default=None, help="judge.base_url: OpenAI-compatible /v1 URL "
                   "(default: $R1SEARCHER_JUDGE_BASE_URL)")
    p.add_argument("--judge-model", default=None, help="judge.model (default: $R1SEARCHER_JUDGE_MODEL or gpt-4o-mini)")
    p.add_argument("--judge-concurrency", type=int, default=None, help="judge.concurrency: requests in flight (default: 8)")
    p.add_argument("--judge-cache", default=None, help="judge.cache: SQLite cache file (default: $R1SEARCHER_JUDGE_CACHE, "
                   "else judge.sqlite in the cache root, $R1SEARCHER_CACHE_DIR)")
    p.add_argument("--no-judge-cache", action="store_true", help="judge.use_cache=false: do not read or write the cache")
    p.add_argument("--judge-strict", action="store_true", help="judge.strict: count only replies that are exactly 'True' "
                   "(the paper's rule)")
    p.add_argument("--json", action="store_true", help='print one JSON object {"n","em","cover_em","f1","judge"}')


@dataclass
class _Row:
    line: int
    question: str
    golds: list[str]
    judge_gold: Any
    pred: str
    stored_verdict: bool | None


@dataclass
class _Scored:
    summary: dict[str, Any]
    judge_source: str
    notes: list[str] = field(default_factory=list)


def _read_rows(path: Path, args: argparse.Namespace) -> list[_Row]:
    """Parse and validate the predictions file; any bad line is a ValueError ``file:line: reason``."""
    from r1searcher.data.qa import answers_of
    from r1searcher.eval.judge import parse_verdict

    if not path.is_file():
        raise FileNotFoundError(f"predictions file not found: {path}")
    rows: list[_Row] = []
    for lineno, obj in iter_jsonl(path):
        if args.limit and len(rows) >= args.limit:
            break
        where = f"{path}:{lineno}"
        if isinstance(obj, Damaged):
            raise ValueError(str(obj))
        if args.pred_field not in obj:
            raise ValueError(f"{where}: no prediction field {args.pred_field!r} (fields: {', '.join(obj)})")
        pred = obj[args.pred_field]
        pred = "" if pred is None else pred if isinstance(pred, str) else json.dumps(pred)
        try:
            golds = answers_of(obj, args.gold_field)
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None
        judge_gold = obj.get(args.gold_field or "answer")
        if judge_gold is None or isinstance(judge_gold, list):
            judge_gold = golds[0]
        stored = obj.get(args.judge_field)
        verdict = None if stored is None else parse_verdict(str(stored), strict=True)
        rows.append(_Row(lineno, str(obj.get("question", "")), golds, judge_gold, pred, verdict))
    return rows


def judge_config(args: argparse.Namespace):
    """The ``judge`` section: ``--config``'s (else the defaults and ``$R1SEARCHER_JUDGE_*``), the flags
    given on the command line as overrides, validated as any config is."""
    from r1searcher.config import load_config

    flags = {"judge.base_url": args.judge_base_url, "judge.model": args.judge_model,
             "judge.concurrency": args.judge_concurrency, "judge.cache": args.judge_cache,
             "judge.use_cache": False if args.no_judge_cache else None, "judge.strict": True if args.judge_strict else None}
    return load_config(args.config, {k: v for k, v in flags.items() if v is not None}).judge


def _judge_missing(rows: list[_Row], args: argparse.Namespace) -> list[bool]:
    """Verdicts for rows without a stored reply, from the LLM endpoint."""
    from r1searcher.eval.judge import Judge

    todo = [r for r in rows if r.stored_verdict is None]
    for r in todo:
        if not r.question:
            raise ValueError(f"{args.file}:{r.line}: the judge needs a 'question' field")
    j = judge_config(args)
    with Judge(base_url=j.base_url, model=j.model, api_key=j.api_key, concurrency=j.concurrency,
               timeout_s=j.timeout_s, max_retries=j.max_retries, max_tokens=j.max_tokens,
               temperature=j.temperature, strict=j.strict, cache_path=j.cache, use_cache=j.use_cache) as judge:
        results = judge.judge_many([(r.question, r.judge_gold, r.pred) for r in todo])
        print(
            f"judge {judge.model} at {judge.base_url}: {len(todo)} judged, {judge.n_cached} from cache, "
            f"{judge.n_requests} request(s)",
            file=sys.stderr,
        )
    return [res.correct for res in results]


def score_file(args: argparse.Namespace) -> _Scored:
    """Score every row of ``args.file``; judge verdicts from stored replies, then ``--judge``."""
    from r1searcher.eval.metrics import aggregate, score_prediction

    rows = _read_rows(Path(args.file), args)
    if not rows:
        raise ValueError(f"{args.file}: no predictions")
    n_stored = sum(r.stored_verdict is not None for r in rows)
    verdicts: list[bool | None] = [r.stored_verdict for r in rows]
    notes: list[str] = []
    source = f"stored {args.judge_field}" if n_stored == len(rows) else "none"
    if n_stored < len(rows):
        if args.judge:
            fresh = iter(_judge_missing(rows, args))
            verdicts = [v if v is not None else next(fresh) for v in verdicts]
            source = "LLM judge" if n_stored == 0 else f"stored {args.judge_field} + LLM judge"
        elif n_stored:
            notes.append(f"judge: {len(rows) - n_stored} of {len(rows)} rows lack {args.judge_field!r}; "
                         "pass --judge to judge them")
    scored = [dict(score_prediction(r.pred, r.golds), judge=v) for r, v in zip(rows, verdicts)]
    return _Scored(aggregate(scored), source, notes)


def _fmt(v: Any) -> str:
    return "-" if v is None else f"{v:.1f}"


def run(args: argparse.Namespace) -> int:
    if args.judge:
        judge_config(args)  # a bad judge setting fails before the file is read
    res = score_file(args)
    s = res.summary
    for note in res.notes:
        print(note, file=sys.stderr)
    if args.json:
        print(json.dumps({k: s[k] for k in ("n", "em", "cover_em", "f1", "judge")}))
        return 0
    gold = args.gold_field or "answer|answers|golden_answers|answer_aliases"
    print(f"{args.file}: {s['n']} predictions (pred: {args.pred_field}, gold: {gold})")
    print(f"  {'EM':<10}{_fmt(s['em']):>6}")
    print(f"  {'Cover-EM':<10}{_fmt(s['cover_em']):>6}")
    print(f"  {'F1':<10}{_fmt(s['f1']):>6}")
    print(f"  {'Judge':<10}{_fmt(s['judge']):>6}  ({res.judge_source})")
    return 0
