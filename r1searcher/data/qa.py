"""QA records from JSONL: one loader for every shape we meet, with line-numbered validation.

Shapes read (one JSON object per line; a ``.json`` file holding one JSON array also works):

* R1-Searcher training/eval sets: ``idx``, ``question``, ``answer`` (a string).
* Our eval sets (``eval/``, ``dev_extra/``): ``id``, ``question``, ``answer``, ``answers`` (aliases).
* HotpotQA / 2Wiki / MuSiQue originals: ``_id`` or ``id``, ``question``, ``answer``
  (MuSiQue also ``answer_aliases``).
* FlashRAG: ``id``, ``question``, ``golden_answers``.

The answers of a record are the union, in this order and without duplicates, of ``answer``,
``answers``, ``golden_answers`` and ``answer_aliases``; booleans become yes/no, numbers their ``str``.
A record's id is ``id``, else ``_id``, else ``idx``, else its line number. ``meta`` keeps every
field of the line except ``question`` (so ``answer`` and ``answers`` stay distinguishable). Bad lines (a string holding a lone
surrogate such as JSON ``"\\ud800"`` included) are reported as ``file:line: reason`` and skipped or raised.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Iterator
from typing import Any, Literal

from r1searcher.util.files import Damaged, iter_jsonl
from r1searcher.paths import DATA_ENV, data_env_root

log = logging.getLogger(__name__)

ANSWER_FIELDS = ("answer", "answers", "golden_answers", "answer_aliases")
ID_FIELDS = ("id", "_id", "idx")

_MAX_LOGGED = 10  # bad lines logged one by one; the report keeps them all
_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass
class QARecord:
    """One question with its gold answers (aliases, at least one) and every other field."""

    id: str
    question: str
    answers: list[str]
    meta: dict[str, Any] = field(default_factory=dict)


class QADataError(ValueError):
    """A bad record under ``on_error="fail"``; the message is ``file:line: reason``."""


@dataclass
class LoadReport:
    """What a load did: the path, records kept, and one ``file:line: reason`` per bad line."""

    path: str = ""
    n_ok: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def n_bad(self) -> int:
        return len(self.errors)


def _answer_text(value: Any) -> str:
    """One answer as text; raises ValueError for anything that is not a string, bool or number."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return value
    raise ValueError(f"an answer must be a string, got {type(value).__name__}")


def answers_of(obj: dict[str, Any], fields: str | tuple[str, ...] | None = None) -> list[str]:
    """The gold answers of a record: the union of ``fields`` (default :data:`ANSWER_FIELDS`).

    Each field may hold one answer or a list of them; ``None`` counts as absent. Empty or blank
    answers are dropped. Raises ValueError when a value has the wrong type or no answer remains.
    """
    names = ANSWER_FIELDS if fields is None else ((fields,) if isinstance(fields, str) else fields)
    out: list[str] = []
    for name in names:
        value = obj.get(name)
        if value is None:
            continue
        values = value if isinstance(value, list) else [value]
        for v in values:
            try:
                text = _answer_text(v)
            except ValueError as e:
                raise ValueError(f"field '{name}': {e}") from None
            if text.strip() and text not in out:
                out.append(text)
    if not out:
        raise ValueError(f"no answer (looked at {', '.join(repr(n) for n in names)})")
    return out


def _lone_surrogate(value: Any, where: str = "") -> str | None:
    """Where in ``value`` a string holds a lone surrogate (JSON ``"\\ud800"``), or None.

    JSON may escape half of a UTF-16 pair on its own; Python decodes it to a string that cannot be
    encoded as UTF-8, which the tokenizer and every writer reject. Such a line is as bad as a line
    that is not UTF-8 at all."""
    if isinstance(value, str):
        m = _SURROGATE.search(value)
        return f"{where or 'the value'} (\\u{ord(m.group()):04x})" if m else None
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    for k, v in items:
        name = f"{where}[{k!r}]" if where else repr(k)
        if isinstance(k, str) and (found := _lone_surrogate(k, f"a key of {where or 'the record'}")):
            return found
        if found := _lone_surrogate(v, name):
            return found
    return None


def record_from_dict(obj: Any, default_id: str) -> QARecord:
    """Validate one decoded JSON value and build a :class:`QARecord`; ValueError says why not."""
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
    if bad := _lone_surrogate(obj):
        raise ValueError(f"a lone surrogate in {bad}: not valid Unicode text")
    question = obj.get("question")
    if question is None:
        raise ValueError("no 'question'")
    if not isinstance(question, str):
        raise ValueError(f"'question' must be a string, got {type(question).__name__}")
    if not question.strip():
        raise ValueError("empty 'question'")
    answers = answers_of(obj)
    rid = default_id
    for name in ID_FIELDS:
        if obj.get(name) not in (None, ""):
            if not isinstance(obj[name], (str, int)) or isinstance(obj[name], bool):
                raise ValueError(f"'{name}' must be a string or an integer")
            rid = str(obj[name])
            break
    meta = {k: v for k, v in obj.items() if k != "question"}
    return QARecord(id=rid, question=question, answers=answers, meta=meta)


def _iter_values(path: Path) -> Iterator[tuple[int, Any]]:
    """Yield ``(line or array index, decoded value or ValueError)`` for a JSONL file or a JSON array."""
    with path.open("rb") as f:
        head = f.read(1024).lstrip()
        f.seek(0)
        if head.startswith(b"["):
            try:
                data = json.loads(f.read().decode("utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                yield 1, ValueError(f"invalid JSON array: {e}")
                return
            if not isinstance(data, list):
                yield 1, ValueError("expected a JSON array of records")
                return
            yield from enumerate(data, start=1)
            return
    for lineno, value in iter_jsonl(path, objects=False):
        yield lineno, (ValueError(value.reason) if isinstance(value, Damaged) else value)


def load_qa(
    path: str | os.PathLike[str],
    on_error: Literal["skip", "fail"] = "skip",
    limit: int | None = None,
    report: LoadReport | None = None,
) -> list[QARecord]:
    """Read QA records from ``path``.

    Bad lines (invalid JSON, no question, no answer, wrong types, a repeated id, a lone surrogate) are logged as
    warnings ``file:line: reason`` (the first ten, then a count) and all collected in ``report``
    when one is given; ``on_error="skip"``
    drops them, ``"fail"`` raises :class:`QADataError` at the first. ``limit`` stops after that many
    good records (``None`` or 0: all). A missing file raises FileNotFoundError.
    """
    if on_error not in ("skip", "fail"):
        raise ValueError(f"on_error must be 'skip' or 'fail', got {on_error!r}")
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"QA file not found: {p}")
    if p.is_dir():
        raise FileNotFoundError(f"QA path is a directory, not a file: {p}")
    rep = report if report is not None else LoadReport()
    rep.path = str(p)
    out: list[QARecord] = []
    seen: set[str] = set()
    for where, value in _iter_values(p):
        try:
            if isinstance(value, ValueError):
                raise value
            rec = record_from_dict(value, default_id=str(where))
            if rec.id in seen:
                raise ValueError(f"duplicate id {rec.id!r}")
        except ValueError as e:
            msg = f"{p}:{where}: {e}"
            rep.errors.append(msg)
            if on_error == "fail":
                raise QADataError(msg) from None
            if rep.n_bad <= _MAX_LOGGED:
                log.warning(msg)
            continue
        seen.add(rec.id)
        out.append(rec)
        if limit and len(out) >= limit:
            break
    rep.n_ok = len(out)
    if rep.errors:
        more = f" ({rep.n_bad - _MAX_LOGGED} not shown)" if rep.n_bad > _MAX_LOGGED else ""
        log.warning("%s: skipped %d bad line(s)%s, kept %d record(s)", p, rep.n_bad, more, rep.n_ok)
    return out


def _search_dirs() -> list[Path]:
    """Folders ``resolve_dataset`` searches, in order."""
    dirs: list[Path] = []
    base = data_env_root()  # $R1SEARCHER_DATA, resolved in r1searcher.paths
    if base is not None:
        dirs += [base, base / "eval", base / "dev_extra", base / "train"]
    # ../shared/data beside the current folder or one of its parents (a checkout's subfolders too);
    # never relative to the source: an installed package has no ../shared beside it
    cwd = Path.cwd().resolve()
    for root in (cwd, *list(cwd.parents)[:3]):
        shared = root.parent / "shared" / "data"
        if shared.is_dir():
            dirs += [shared / "eval", shared / "dev_extra", shared / "train", shared]
            break
    # Where `r1searcher data get` writes (the same folder as above when $R1SEARCHER_DATA is set;
    # otherwise <cache root>/data, searched last so a ../shared/data bundle keeps its meaning).
    from r1searcher.paths import data_root

    base = data_root()
    dirs += [base / "eval", base / "dev_extra", base / "train", base]
    unique: list[Path] = []
    for d in dirs:
        if d not in unique:
            unique.append(d)
    return unique


def resolve_dataset(name: str) -> Path:
    """A dataset name (``hotpotqa``, ``2wiki``, ``stage_2``, …) or an existing path → a file path.

    Looks for ``<name>.jsonl`` (then ``<name>.json``) in ``$R1SEARCHER_DATA`` (and its ``eval/``,
    ``dev_extra/``, ``train/``), then in ``../shared/data/{eval,dev_extra,train}/`` and
    ``../shared/data/`` beside the current folder (or the nearest of its three parents that has
    one), then in the data root
    ``r1searcher data get`` fills (``<cache root>/data`` when ``$R1SEARCHER_DATA`` is unset), so
    ``hotpotqa`` is the eval set and ``dev_extra/hotpotqa`` the extra dev set. Raises
    FileNotFoundError naming the places searched and the names available there.
    """
    direct = Path(name).expanduser()
    if direct.is_file():
        return direct
    dirs = _search_dirs()
    for d in dirs:
        for ext in (".jsonl", ".json"):
            cand = d / f"{name}{ext}"
            if cand.is_file():
                return cand
    available = sorted({f.stem for d in dirs if d.is_dir() for f in d.iterdir() if f.suffix in (".jsonl", ".json")})
    where = ", ".join(str(d) for d in dirs)
    fetch = f"; fetch it with `r1searcher data get {name}` or set ${DATA_ENV} to the data folder"
    hint = f"; available: {', '.join(available)}" if available else fetch
    raise FileNotFoundError(f"dataset {name!r} not found (searched {where}){hint}")
