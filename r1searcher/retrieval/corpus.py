"""Build a passage corpus from raw dumps, and read it back.

The paper's recipe: every document is cut into passages of at most 100 words, each passage keeps
its document's title. Inputs are read line by line (never loaded whole, ``.gz`` welcome), so a
full Wikipedia dump streams through in constant memory apart from the dedupe set (8 bytes of
hash per unique passage, ~0.25 GB per 29M). Accepted inputs:

* JSONL ``{"title", "text"}`` (optional ``id``, ignored on output);
* Search-R1 JSONL ``{"id", "contents"}`` with contents = title, newline, text (surrounding
  double quotes on the title, as in ``wiki-18.jsonl``, are removed);
* KILT knowledge source JSONL ``{"wikipedia_title", "text": [paragraphs]}``: ``Section::::``
  heading paragraphs are dropped, ``BULLET::::`` markers are stripped, the leading paragraph
  that repeats the title is dropped; the article's paragraphs are then split like one text;
* TSV with a header naming ``text`` (and ``title``/``id``), or headerless DPR-style
  ``id<TAB>text<TAB>title`` / ``title<TAB>text``.

Malformed lines are reported as ``FILE:LINE: why`` and skipped; they never stop a build. A line
whose strings are not Unicode text (a lone surrogate such as the JSON escape ``"\\ud800"``, which
cannot be written as UTF-8) is one of them. An input that cannot be read to its end (a ``.gz``
cut short by a half-finished download, a bad gzip stream, an I/O error) does:
:class:`CorpusReadError` names the file and the last line read, the output's ``.tmp`` file is
removed, and what was read is kept only when asked (``keep_partial``).
Output: JSONL ``{"id", "title", "text"}`` with ids ``p0000000``, ``p0000001``, … in input order.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from r1searcher.retrieval.base import Passage

MAX_WORDS = 100

#: Called with (path, line number, message) for every skipped line.
ErrorHandler = Callable[[str, int, str], None]


def report_to_stderr(path: str, line: int, message: str) -> None:
    """Default error handler: one ``warning: FILE:LINE: message`` line on stderr."""
    print(f"warning: {path}:{line}: {message}", file=sys.stderr)


@dataclass
class CorpusStats:
    """What a build did: counts that the CLI prints and tests check."""

    records: int = 0
    passages: int = 0
    duplicates: int = 0
    empty: int = 0
    malformed: int = 0
    sha256: str = ""
    errors: list[tuple[str, int, str]] = field(default_factory=list)


class CorpusReadError(RuntimeError):
    """An input file could not be read to its end; the message names the file and the line reached."""


def _lines(path: str, f: IO[str]) -> Iterator[tuple[int, str]]:
    """(line number, line) of ``f``; a read failure becomes a CorpusReadError naming ``path``."""
    import zlib

    lineno = 0
    it = iter(f)
    while True:
        try:
            line = next(it)
        except StopIteration:
            return
        except (EOFError, OSError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
            what = "ends early (truncated .gz?)" if isinstance(e, EOFError) else f"cannot be read ({type(e).__name__}: {e})"
            raise CorpusReadError(f"{path}: {what} after line {lineno}") from None
        lineno += 1
        yield lineno, line


def _open_text(path: str | Path) -> IO[str]:
    path = str(path)
    if path.endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace", newline="")


def normalise_ws(text: str) -> str:
    """Collapse all whitespace runs to one space and strip the ends."""
    return " ".join(text.split())


def split_words(text: str, max_words: int = MAX_WORDS) -> list[str]:
    """Cut ``text`` into consecutive chunks of at most ``max_words`` whitespace words."""
    if max_words < 1:
        raise ValueError(f"max_words must be >= 1, got {max_words}")
    words = text.split()
    return [" ".join(words[i : i + max_words]) for i in range(0, len(words), max_words)]


def _clean_kilt_paragraphs(title: str, paragraphs: list) -> str:
    out: list[str] = []
    for i, para in enumerate(paragraphs):
        if not isinstance(para, str):
            raise ValueError(f"paragraph {i} is {type(para).__name__}, expected a string")
        p = para.strip()
        if not p or p.startswith("Section::::"):
            continue
        if p.startswith("BULLET::::"):
            p = p[len("BULLET::::") :].lstrip()
            if p.startswith("- "):
                p = p[2:]
        if i == 0 and normalise_ws(p) == normalise_ws(title):
            continue
        out.append(p)
    return "\n".join(out)


def _unquote_title(title: str) -> str:
    title = title.strip()
    if len(title) >= 2 and title[0] == '"' and title[-1] == '"':
        title = title[1:-1]
    return title


def record_from_json(obj: object) -> tuple[str, str, str | None]:
    """Map one decoded JSON line to (title, text, id); raises ValueError naming what is wrong."""
    rec = _fields_from_json(obj)
    for name, value in zip(("title", "text", "id"), rec):
        if value is not None:
            _check_text(name, value)
    return rec


def _check_text(name: str, value: str) -> None:
    """ValueError when ``value`` cannot be UTF-8 (a lone surrogate: JSON allows ``"\\ud800"``, UTF-8 does not)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        bad = value[e.start]
        raise ValueError(f"'{name}' holds a lone surrogate (\\u{ord(bad):04x} at character {e.start}), "
                         f"which is not Unicode text") from None


def _fields_from_json(obj: object) -> tuple[str, str, str | None]:
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
    rid = obj.get("id")
    rid = None if rid is None else str(rid)
    if "wikipedia_title" in obj:
        title, paras = obj["wikipedia_title"], obj.get("text")
        if not isinstance(title, str):
            raise ValueError("'wikipedia_title' is not a string")
        if not isinstance(paras, list):
            raise ValueError("KILT record: 'text' must be a list of paragraphs")
        if rid is None and obj.get("wikipedia_id") is not None:
            rid = str(obj["wikipedia_id"])
        return title.strip(), _clean_kilt_paragraphs(title, paras), rid
    if "contents" in obj:
        contents = obj["contents"]
        if not isinstance(contents, str):
            raise ValueError("'contents' is not a string")
        title, _, text = contents.partition("\n")
        return _unquote_title(title), text, rid
    if "text" in obj:
        text, title = obj["text"], obj.get("title", "")
        if not isinstance(text, str):
            raise ValueError("'text' is not a string")
        if title is None:
            title = ""
        if not isinstance(title, str):
            raise ValueError("'title' is not a string")
        return title.strip(), text, rid
    raise ValueError(f"no 'text', 'contents' or 'wikipedia_title' field (keys: {sorted(obj)[:6]})")


def _iter_jsonl(path: str, on_error: ErrorHandler) -> Iterator[tuple[str, str, str | None]]:
    with _open_text(path) as f:
        for lineno, line in _lines(path, f):
            if not line.strip():
                continue
            try:
                yield record_from_json(json.loads(line))
            except (json.JSONDecodeError, ValueError) as e:
                on_error(path, lineno, str(e).split("\n")[0])


def _iter_tsv(path: str, on_error: ErrorHandler) -> Iterator[tuple[str, str, str | None]]:
    csv.field_size_limit(1 << 30)
    with _open_text(path) as f:
        reader = csv.reader((line for _, line in _lines(path, f)), delimiter="\t", quotechar='"')
        cols: dict[str, int] | None = None
        for row in reader:
            lineno = reader.line_num
            if not row or not any(c.strip() for c in row):
                continue
            if cols is None:
                lower = [c.strip().lower() for c in row]
                if "text" in lower:
                    cols = {name: lower.index(name) for name in ("id", "text", "title") if name in lower}
                    continue
                if len(row) == 3:
                    cols = {"id": 0, "text": 1, "title": 2}
                elif len(row) == 2:
                    cols = {"title": 0, "text": 1}
                else:
                    on_error(path, lineno, f"cannot tell the columns: {len(row)} fields and no header naming 'text'")
                    return
            width = max(cols.values()) + 1
            if len(row) < width:
                on_error(path, lineno, f"expected {width} tab-separated fields, got {len(row)}")
                continue
            title = row[cols["title"]] if "title" in cols else ""
            rid = row[cols["id"]] if "id" in cols else None
            yield _unquote_title(title), row[cols["text"]], rid


def iter_records(path: str | Path, on_error: ErrorHandler = report_to_stderr) -> Iterator[tuple[str, str, str | None]]:
    """Stream (title, text, id) records from one input file, skipping and reporting bad lines."""
    p = str(path)
    if not Path(p).is_file():
        raise FileNotFoundError(f"corpus input not found: {p}")
    name = p[:-3] if p.endswith(".gz") else p
    if name.endswith((".tsv", ".tab")):
        yield from _iter_tsv(p, on_error)
    else:
        yield from _iter_jsonl(p, on_error)


def _dedupe_key(title: str, text: str) -> int:
    h = hashlib.blake2b(f"{title}\x00{text}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "little")


def build_passages(
    paths: Iterable[str | Path],
    max_words: int = MAX_WORDS,
    on_error: ErrorHandler = report_to_stderr,
    stats: CorpusStats | None = None,
) -> Iterator[Passage]:
    """Stream deduplicated passages (≤ ``max_words`` words, title kept) from the input files.

    Duplicates are detected by (title, whitespace-normalised text) through a 64-bit hash.
    ``stats`` (if given) is filled in as the stream is consumed.
    """
    st = stats if stats is not None else CorpusStats()

    def err(path: str, line: int, message: str) -> None:
        st.malformed += 1
        if len(st.errors) < 1000:
            st.errors.append((path, line, message))
        on_error(path, line, message)

    seen: set[int] = set()
    for path in paths:
        for title, text, _rid in iter_records(path, err):
            st.records += 1
            title = normalise_ws(title)
            chunks = split_words(text, max_words)
            if not chunks:
                st.empty += 1
                continue
            for chunk in chunks:
                key = _dedupe_key(title, chunk)
                if key in seen:
                    st.duplicates += 1
                    continue
                seen.add(key)
                yield Passage(id=f"p{st.passages:07d}", title=title, text=chunk)
                st.passages += 1


def passage_line(p: Passage) -> str:
    """The canonical JSONL line of a passage (its hash defines the corpus sha256)."""
    return json.dumps({"id": p.id, "title": p.title, "text": p.text}, ensure_ascii=False) + "\n"


def corpus_sha256(passages: Iterable[Passage]) -> tuple[str, int]:
    """sha256 of the canonical JSONL of ``passages`` and their count (keys caches and manifests)."""
    h = hashlib.sha256()
    n = 0
    for p in passages:
        h.update(passage_line(p).encode("utf-8"))
        n += 1
    return h.hexdigest(), n


def write_passages(passages: Iterable[Passage], out: str | Path, keep_partial: bool = False) -> tuple[str, int]:
    """Write passages as canonical JSONL; return (sha256 of the file, count).

    Written to ``OUT.tmp`` and renamed. If the stream fails, ``OUT.tmp`` is removed and the error
    re-raised, unless ``keep_partial``: then what was written becomes ``OUT`` (the error still raised).
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256()
    n = 0
    tmp = out.with_name(out.name + ".tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            for p in passages:
                line = passage_line(p)
                f.write(line)
                h.update(line.encode("utf-8"))
                n += 1
    except BaseException as e:
        if keep_partial and isinstance(e, CorpusReadError) and tmp.exists():
            tmp.replace(out)
            raise CorpusReadError(f"{e}; kept the {n} passages read before it in {out} (--keep-partial)") from None
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(out)
    return h.hexdigest(), n


def is_corpus_file(path: str | Path) -> bool:
    """True when ``path`` is empty or a corpus :func:`build_corpus` wrote: its first line is the
    canonical line of passage ``p0000000`` (what ``corpus build --out`` may replace)."""
    p = Path(path)
    try:
        with open(p, "rb") as f:
            first = f.readline(1 << 20)
    except OSError:
        return False
    if not first:
        return True
    try:
        obj = json.loads(first)
    except ValueError:
        return False
    return (isinstance(obj, dict) and list(obj) == ["id", "title", "text"] and obj["id"] == "p0000000"
            and first.decode("utf-8") == passage_line(Passage(obj["id"], obj["title"], obj["text"])))


def build_corpus(
    inputs: Iterable[str | Path],
    out: str | Path,
    max_words: int = MAX_WORDS,
    on_error: ErrorHandler = report_to_stderr,
) -> CorpusStats:
    """Stream ``inputs`` into a deduplicated ≤100-word passage JSONL at ``out``; return the stats."""
    stats = CorpusStats()
    sha, _ = write_passages(build_passages(inputs, max_words, on_error, stats), out)
    stats.sha256 = sha
    return stats


def read_passages(path: str | Path, on_error: ErrorHandler = report_to_stderr) -> Iterator[Passage]:
    """Stream the passages of a corpus file (``{id,title,text}`` or Search-R1 ``{id,contents}``).

    Unlike :func:`build_passages` this neither splits nor deduplicates: a built corpus is read
    as it is. A line without an ``id`` gets its 0-based row number as id. Bad lines are
    reported (``FILE:LINE: why``) and skipped.
    """
    p = str(path)
    if not Path(p).is_file():
        raise FileNotFoundError(f"corpus file not found: {p}")
    row = 0
    with _open_text(p) as f:
        for lineno, line in _lines(p, f):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                title, text, rid = record_from_json(obj)
            except (json.JSONDecodeError, ValueError) as e:
                on_error(p, lineno, str(e).split("\n")[0])
                continue
            yield Passage(id=rid if rid is not None else str(row), title=title, text=text)
            row += 1
