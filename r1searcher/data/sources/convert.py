"""Raw downloads → the project's formats, with the project's own readers and builders.

* QA files (R1-Searcher ``idx/question/answer``, FlashRAG ``id/question/golden_answers/metadata``)
  are read by :func:`r1searcher.data.qa.load_qa` and written as ``{"id": "<name>-<source id>",
  "question", "answer", "answers", "source_id", …every other field}``, the layout of ``eval/``.
* Corpora go through :func:`r1searcher.retrieval.corpus.build_passages` (≤100 words, title kept,
  deduplicated) — a KILT dump directly, a ``.zip`` after its member is extracted next to it.

Every output is written to a temporary file beside it and renamed into place.
"""

from __future__ import annotations

import json
import os
import sys
import zipfile
from pathlib import Path

from r1searcher.data.qa import ANSWER_FIELDS, ID_FIELDS, LoadReport, load_qa
from r1searcher.data.sources.download import DataSourceError
from r1searcher.util.files import write_atomic


def _tmp(out: Path) -> Path:
    return out.with_name(f".{out.name}.{os.getpid()}.tmp")


def convert_qa(raw: Path, out: Path, prefix: str) -> int:
    """Write the QA records of ``raw`` to ``out``; return how many. Bad lines are skipped (and
    logged); a file with no usable record raises :class:`DataSourceError`."""
    report = LoadReport()
    records = load_qa(raw, on_error="skip", report=report)
    if not records:
        first = f": {report.errors[0]}" if report.errors else ""
        raise DataSourceError(f"{raw} holds no usable question{first}")
    out.parent.mkdir(parents=True, exist_ok=True)

    def lines():
        for r in records:
            rest = {k: v for k, v in r.meta.items() if k not in ID_FIELDS and k not in ANSWER_FIELDS}
            yield json.dumps({"id": f"{prefix}-{r.id}", "question": r.question, "answer": r.answers[0],
                              "answers": r.answers, "source_id": r.id, **rest}, ensure_ascii=False) + "\n"

    write_atomic(out, lines())
    return len(records)


def _extract(zip_path: Path, member: str, dest: Path) -> Path:
    """Copy ``member`` (or the only ``.jsonl`` in the archive) out of ``zip_path`` to ``dest``."""
    try:
        zf = zipfile.ZipFile(zip_path)
    except zipfile.BadZipFile as e:
        raise DataSourceError(f"{zip_path}: not a readable zip ({e})") from None
    with zf:
        names = zf.namelist()
        pick = [n for n in names if n == member or n.endswith("/" + member)]
        if not pick:
            pick = [n for n in names if n.endswith(".jsonl")]
        if len(pick) != 1:
            raise DataSourceError(f"{zip_path}: no single {member!r} inside (found {', '.join(names[:5])})")
        info = zf.getinfo(pick[0])
        from tqdm.auto import tqdm

        with zf.open(info) as src, open(dest, "wb") as dst, tqdm(
            total=info.file_size, unit="B", unit_scale=True, desc=f"unzip {member}", file=sys.stderr,
            disable=None if sys.stderr.isatty() else True,
        ) as bar:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
                bar.update(len(chunk))
    return dest


def build_corpus_from(raw: Path, out: Path, member: str = "", max_words: int = 100) -> tuple[int, str]:
    """Build the passage corpus ``out`` from ``raw`` (a KILT/JSONL/TSV dump, or a zip holding one);
    return (passages, sha256)."""
    from r1searcher.retrieval.corpus import CorpusStats, build_passages, write_passages

    extracted = None
    src = raw
    if member or raw.suffix == ".zip":
        extracted = _tmp(out.with_name(out.name + ".unzipped.jsonl"))
        out.parent.mkdir(parents=True, exist_ok=True)
        try:
            src = _extract(raw, member or "", extracted)
        except BaseException:
            extracted.unlink(missing_ok=True)
            raise
    shown = 0

    def on_error(path: str, line: int, message: str) -> None:
        nonlocal shown
        shown += 1
        if shown <= 10:
            print(f"warning: {path}:{line}: {message}", file=sys.stderr)

    try:
        stats = CorpusStats()
        stream = build_passages([src], max_words, on_error, stats)
        if sys.stderr.isatty():
            from tqdm.auto import tqdm

            stream = tqdm(stream, desc="passages", unit="psg", mininterval=1.0)
        sha, n = write_passages(stream, out)
    finally:
        if extracted is not None:
            extracted.unlink(missing_ok=True)
    if n == 0:
        out.unlink(missing_ok=True)
        raise DataSourceError(f"{raw}: no passages could be read ({stats.malformed} malformed lines)")
    return n, sha
